#!/usr/bin/env bash
# Merge benchmark: vartree vs Portage's merge vs a rename-only floor, in one run.
#
#   scripts/bench-merge.sh [--sizes 10000,50000] [--reps 3] [--sync auto|never] [--workdir DIR]
#                           [--scenarios fresh,unmerge,upgrade,reinstall] [--lifecycle-tools ...]
#
# Builds vartree and the floor program in release mode, makes the Portage venv
# if needed, then runs bench/merge_bench.py (see its docstring for what is
# timed). The workdir must be on one filesystem (default /var/tmp/...).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup-venv.sh
cargo build --release --locked --quiet -p vartree
cargo build --release --locked --quiet -p vartree-merge --example floor_rename
target="${CARGO_TARGET_DIR:-$repo/target}/release"
exec "${VARTREE_PORTAGE_PYTHON:-$repo/.venv/bin/python}" bench/merge_bench.py \
    --vartree "$target/vartree" --floor "$target/examples/floor_rename" "$@"

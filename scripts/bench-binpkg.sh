#!/usr/bin/env bash
# Binary-package benchmark: vartree install/quickpkg vs Portage's binpkg install
# and quickpkg vs a decompress+extract floor, in one run.
#
#   scripts/bench-binpkg.sh [--sizes 10000,50000] [--reps 3] [--sync never|auto]
#                           [--ops install,quickpkg] [--workdir DIR] [--regen]
#
# Builds vartree in release mode, makes the Portage venv if needed, then runs
# bench/binpkg_bench.py (see its docstring for what is timed). Default workdir:
# /dev/shm/vartree-bench-binpkg when /dev/shm is a tmpfs, else
# ${TMPDIR:-/var/tmp}/vartree-bench-binpkg; everything is on that one filesystem.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
for tool in zstd tar bash stat; do
    command -v "$tool" >/dev/null || { echo "bench-binpkg: $tool is needed" >&2; exit 2; }
done
[ -d "$repo/../shared/tools/portage-ref" ] || {
    echo "bench-binpkg: ../shared/tools/portage-ref (beside the repository) is needed" >&2; exit 2; }
scripts/setup-venv.sh
cargo build --release --locked --quiet -p vartree
target="${CARGO_TARGET_DIR:-$repo/target}/release"
exec "${VARTREE_PORTAGE_PYTHON:-$repo/.venv/bin/python}" bench/binpkg_bench.py \
    --vartree "$target/vartree" "$@"

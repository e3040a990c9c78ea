#!/usr/bin/env bash
# VDB benchmark: vartree vs Portage vs the filesystem floor, in the same run.
#
#   scripts/bench-vdb.sh [--packages 2000] [--entries 500000] [--workdir DIR]
#                        [--runs 5] [--fast-runs 10] [--api-repeat 3]
#                        [--only list,owners-1,owners-1000,check]
#                        [--no-build] [--regen] [--no-hyperfine]
#
# 1. makes the Portage venv if needed (scripts/setup-venv.sh),
# 2. builds vartree in release mode (cargo build --release -p vartree),
# 3. generates the synthetic VDB and its files under WORKDIR/root
#    (bench/gen_vdb.py; reused when WORKDIR/gen.json has the same parameters),
# 4. times vartree, Portage (bench/portage_queries.py) and the floors
#    (bench/run_bench.py) and prints the tables; results in WORKDIR/results/.
#
# Default WORKDIR: ${TMPDIR:-/tmp}/vartree-bench (~2.5 GiB for the default size).
# Environment: VARTREE_PORTAGE_PYTHON (python with Portage; default
# <repo>/.venv/bin/python), CARGO_TARGET_DIR (where the release binary is).
# Timings are warm-cache; see docs/benchmarks.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
packages=2000
entries=500000
workdir="${TMPDIR:-/tmp}/vartree-bench"
runs=5
fast_runs=10
api_repeat=3
only="list,owners-1,owners-1000,check"
build=1
regen=()
hyperfine_opt=()

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --packages) packages=$2; shift 2 ;;
        --entries) entries=$2; shift 2 ;;
        --workdir) workdir=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --fast-runs) fast_runs=$2; shift 2 ;;
        --api-repeat) api_repeat=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --regen) regen=(--force); shift ;;
        --no-hyperfine) hyperfine_opt=(--no-hyperfine); shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench-vdb.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -n "${VARTREE_PORTAGE_PYTHON:-}" ]; then
    py=$VARTREE_PORTAGE_PYTHON
else
    "$repo/scripts/setup-venv.sh"
    py="$repo/.venv/bin/python"
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
vartree="$target_dir/release/vartree"
if [ "$build" = 1 ]; then
    echo ">>> cargo build --release -p vartree" >&2
    (cd "$repo" && cargo build --release -p vartree)
fi
if [ ! -x "$vartree" ]; then
    echo "bench-vdb.sh: $vartree not found (build failed or --no-build)" >&2
    exit 1
fi
if ! command -v hyperfine >/dev/null && [ ${#hyperfine_opt[@]} -eq 0 ]; then
    echo ">>> hyperfine not found (apt-get install hyperfine); using the built-in timer" >&2
    hyperfine_opt=(--no-hyperfine)
fi

mkdir -p "$workdir"
echo ">>> generating the VDB in $workdir ($packages packages, $entries entries)" >&2
"$py" "$repo/bench/gen_vdb.py" --workdir "$workdir" --packages "$packages" \
    --entries "$entries" "${regen[@]}"
echo ">>> checking that Portage accepts the generated VDB" >&2
"$py" "$repo/bench/portage_queries.py" verify --root "$workdir/root" --quiet

exec "$py" "$repo/bench/run_bench.py" --workdir "$workdir" --vartree "$vartree" \
    --python "$py" --runs "$runs" --fast-runs "$fast_runs" --api-repeat "$api_repeat" \
    --only "$only" "${hyperfine_opt[@]}"

#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this script).
# On a fresh machine it installs what the tests need (a venv with the real
# Portage as the reference implementation), then runs formatting and lint
# checks, every unit/integration/property/differential test, the fuzz smoke
# runs, and the bundled example. It fails if any step fails, and it fails if
# the test runner reports fewer tests than expected (it never passes having
# run nothing).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

step() { printf '\n==> %s\n' "$*" >&2; }

if [ ! -d ../shared/corpora ] || [ ! -d ../shared/tools/portage-ref ]; then
    echo "test.sh: ../shared (corpora and tools/portage-ref) must sit beside the repository" >&2
    exit 1
fi

step "test prerequisites (venv with portage)"
scripts/setup-venv.sh
export VARTREE_PORTAGE_PYTHON="$here/.venv/bin/python"
export VARTREE_REQUIRE_PORTAGE=1
unset ROOT EPREFIX

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-features --locked --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "cargo test: $passed passed, $failed failed (exit $rc)" >&2
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
min_tests=${VARTREE_MIN_TESTS:-80}
if [ "$passed" -lt "$min_tests" ]; then
    echo "test.sh: only $passed tests ran (expected at least $min_tests): refusing to pass" >&2
    exit 1
fi

step "fuzz smoke runs"
scripts/fuzz-smoke.sh

step "bundled example"
scripts/example.sh > /dev/null

echo "test.sh: all green ($passed tests)" >&2

#!/usr/bin/env bash
# Smoke-fuzz every cargo-fuzz target in fuzz/fuzz_targets for a short time each and fail on
# the first crash. Installs cargo-fuzz when it is missing.
#
#   scripts/fuzz-smoke.sh                 # every target, 20 s each
#   FUZZ_SECONDS=60 scripts/fuzz-smoke.sh atom
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer (default "none", which works on the stable
#                   toolchain; "address" needs a nightly toolchain, e.g. FUZZ_TOOLCHAIN=+nightly)
#   FUZZ_TOOLCHAIN  optional rustup toolchain argument for cargo, e.g. "+nightly"
#
# The exact invocation per target is:
#   cd fuzz && cargo fuzz run -s none TARGET -- -max_total_time=SECONDS [-dict=dicts/TARGET.dict]
# Crash inputs are left in fuzz/artifacts/TARGET/; reproduce one with
#   cd fuzz && cargo fuzz run -s none TARGET artifacts/TARGET/crash-...
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
secs="${FUZZ_SECONDS:-20}"
san="${FUZZ_SANITIZER:-none}"
tc=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    tc=("$FUZZ_TOOLCHAIN")
fi

case "$secs" in
    '' | *[!0-9]*) echo "FUZZ_SECONDS must be a number, got '$secs'" >&2; exit 2 ;;
esac

if ! cargo "${tc[@]}" fuzz --version >/dev/null 2>&1; then
    echo ">>> installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$here/fuzz"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found in fuzz/fuzz_targets" >&2
    exit 1
fi

# Build first. On a stable toolchain whose rustc refuses a flag cargo-fuzz passes, retry
# with RUSTC_BOOTSTRAP=1 (lets stable accept nightly-only flags).
build() {
    cargo "${tc[@]}" fuzz build -s "$san" "$1"
}
bootstrap=()
for t in "${targets[@]}"; do
    echo ">>> building fuzz target $t (sanitizer: $san)" >&2
    if ! build "$t"; then
        echo ">>> build failed; retrying with RUSTC_BOOTSTRAP=1" >&2
        RUSTC_BOOTSTRAP=1 build "$t"
        bootstrap=(env RUSTC_BOOTSTRAP=1)
    fi
done

failed=()
for t in "${targets[@]}"; do
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1)
    if [ -f "dicts/$t.dict" ]; then
        args+=(-dict="dicts/$t.dict")
    fi
    echo ">>> fuzzing $t for ${secs}s" >&2
    if ! "${bootstrap[@]}" cargo "${tc[@]}" fuzz run -s "$san" "$t" -- "${args[@]}"; then
        echo "!!! fuzz target $t failed; crash input(s) in fuzz/artifacts/$t/" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "!!! failing fuzz targets: ${failed[*]}" >&2
    exit 1
fi
echo ">>> all fuzz targets ran ${secs}s without a crash: ${targets[*]}" >&2

#!/usr/bin/env bash
# Build the example binary package examples/hello-1.0.gpkg.tar from its
# sources in examples/hello/ (an image directory and its build-info) with
# `vartree package`. The output is reproducible: the sources are copied,
# given fixed modes and mtimes, and packed with --reproducible, so the same
# vartree gives the same bytes (run as root, so that files are owned 0:0).
#
#   scripts/build-example.sh [VARTREE] [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-}
out=${2:-$here/examples/hello-1.0.gpkg.tar}
if [ -z "$bin" ]; then
    (cd "$here" && cargo build --release --locked --quiet -p vartree)
    bin="$here/target/release/vartree"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/vartree-build-example.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -R "$here/examples/hello/." "$work/src"
chmod -R u=rwX,go=rX "$work/src"
chmod 0755 "$work/src/image/usr/bin/hello"
find "$work/src" -exec touch -h -d @1700000000 {} +
"$bin" --root "$work/unused-root" --quiet package \
    --image "$work/src/image" --build-info "$work/src/build-info" \
    --pkgdir "$work/pkgdir" --reproducible \
    --features=-binpkg-multi-instance >/dev/null
cp "$work/pkgdir/app-misc/hello-1.0.gpkg.tar" "$out"
echo "$out"

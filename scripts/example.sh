#!/usr/bin/env bash
# The main job on a bundled example: build vartree, build the example binary
# package from its sources in examples/hello/ with `vartree package`, install
# it into an empty root and list what was installed; install a package
# written by the real Portage 3.0.83's quickpkg; make a binary package back
# with `vartree quickpkg`; then unpack a sample root (packages merged by Portage, with a merged-/usr
# style /lib -> usr/lib symlink), query it, upgrade in it and unmerge from it.
# Needs only cargo and tar.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build --release --locked --quiet -p vartree
bin="$here/target/release/vartree"
root=$(mktemp -d "${TMPDIR:-/tmp}/vartree-example.XXXXXX")
trap 'rm -rf "$root"' EXIT
tar -xf examples/sample-root.tar -C "$root"

run() {
    echo
    echo "\$ vartree --root \$ROOT $*"
    "$bin" --root "$root" "$@"
}

# 1. Build the example package, install it into an empty root, list it.
fresh=$(mktemp -d "${TMPDIR:-/tmp}/vartree-example-fresh.XXXXXX")
pkgdir=$(mktemp -d "${TMPDIR:-/tmp}/vartree-example-pkgdir.XXXXXX")
trap 'rm -rf "$root" "$fresh" "$pkgdir"' EXIT
echo "\$ scripts/build-example.sh   # vartree package --image examples/hello/image --build-info examples/hello/build-info ..."
hello=$(scripts/build-example.sh "$bin" "$pkgdir/hello-1.0.gpkg.tar")
echo "\$ vartree --root \$EMPTY_ROOT install hello-1.0.gpkg.tar"
"$bin" --root "$fresh" install --sync never "$hello"
echo "\$ vartree --root \$EMPTY_ROOT list --slot --repo && vartree --root \$EMPTY_ROOT contents app-misc/hello"
"$bin" --root "$fresh" list --slot --repo
"$bin" --root "$fresh" contents app-misc/hello
HELLO_CONF="$fresh/etc/hello.conf" sh "$fresh/usr/bin/hello" vartree

# A package written by Portage installs the same way; quickpkg packs it back.
echo "\$ vartree --root \$EMPTY_ROOT install examples/bar-2.0-1.gpkg.tar"
"$bin" --root "$fresh" install --sync never examples/bar-2.0-1.gpkg.tar
echo "\$ vartree --root \$EMPTY_ROOT check && vartree --root \$EMPTY_ROOT quickpkg --pkgdir \$PKGDIR dev-util/bar"
"$bin" --root "$fresh" check
"$bin" --root "$fresh" quickpkg --pkgdir "$pkgdir" dev-util/bar
grep -E '^(CPV|PATH):' "$pkgdir/Packages"

# 2. Query a root Portage populated.
set +e
run list --slot --repo
run contents app-misc/foo
run contents --long --type sym,obj dev-util/bar
run owners /lib/foo/data-rel /usr/bin/bar /etc/foo/foo.conf
run size
run check
echo "# an administrator edits a config file and deletes a doc file:"
echo "tweak" >> "$root/etc/foo/foo.conf"
rm "$root/usr/share/doc/bar-2.0/README"
run check
rc=$?
echo "(exit status $rc: check reports the changes)"
[ "$rc" -eq 1 ] || { echo "example: expected exit status 1 from the last check" >&2; exit 1; }
set -e
echo
echo "# unmerge keeps the edited config file, removes everything else:"
run unmerge app-misc/foo
run list

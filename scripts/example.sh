#!/usr/bin/env bash
# The main job on a bundled example: build vartree, install a bundled binary
# package (written by the real Portage 3.0.83's quickpkg) into an empty root,
# then unpack a sample root (packages merged by Portage, with a merged-/usr
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

# 1. Install a binary package into an empty root.
fresh=$(mktemp -d "${TMPDIR:-/tmp}/vartree-example-fresh.XXXXXX")
trap 'rm -rf "$root" "$fresh"' EXIT
echo "\$ vartree --root \$EMPTY_ROOT install examples/bar-2.0-1.gpkg.tar"
"$bin" --root "$fresh" install --sync never examples/bar-2.0-1.gpkg.tar
echo "\$ vartree --root \$EMPTY_ROOT list --slot --repo && vartree --root \$EMPTY_ROOT check"
"$bin" --root "$fresh" list --slot --repo
"$bin" --root "$fresh" check

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

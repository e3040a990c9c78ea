#!/usr/bin/env bash
# The main job on a bundled example: build vartree, unpack a sample root
# (three packages merged by the real Portage 3.0.83, with a merged-/usr style
# /lib -> usr/lib symlink) and query it. Needs only cargo and tar.
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

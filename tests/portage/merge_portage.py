#!/usr/bin/env python3
"""Merge an image with the real Portage, for the merge differential test.

    $PY merge_portage.py [--eprefix P] [--report FILE] --root ROOT --image IMAGE
        --cpv CAT/PF [any other merge_image.py option]

portage-ref's merge_image.py (imported, its main() called unchanged), with
two additions:

  * --eprefix P: Portage runs with that target EPREFIX (prefix_env.py, as
    merge_eprefix.py does);
  * symlinks in the staged image whose target starts with the placeholder
    "@D@" (written by `merge_fixtures.py image … --for portage`) are
    re-pointed to Portage's real ${D} right after the image is copied into
    the build directory, so that the `${D}` rewrite of symlink targets can
    be exercised although the build directory's name is random;
  * --report FILE: JSON {"rc", "image_dir"} where image_dir is the ${D}
    Portage merged from (without the trailing slash).

Run with the venv python that has Portage.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _paths import import_refenv  # noqa: E402

DEE = "@D@"


def take(argv, name):
    """Remove `--name VALUE` / `--name=VALUE` from argv; return VALUE or None."""
    out, val, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == name and i + 1 < len(argv):
            val = argv[i + 1]
            i += 2
            continue
        if a.startswith(name + "="):
            val = a.split("=", 1)[1]
        else:
            out.append(a)
        i += 1
    argv[:] = out
    return val


def main(argv):
    argv = list(argv)
    eprefix = take(argv, "--eprefix")
    report = take(argv, "--report")
    if eprefix and eprefix.strip("/"):
        from prefix_env import use_eprefix

        _refenv = use_eprefix(eprefix)
    else:
        _refenv = import_refenv()

    staged = {}
    orig_copy_tree = _refenv.copy_tree

    def copy_tree(src, dst):
        orig_copy_tree(src, dst)
        dst = os.path.normpath(dst)
        staged["image_dir"] = dst
        for parent, dirs, files in os.walk(dst):
            for name in dirs + files:
                p = os.path.join(parent, name)
                if not os.path.islink(p):
                    continue
                t = os.readlink(p)
                if not t.startswith(DEE):
                    continue
                st = os.lstat(p)
                os.unlink(p)
                os.symlink(dst + t[len(DEE):], p)
                os.lchown(p, st.st_uid, st.st_gid)
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    _refenv.copy_tree = copy_tree
    import merge_image  # portage-ref, on sys.path through _refenv

    rc = merge_image.main(argv)
    if report:
        with open(report, "w") as f:
            json.dump({"rc": rc, "image_dir": staged.get("image_dir")}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Normalized JSON dump of a root after a merge, for the merge differential
test (crates/vartree/tests/merge_portage.rs).

    merge_dump.py ROOT [--eprefix P]

Prints one JSON object:

  "tree":  {path: entry} for everything under ROOT except the package
           manager's own state (EROOT/var/db/pkg, var/cache/edb,
           var/lib/portage, tmp, var/tmp, and env-update's files), and except
           directories that only exist to hold those.  path is relative to
           ROOT with a leading "/" (bytes that are not UTF-8 as "\\xNN").
           entry: type (dir reg sym fifo chr blk sock), mode (octal string of
           S_IMODE incl. suid/sgid/sticky), uid, gid, and per type:
             reg: size, sha256, mtime_ns, nlink, links (the sorted paths of
                  the tree sharing its inode, when more than one)
             sym: target, mtime_ns
             chr/blk: rdev_major, rdev_minor; fifo/chr/blk: mtime_ns
           xattrs: {name: hex value} when any;
           ino: the inode number (for checks within one root; never
           comparable across roots)
  "vdb":     portage-ref's vdb_dump.py output for EROOT (CONTENTS sorted,
             #dir_mtime masked), "" if there is no vdb
  "counter": the content of EROOT/var/cache/edb/counter, or null
  "merging": names of CAT/-MERGING-* directories left in the vdb

Needs no Portage; any python3 works.
"""

import argparse
import hashlib
import io
import json
import os
import stat
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _paths import portage_ref_dir  # noqa: E402

# Relative to EROOT (and also to ROOT when EPREFIX is set: Portage creates
# some of these in both).
STATE = (
    "var/db/pkg",
    "var/cache/edb",
    "var/lib/portage",
    "tmp",
    "var/tmp",
    # env_update() artefacts (the test passes --no-env-update anyway)
    "etc/profile.env",
    "etc/csh.env",
    "etc/environment.d/10-gentoo-env.conf",
    "etc/ld.so.conf",
    "etc/ld.so.cache",
    "etc/prelink.conf",
)


def kind(mode):
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "reg"),
        (stat.S_ISLNK, "sym"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "chr"),
        (stat.S_ISBLK, "blk"),
        (stat.S_ISSOCK, "sock"),
    ):
        if test(mode):
            return name
    return "unknown"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in sorted(names):
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False).hex()
        except OSError as e:
            out[n] = f"<error {e.errno}>"
    return out


def disp(s):
    """A str path from os.* (surrogate-escaped) as printable text: bytes
    that are not UTF-8 become \\xNN."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def dump_tree(root, excluded):
    tree = {}
    inodes = {}
    for parent, dirs, files in os.walk(root):
        rel_parent = "/" + os.path.relpath(parent, root) if parent != root else ""
        if rel_parent == "/.":
            rel_parent = ""
        keep = []
        for name in sorted(dirs + files):
            rel = f"{rel_parent}/{name}"
            if rel in excluded:
                continue
            key = disp(rel)
            path = os.path.join(parent, name)
            st = os.lstat(path)
            k = kind(st.st_mode)
            e = {
                "type": k,
                "mode": "%04o" % stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
                "ino": st.st_ino,
            }
            if k == "reg":
                e["size"] = st.st_size
                e["sha256"] = sha256(path)
                e["mtime_ns"] = st.st_mtime_ns
                e["nlink"] = st.st_nlink
                inodes.setdefault(st.st_ino, []).append(key)
            elif k == "sym":
                e["target"] = disp(os.readlink(path))
                e["mtime_ns"] = st.st_mtime_ns
            elif k in ("chr", "blk"):
                e["rdev_major"] = os.major(st.st_rdev)
                e["rdev_minor"] = os.minor(st.st_rdev)
                e["mtime_ns"] = st.st_mtime_ns
            elif k == "fifo":
                e["mtime_ns"] = st.st_mtime_ns
            x = xattrs(path)
            if x:
                e["xattrs"] = x
            tree[key] = e
            if k == "dir":
                keep.append(name)
        dirs[:] = [d for d in dirs if d in keep]
    for paths in inodes.values():
        if len(paths) > 1:
            for p in paths:
                tree[p]["links"] = sorted(paths)
    # Directories that only hold excluded state (var, var/db, var/cache, …).
    holders = set()
    for ex in excluded:
        parts = ex.strip("/").split("/")
        for i in range(1, len(parts)):
            holders.add("/" + "/".join(parts[:i]))
    for h in sorted(holders, key=len, reverse=True):
        e = tree.get(h)
        if e is None or e["type"] != "dir":
            continue
        if not any(p.startswith(h + "/") for p in tree):
            del tree[h]
    return tree


def dump(root, eprefix=""):
    """The dump of ROOT (with EPREFIX) as a dict (what main() prints)."""
    root = os.path.abspath(root)
    ep = eprefix.strip("/")
    ep = "/" + ep if ep else ""
    eroot = root + ep
    excluded = set()
    for s in STATE:
        excluded.add("/" + s)
        excluded.add(f"{ep}/{s}")
    out = {"tree": dump_tree(root, excluded)}

    vdb = os.path.join(eroot, "var", "db", "pkg")
    if os.path.isdir(vdb):
        sys.path.insert(0, portage_ref_dir())
        import vdb_dump

        buf = io.StringIO()
        merging = []
        for c in sorted(os.listdir(vdb)):
            cdir = os.path.join(vdb, c)
            if c.startswith(".") or not os.path.isdir(cdir):
                continue
            for p in sorted(os.listdir(cdir)):
                d = os.path.join(cdir, p)
                if p.startswith("-MERGING-") or p.startswith("."):
                    merging.append(f"{c}/{p}")
                    continue
                if os.path.isdir(d):
                    buf.write(f"##### {c}/{p}\n")
                    vdb_dump.dump_entry(d, False, set(), buf)
        out["vdb"] = buf.getvalue()
        out["merging"] = merging
    else:
        out["vdb"] = ""
        out["merging"] = []
    counter = os.path.join(eroot, "var", "cache", "edb", "counter")
    try:
        with open(counter) as f:
            out["counter"] = f.read()
    except FileNotFoundError:
        out["counter"] = None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--eprefix", default="")
    args = ap.parse_args()
    out = dump(args.root, args.eprefix)
    json.dump(out, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False,
              default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

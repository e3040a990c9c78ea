#!/usr/bin/env python3
"""Normalized JSON dumps of roots, for the upgrade / unmerge differential
test (crates/vartree/tests/upgrade_portage.rs).

    upgrade_dump.py [--eprefix P] ROOT…

Prints one JSON list, one object per ROOT: merge_dump.py's dump ("tree",
"vdb", "counter", "merging") plus

  "vdb_dirs": the names below EROOT/var/db/pkg, two levels deep, sorted:
              "CAT/" for each category directory and "CAT/NAME" for what it
              holds (so an empty category that was left behind shows), and
              top-level non-directories as "NAME";
  "confmem":  the lines of EROOT/var/lib/portage/config (config memory),
              sorted ([] when the file is missing or empty);
  "journal":  the names below EROOT/var/db/.vartree (vartree's transaction
              journal directory, left out of "tree" like Portage's own state
              directories), sorted: [] when nothing is left over.

Needs no Portage; any python3 works.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import merge_dump  # noqa: E402

# vartree's transaction journal directory (crates/merge/src/journal.rs) is
# package-manager state, like var/cache/edb: not part of the compared tree,
# but listed ("journal") so that leftovers show.
JOURNAL_DIR = "var/db/.vartree"
merge_dump.STATE = tuple(merge_dump.STATE) + (JOURNAL_DIR,)


def eroot_of(root, eprefix):
    ep = eprefix.strip("/")
    return os.path.join(os.path.abspath(root), ep) if ep else os.path.abspath(root)


def vdb_dirs(eroot):
    vdb = os.path.join(eroot, "var", "db", "pkg")
    out = []
    if not os.path.isdir(vdb):
        return out
    for c in sorted(os.listdir(vdb)):
        cdir = os.path.join(vdb, c)
        if not os.path.isdir(cdir) or os.path.islink(cdir):
            out.append(c)
            continue
        out.append(c + "/")
        out.extend(f"{c}/{n}" for n in sorted(os.listdir(cdir)))
    return out


def confmem(eroot):
    try:
        with open(os.path.join(eroot, "var", "lib", "portage", "config"),
                  encoding="utf-8", errors="backslashreplace") as f:
            return sorted(line.rstrip("\n") for line in f if line.strip())
    except FileNotFoundError:
        return []


def journal(eroot):
    top = os.path.join(eroot, JOURNAL_DIR)
    out = []
    for parent, dirs, files in os.walk(top):
        rel = os.path.relpath(parent, top)
        for n in dirs + files:
            out.append(n if rel == "." else os.path.join(rel, n))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+")
    ap.add_argument("--eprefix", default="")
    args = ap.parse_args()
    out = []
    for root in args.roots:
        d = merge_dump.dump(root, args.eprefix)
        eroot = eroot_of(root, args.eprefix)
        d["vdb_dirs"] = vdb_dirs(eroot)
        d["confmem"] = confmem(eroot)
        d["journal"] = journal(eroot)
        out.append(d)
    json.dump(out, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

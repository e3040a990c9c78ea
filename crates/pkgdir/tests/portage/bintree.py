#!/usr/bin/env python3
"""Ask the real Portage (binarytree, PackageIndex, use_reduce) about a PKGDIR.

Used by crates/pkgdir/tests/portage_diff.rs; run with the python of a venv
that has Portage (3.0.83).  Every mode prints one JSON object on stdout.

  bintree.py --portage-ref DIR populate --pkgdir P [--write] [--features F]
      binarytree._populate_local(reindex=True) on P (or the public
      populate(), which rewrites Packages when Portage wants to, with
      --write): the packages Portage sees (cpv, BUILD_ID, path, size, mtime),
      invalid packages, everything Portage printed, and the entries Portage
      computes when it re-reads package files.

  bintree.py --portage-ref DIR inject --pkgdir P [--binpkg-format F]
          --pkg FILE CAT/PF [--pkg ...]
      for each package in turn: copy FILE into P and call
      binarytree.inject(CAT/PF, current_pkg_path=...) as quickpkg does
      (BINPKG_FORMAT=F, default gpkg, decides the new file's extension: an
      xpak injected with BINPKG_FORMAT=gpkg is named .gpkg.tar); prints the
      new paths.

  bintree.py --portage-ref DIR index-roundtrip FILE...
      read each FILE with the PackageIndex binarytree uses (its allowed keys,
      defaults, header defaults with CHOST=x86_64-pc-linux-gnu) and write it
      back unmodified (no new TIMESTAMP); writes FILE.portage.

  bintree.py --portage-ref DIR use-reduce < JSON
      JSON: [[depstr, [use flags], atoms?], ...]; prints
      {"results": [string or "!ERR: message", ...]} from
      paren_enclose(use_reduce(depstr, uselist=use, token_class=Atom|None)).
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--portage-ref", required=True)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("populate")
    p.add_argument("--pkgdir", required=True)
    p.add_argument("--write", action="store_true")
    p.add_argument("--features", default="")
    p = sub.add_parser("inject")
    p.add_argument("--pkgdir", required=True)
    p.add_argument("--pkg", nargs=2, action="append", required=True)
    p.add_argument("--features", default="")
    p.add_argument("--binpkg-format", choices=("gpkg", "xpak"), default="gpkg")
    p = sub.add_parser("index-roundtrip")
    p.add_argument("files", nargs="+")
    sub.add_parser("use-reduce")
    args = ap.parse_args()

    sys.path.insert(0, os.path.abspath(args.portage_ref))
    if args.mode == "use-reduce":
        return use_reduce_mode()

    import _refenv  # must come before "import portage"

    work = tempfile.mkdtemp(prefix=".pkgdir-ref-")
    pkgdir = getattr(args, "pkgdir", None) or os.path.join(work, "pkgdir")
    cats = set()
    if os.path.isdir(pkgdir):
        cats.update(c for c in os.listdir(pkgdir) if os.path.isdir(os.path.join(pkgdir, c)))
    for _, cpv in getattr(args, "pkg", None) or ():
        cats.add(cpv.split("/")[0])
    env = _refenv.RefEnv(
        os.path.join(work, "root"),
        workdir=work,
        pkgdir=pkgdir,
        categories=sorted(cats),
        features=getattr(args, "features", ""),
        binpkg_format=getattr(args, "binpkg_format", None),
    )
    try:
        import portage

        eroot = env.check()
        bintree = portage.db[eroot]["bintree"]
        if args.mode == "populate":
            out = populate_mode(bintree, args.write)
        elif args.mode == "inject":
            out = inject_mode(bintree, args)
        else:
            out = roundtrip_mode(bintree, args.files)
        json.dump(out, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    finally:
        env.cleanup()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def captured():
    """Everything Portage prints (writemsg goes to sys.stderr/stdout)."""
    buf = io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buf
    try:
        yield buf
    finally:
        sys.stdout, sys.stderr = old


def plain(d):
    return {str(k): str(v) for k, v in d.items()}


def populate_mode(bintree, write):
    with captured() as buf:
        if write:
            bintree.populate()
            reindexed = None
        else:
            reindexed = bintree._populate_local(reindex=True)
            bintree.populated = True
        pkgs = []
        for cpv in bintree.dbapi.cpv_all():
            path = bintree.getname(cpv)
            pkgs.append(
                {
                    "cpv": str(cpv),
                    "build_id": cpv.build_id,
                    "build_time": cpv.build_time,
                    "path": os.path.relpath(path, bintree.pkgdir),
                    "size": cpv.file_size,
                    "mtime": cpv.mtime,
                    "md5": bintree.dbapi.aux_get(cpv, ["MD5"])[0],
                }
            )
    pkgs.sort(key=lambda p: p["path"])
    return {
        "packages": pkgs,
        "invalids": sorted(bintree.invalids),
        "invalid_paths": sorted(bintree.invalid_paths),
        "messages": buf.getvalue(),
        "index_update_needed": reindexed is not None,
        "reindexed": [plain(d) for d in reindexed.packages] if reindexed else [],
    }


def inject_mode(bintree, args):
    os.makedirs(bintree.pkgdir, exist_ok=True)
    paths = []
    with captured() as buf:
        bintree.populate()
        for i, (f, cpv) in enumerate(args.pkg):
            src = os.path.join(bintree.pkgdir, f".inject-{os.getpid()}-{i}")
            shutil.copy2(f, src)
            injected = bintree.inject(cpv, current_pkg_path=src)
            if injected is None:
                raise SystemExit(f"inject {f} failed: {buf.getvalue()}")
            paths.append(os.path.relpath(bintree.getname(injected), bintree.pkgdir))
    return {"paths": paths, "messages": buf.getvalue()}


def roundtrip_mode(bintree, files):
    out = []
    for f in files:
        pkgindex = bintree._new_pkgindex()
        with open(f, encoding="utf-8", errors="replace") as fh:
            pkgindex.read(fh)
        pkgindex.modified = False
        w = io.StringIO()
        pkgindex.write(w)
        with open(f + ".portage", "wb") as fh:
            fh.write(w.getvalue().encode("utf-8"))
        out.append(f + ".portage")
    return {"written": out}


def use_reduce_mode():
    from portage.dep import Atom, paren_enclose, use_reduce
    from portage.exception import InvalidDependString

    cases = json.load(sys.stdin)
    results = []
    for depstr, use, atoms in cases:
        try:
            r = use_reduce(
                depstr, uselist=frozenset(use), token_class=Atom if atoms else None
            )
            results.append(paren_enclose(r))
        except InvalidDependString as e:
            results.append(f"!ERR: {e}")
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())

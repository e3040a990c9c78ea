#!/usr/bin/env python3
"""Build test roots with the real Portage and record Portage's own answers.

    $PY tests/portage/build_roots.py --workdir DIR        (PY = the venv python with Portage)

Used by crates/vartree/tests/differential.rs.  For every root it

  1. merges a set of packages with portage-ref's merge_image.py (Portage's own
     dblink.merge through MergeProcess, phases stubbed) -- or with
     tests/portage/merge_eprefix.py for the Gentoo Prefix root;
  2. asks Portage's API, in a fresh process per root (Portage binds ROOT and
     EPREFIX at import time):
       vardbapi.cpv_all() + aux_get(cpv, ["SLOT", "repository", "COUNTER"])
       vardbapi.match(atom)                     for a few atoms
       vardbapi._dblink(cpv).getcontents()      for every package
       vardbapi._owners.iter_owners([path])     for a list of query paths
     and writes DIR/<root>/expected.json;
  3. writes DIR/manifest.json listing the roots and every CONTENTS file
     Portage wrote (including those of instances later replaced by an upgrade,
     saved as copies right after their merge) for the CONTENTS round-trip check.

Roots:
  main    EPREFIX="": live /lib -> usr/lib symlink; foo-1.0 then foo-1.1
          (same-slot upgrade); a package with every CONTENTS type and odd
          names (space, " -> ", hardlink, non-UTF-8 name, FIFO, char device,
          relative/absolute/dangling/directory symlinks); a library merged
          through /lib; two slots of one package (one with a sub-slot); one
          path owned by two packages (second merged with -protect-owned); a
          package without `repository`; an empty package.
  prefix  EPREFIX=/opt/gentoo: live /opt/gentoo/lib -> usr/lib; foo-1.0 then
          foo-1.1; a library merged through the symlink; an image file outside
          EPREFIX (Portage does not merge it).

All paths written to the JSON files are relative to DIR (or, for CONTENTS
data, exactly as recorded in CONTENTS).
"""

import argparse
import functools
import json
import os
import shutil
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _paths import portage_ref_dir  # noqa: E402

MTIME = 1700000000
BUILD_TIME = "1700000000"
PREFIX = "/opt/gentoo"


# --------------------------------------------------------------- image helpers
def _p(img, rel):
    path = os.path.join(img, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def wfile(img, rel, data, mode=0o644):
    path = _p(img, rel)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def wlink(img, rel, target):
    os.symlink(target, _p(img, rel))


def wdir(img, rel):
    os.makedirs(os.path.join(img, rel.lstrip("/")), exist_ok=True)


def set_mtimes(img, mtime=MTIME):
    for parent, dirs, files in os.walk(img, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(parent, name), (mtime, mtime), follow_symlinks=False)
    os.utime(img, (mtime, mtime))


def gen_small(out, version, relocate=""):
    """portage-ref's gen_image.py small (foo-1.0 / foo-1.1), optionally moved
    under IMAGE/<relocate> (for an EPREFIX image)."""
    tmp = out + ".gen"
    subprocess.run(
        [sys.executable, os.path.join(portage_ref_dir(), "gen_image.py"), "small", tmp,
         "--version", version, "--mtime", str(MTIME)],
        check=True,
    )
    if relocate:
        dest = os.path.join(out, relocate.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.rename(tmp, dest)
        set_mtimes(out)
    else:
        os.rename(tmp, out)


def img_weird(img):
    """Every CONTENTS type and the awkward names."""
    w = "/usr/share/weird"
    wfile(img, f"{w}/plain.txt", "plain\n")
    wfile(img, f"{w}/with space.txt", "space\n")
    wfile(img, f"{w}/arrow -> name.txt", "an obj whose name contains ' -> '\n")
    wfile(img, f"{w}/café-ü.txt", "utf-8 name\n")
    # Not valid UTF-8: Portage renames undecodable bytes to '?' before merging.
    wfile(img, os.fsdecode(os.fsencode(f"{w}/bad-") + b"\xff\xfe" + b"-name.txt"), "bytes\n")
    a = wfile(img, f"{w}/hard-a", "hardlinked\n")
    os.link(a, _p(img, f"{w}/hard-b"))
    os.mkfifo(_p(img, f"{w}/fifo"))
    try:  # a char device (1,3) like /dev/null; needs root (CAP_MKNOD)
        os.mknod(_p(img, f"{w}/chardev"), 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        log("not root: no char device in the weird package (no 'dev' entry tested)")
    wlink(img, f"{w}/rel-link", "plain.txt")
    wlink(img, f"{w}/rel-up-link", "../weird/with space.txt")
    wlink(img, f"{w}/abs-link", f"{w}/plain.txt")
    wlink(img, f"{w}/sym -> arrow", "plain.txt")
    wlink(img, f"{w}/dangling", "/nonexistent/target")
    wfile(img, f"{w}/subdir/inner.txt", "inner\n")
    wlink(img, f"{w}/dirlink", "subdir")
    wdir(img, f"{w}/empty-dir")
    wfile(img, "/usr/bin/weird-tool", "#!/bin/sh\necho weird\n", 0o755)
    wfile(img, f"{w}/.keep_app-misc_weird-0", "")


def img_libalpha(img):
    # Image directory lib/ -- merged *through* the live /lib -> usr/lib symlink;
    # CONTENTS records the image paths (/lib/...).
    wfile(img, "/lib/libalpha.so.1", "\x7fELF alpha\n", 0o755)
    wlink(img, "/lib/libalpha.so", "libalpha.so.1")


def img_libbeta(img):
    wfile(img, "/usr/lib/libbeta.so.2", "\x7fELF beta\n", 0o755)
    wfile(img, "/usr/bin/beta", "#!/bin/sh\n", 0o755)


def img_libslot(img, ver):
    major = ver.split(".")[0]
    wfile(img, f"/usr/include/libslot-{major}/slot.h", f"#define SLOT_VERSION \"{ver}\"\n")
    wfile(img, f"/usr/lib/libslot.so.{major}", f"\x7fELF slot {ver}\n", 0o755)
    wfile(img, f"/usr/share/doc/libslot-{ver}/README", f"libslot {ver}\n")


def img_share(img, who):
    wfile(img, "/usr/share/common/shared.txt", "identical shared file\n")
    wfile(img, f"/usr/share/common/only-{who}.txt", f"{who}\n")


def img_norepo(img):
    wfile(img, "/usr/bin/norepo", "#!/bin/sh\n", 0o755)


def img_empty(img):
    os.makedirs(img, exist_ok=True)


def img_libgamma_prefix(img):
    wfile(img, f"{PREFIX}/lib/libgamma.so.1", "\x7fELF gamma\n", 0o755)
    wfile(img, f"{PREFIX}/usr/share/gamma/data.txt", "gamma\n")
    # Outside EPREFIX: Portage merges ${ED} only, so this is ignored.
    wfile(img, "/usr/share/outside-prefix.txt", "never merged\n")


# ---------------------------------------------------------------------- roots
# (cpv, image builder, extra merge_image args)
MAIN_PKGS = [
    ("app-misc/foo-1.0", lambda d: gen_small(d, "1.0"), ["--repo", "gentoo"]),
    ("app-misc/foo-1.1", lambda d: gen_small(d, "1.1"), ["--repo", "gentoo"]),
    ("app-misc/weird-1.0", img_weird, ["--repo", "gentoo"]),
    ("sys-libs/libalpha-1.0", img_libalpha, ["--repo", "gentoo", "--slot", "0"]),
    ("sys-libs/libbeta-2.0", img_libbeta, ["--repo", "gentoo"]),
    ("dev-libs/libslot-10.0", lambda d: img_libslot(d, "10.0"),
     ["--repo", "gentoo", "--slot", "10/10.0"]),
    ("dev-libs/libslot-2.0", lambda d: img_libslot(d, "2.0"), ["--repo", "gentoo", "--slot", "2"]),
    ("app-misc/share-a-1.0", lambda d: img_share(d, "a"), ["--repo", "gentoo"]),
    # The second owner of /usr/share/common/shared.txt: without protect-owned
    # Portage merges over the collision ("merged despite file collisions").
    ("app-misc/share-b-1.0", lambda d: img_share(d, "b"),
     ["--repo", "other-repo", "--features=-protect-owned"]),
    ("app-misc/norepo-1.0-r2", img_norepo, []),
    ("virtual/empty-1", img_empty, ["--repo", "gentoo"]),
]

MAIN_QUERIES = [
    "/usr/bin/foo",                        # obj of foo-1.1
    "/usr/bin/foo-abs",                    # sym (absolute target)
    "/usr/lib/foo/data-rel",               # sym (relative target)
    "/lib/foo/data-rel",                   # same, through the live /lib -> usr/lib
    "/usr/share/foo/new-only.txt",         # added by the upgrade
    "/usr/share/foo/old-only.txt",         # removed by the upgrade: nobody
    "/usr/share/foo/empty-dir",            # dir entry
    "/etc/foo/foo.conf",                   # config-protected file
    "/usr/bin",                            # directory owned by several packages
    "/usr/share/common/shared.txt",        # owned by two packages
    "/usr/share/common/only-a.txt",
    "/lib/libalpha.so.1",                  # recorded as /lib/... (merged through /lib)
    "/usr/lib/libalpha.so.1",              # same file through the real dir
    "/lib/libalpha.so",                    # sym recorded as /lib/...
    "/usr/lib/libbeta.so.2",               # recorded as /usr/lib/...
    "/lib/libbeta.so.2",                   # same file through the /lib symlink
    "/lib",                                # the live symlink itself (dir /lib in CONTENTS)
    "/usr/lib",                            # directory
    "/usr/include/libslot-2/slot.h",       # slot 2
    "/usr/include/libslot-10/slot.h",      # slot 10
    "/usr/lib/libslot.so.10",
    "/usr/share/weird/plain.txt",
    "/usr/share/weird/with space.txt",
    "/usr/share/weird/arrow -> name.txt",
    "/usr/share/weird/café-ü.txt",
    "/usr/share/weird/bad-??-name.txt",
    "/usr/share/weird/hard-a",
    "/usr/share/weird/hard-b",
    "/usr/share/weird/fifo",
    "/usr/share/weird/chardev",
    "/usr/share/weird/rel-link",
    "/usr/share/weird/abs-link",
    "/usr/share/weird/sym -> arrow",
    "/usr/share/weird/dangling",
    "/usr/share/weird/dirlink",            # the symlink to a directory
    "/usr/share/weird/dirlink/inner.txt",  # through the package's own dir symlink
    "/usr/share/weird/subdir/inner.txt",
    "/usr/share/weird/empty-dir",
    "/usr/share/weird/.keep_app-misc_weird-0",
    "/usr/bin/norepo",
    "/usr/share/nobody.txt",               # nobody (parent exists)
    "/no/such/dir/file",                   # nobody (parent missing)
    "/var/db/pkg",                         # the vdb itself: nobody
]

PREFIX_PKGS = [
    ("app-misc/foo-1.0", lambda d: gen_small(d, "1.0", PREFIX), ["--repo", "gentoo"]),
    ("app-misc/foo-1.1", lambda d: gen_small(d, "1.1", PREFIX), ["--repo", "gentoo"]),
    ("sys-libs/libgamma-1.0", img_libgamma_prefix, ["--repo", "gentoo"]),
]

PREFIX_QUERIES = [
    f"{PREFIX}/usr/bin/foo",
    f"{PREFIX}/usr/lib/foo/data-rel",
    f"{PREFIX}/lib/foo/data-rel",              # through the live prefix lib symlink
    f"{PREFIX}/usr/share/foo/old-only.txt",    # removed by the upgrade
    f"{PREFIX}/etc/foo/foo.conf",
    f"{PREFIX}/usr/bin",
    f"{PREFIX}/lib/libgamma.so.1",             # recorded as EPREFIX/lib/...
    f"{PREFIX}/usr/lib/libgamma.so.1",         # same file via the real dir
    f"{PREFIX}/usr/share/gamma/data.txt",
    "/usr/bin/foo",                            # without EPREFIX: nobody
    "/usr/share/outside-prefix.txt",           # in the image outside ED: never merged
    PREFIX,                                    # EPREFIX itself is never listed
]

# Atoms for `list ATOM` (answered by vardbapi.match).
MAIN_ATOMS = [
    "app-misc/foo",
    "foo",
    "=app-misc/foo-1.1",
    "=app-misc/foo-1.0",
    "dev-libs/libslot",
    "dev-libs/libslot:10",
    "dev-libs/libslot:10/10.0",
    "dev-libs/libslot:2",
    "<dev-libs/libslot-10",
    ">=dev-libs/libslot-2.0",
    "=dev-libs/libslot-1*",
    "dev-libs/libslot::gentoo",
    "app-misc/share-b::other-repo",
    "app-misc/norepo::gentoo",
    "~app-misc/norepo-1.0",
    "virtual/empty",
    "app-misc/nonexistent",
]
PREFIX_ATOMS = ["app-misc/foo", "sys-libs/libgamma", "=app-misc/foo-1.0"]

ROOTS = [
    # name, eprefix, packages, queries, atoms, live dir symlink (relative to ROOT)
    ("main", "", MAIN_PKGS, MAIN_QUERIES, MAIN_ATOMS, "lib"),
    ("prefix", PREFIX, PREFIX_PKGS, PREFIX_QUERIES, PREFIX_ATOMS, f"{PREFIX.lstrip('/')}/lib"),
]


def log(msg):
    sys.stderr.write(f"[build_roots] {msg}\n")
    sys.stderr.flush()


def merge(root, eprefix, cpv, builder, extra, imgdir, quiet):
    img = os.path.join(imgdir, cpv.replace("/", "_"))
    builder(img)
    if os.path.isdir(img):
        set_mtimes(img)
    ref = portage_ref_dir()
    if eprefix:
        cmd = [sys.executable, os.path.join(HERE, "merge_eprefix.py"), "--eprefix", eprefix]
    else:
        cmd = [sys.executable, os.path.join(ref, "merge_image.py")]
    cmd += ["--root", root, "--image", img, "--cpv", cpv, "--build-time", BUILD_TIME] + extra
    # PYTHONDONTWRITEBYTECODE: no __pycache__ in portage-ref's (shared) directory
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    if r.returncode != 0 or not quiet:
        sys.stderr.write(r.stdout)
    if r.returncode != 0:
        raise SystemExit(f"merge of {cpv} into {root} failed (rc={r.returncode})")


def build(workdir, quiet):
    manifest = {"roots": [], "contents_files": []}
    snapdir = os.path.join(workdir, "contents-snapshots")
    os.makedirs(snapdir, exist_ok=True)
    for name, eprefix, pkgs, queries, atoms, dirlink in ROOTS:
        t0 = time.perf_counter()
        base = os.path.join(workdir, name)
        root = os.path.join(base, "root")
        imgdir = os.path.join(base, "images")
        os.makedirs(imgdir)
        # The live directory symlink (merged-/usr style), before any merge.
        link = os.path.join(root, dirlink)
        os.makedirs(os.path.join(os.path.dirname(link), "usr", "lib"))
        os.symlink("usr/lib", link)
        vdb = os.path.join(root, eprefix.lstrip("/"), "var", "db", "pkg")
        for cpv, builder, extra in pkgs:
            merge(root, eprefix, cpv, builder, extra, imgdir, quiet)
            src = os.path.join(vdb, cpv, "CONTENTS")
            if not os.path.isfile(src):
                raise SystemExit(f"{cpv}: Portage wrote no CONTENTS at {src}")
            snap = os.path.join(snapdir, f"{name}_{cpv.replace('/', '_')}.CONTENTS")
            shutil.copyfile(src, snap)
            manifest["contents_files"].append(os.path.relpath(snap, workdir))
        shutil.rmtree(imgdir)
        log(f"root {name}: {len(pkgs)} merges in {time.perf_counter() - t0:.1f}s")

        spec = {"root": root, "eprefix": eprefix, "queries": queries, "atoms": atoms}
        spec_path = os.path.join(base, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f, indent=1, ensure_ascii=False)
        expected = os.path.join(base, "expected.json")
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--query", spec_path, "--out", expected],
            check=True,
        )
        os.unlink(spec_path)
        with open(expected) as f:
            exp = json.load(f)
        for c in exp["contents"]:
            manifest["contents_files"].append(os.path.join(name, "root", c["contents_file"]))
        manifest["roots"].append(
            {
                "name": name,
                "root": os.path.relpath(root, workdir),
                "eprefix": eprefix,
                "expected": os.path.relpath(expected, workdir),
            }
        )
    with open(os.path.join(workdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
    return manifest


# ---------------------------------------------------------- Portage's answers
def query(spec_path, out):
    """Runs in its own process: Portage is configured for one ROOT/EPREFIX."""
    with open(spec_path) as f:
        spec = json.load(f)
    root, eprefix = spec["root"], spec["eprefix"]
    from prefix_env import use_eprefix

    _refenv = use_eprefix(eprefix)
    env = _refenv.RefEnv(root, workdir=os.path.dirname(spec_path))
    try:
        import portage
        from portage.versions import catpkgsplit, vercmp

        eroot = env.check()
        vardb = portage.db[eroot]["vartree"].dbapi
        ROOT = portage.settings["ROOT"]
        root_strip = ROOT.rstrip("/")  # CONTENTS path = getcontents() key minus this
        result = {
            "portage_version": portage.VERSION,
            "ROOT_is_tempdir": True,
            "EPREFIX": portage.settings["EPREFIX"],
            "vdb": os.path.relpath(vardb._dbroot, root),
        }

        # ---- list
        cpv_all = vardb.cpv_all()
        result["cpv_all_order"] = [str(c) for c in cpv_all]
        rows = []
        for cpv in cpv_all:
            slot, repo, counter = vardb.aux_get(cpv, ["SLOT", "repository", "COUNTER"])
            cat, pn, ver, rev = catpkgsplit(cpv)
            pf = cpv.split("/", 1)[1]
            pvr = pf[len(pn) + 1:]
            main_slot, _, sub = slot.partition("/")
            try:
                counter_i = int(counter)
            except ValueError:
                counter_i = None
            rows.append(
                {
                    "cpv": str(cpv),
                    "category": cat,
                    "pf": pf,
                    "pn": pn,
                    "pvr": pvr,
                    "slot": main_slot,
                    "subslot": sub or None,
                    "repository": repo or None,
                    "counter": counter_i,
                    "_aux_get": {"SLOT": slot, "repository": repo, "COUNTER": counter},
                }
            )

        def cmp(a, b):
            ka, kb = (a["category"], a["pn"]), (b["category"], b["pn"])
            if ka != kb:
                return -1 if ka < kb else 1
            return vercmp(a["pvr"], b["pvr"])

        rows.sort(key=functools.cmp_to_key(cmp))
        result["list"] = rows
        result["matches"] = [
            {"atom": a, "cpvs": sorted((str(c) for c in vardb.match(a)),
                                       key=functools.cmp_to_key(lambda x, y: cmp(
                                           next(r for r in rows if r["cpv"] == x),
                                           next(r for r in rows if r["cpv"] == y))))}
            for a in spec["atoms"]
        ]

        # ---- contents
        contents_re = portage.dblink._contents_re
        contents = []
        for row in rows:
            cpv = row["cpv"]
            link = vardb._dblink(cpv)
            cfile = os.path.join(link.dbdir, "CONTENTS")
            # Paths that really are lines of the file (Portage's own regex), to
            # tell them from the parent dirs getcontents() adds implicitly.
            recorded = set()
            with open(cfile, encoding="utf-8", errors="replace") as f:
                nlines = 0
                for line in f:
                    nlines += 1
                    m = contents_re.match(line.rstrip("\n"))
                    if m is None:
                        continue
                    for g in ("obj", "sym", "dir"):
                        if m.group(g) is not None:
                            base = contents_re.groupindex[g]
                            recorded.add(m.group(base + 2))
            entries, implicit = [], []
            for key, data in link.getcontents().items():
                path = key[len(root_strip):] if root_strip else key
                if not path.startswith("/"):
                    raise SystemExit(f"unexpected key {key!r} for ROOT {ROOT!r}")
                typ = data[0]
                if typ == "obj":
                    e = {"type": "obj", "path": path, "md5": data[2], "mtime": int(data[1])}
                elif typ == "sym":
                    e = {"type": "sym", "path": path, "target": data[2], "mtime": int(data[1])}
                else:
                    e = {"type": typ, "path": path}
                (entries if path in recorded else implicit).append(e)
            contents.append(
                {
                    "cpv": cpv,
                    "contents_file": os.path.relpath(cfile, root),
                    "contents_lines": nlines,
                    "entries": entries,
                    "implicit_parent_dirs": implicit,
                }
            )
        result["contents"] = contents

        # ---- owners (one iter_owners call per path, to know which query
        # each answer belongs to; iter_owners yields (dblink, key[len(EROOT):]))
        owners = []
        for q in spec["queries"]:
            found = []
            for dblnk, relpath in vardb._owners.iter_owners([q]):
                key = dblnk._match_contents(q)
                entry = key[len(root_strip):] if (key and root_strip) else key
                found.append(
                    {"cpv": str(dblnk.mycpv), "entry": entry, "iter_owners_path": relpath}
                )
            found.sort(key=lambda o: (o["cpv"], o["entry"] or ""))
            owners.append({"path": q, "owners": found})
        result["owners"] = owners
        with open(out, "w") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
    finally:
        env.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", help="empty or missing directory to build the roots in")
    ap.add_argument("--verbose", action="store_true", help="show Portage's merge output")
    ap.add_argument("--query", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.query:
        return query(args.query, args.out)
    if not args.workdir:
        ap.error("--workdir is required")
    workdir = os.path.abspath(args.workdir)
    if os.path.exists(workdir) and os.listdir(workdir):
        sys.exit(f"{workdir} exists and is not empty")
    os.makedirs(workdir, exist_ok=True)
    t0 = time.perf_counter()
    manifest = build(workdir, quiet=not args.verbose)
    log(
        f"done in {time.perf_counter() - t0:.1f}s: {len(manifest['roots'])} roots, "
        f"{len(manifest['contents_files'])} CONTENTS files -> {workdir}/manifest.json"
    )


if __name__ == "__main__":
    sys.exit(main())

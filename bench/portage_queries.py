#!/usr/bin/env python3
"""The Portage side of the VDB benchmark: the same queries as `vartree`,
answered by Portage's own code on the same ROOT.

    $PY bench/portage_queries.py OP --root ROOT [--paths-file F] [--repeat N] [--timing-json OUT]

    OP = owners   vardbapi._owners.iter_owners(paths): builds the owners index
                  from scratch (cpv_all, aux_get COUNTER/_mtime_, getcontents of
                  every package), then matches -- what `portageq owners` and
                  emerge's collision checks do in a new process
         list     vardbapi.cpv_all() sorted (cpv_sort_key) + aux_get(SLOT,
                  repository) per package, printed as CAT/PF:SLOT::REPO
                  (`qlist -ISR` / `portageq match` style)
         check    what qcheck / dblink's unmerge checks do, in Python with
                  Portage's helpers: for every package getcontents(); per obj
                  lstat + mtime compare + portage.checksum.perform_md5; per sym
                  lstat + readlink compare; per dir lstat; counts problems
         verify   sanity: every package's consolidated `metadata` file is
                  accepted by Portage (_read_metadata_file), so aux_get takes
                  its fast path as on a real 3.0.82+ system

Without --repeat the operation runs once and prints its result (measure the
whole process from outside: interpreter start-up, `import portage`, Portage's
configuration, the query).  With --repeat N it runs the query N times in this
process, each time on a *fresh* vartree/vardbapi (no Portage caches carried
over; the OS page cache is warm) and writes the in-process times (the API
time, without start-up) to --timing-json.

Portage is configured with portage-ref's throw-away configuration
(_refenv.RefEnv, EPREFIX="": vdb = ROOT/var/db/pkg; a private config dir is
created next to ROOT and removed at exit -- a few ms of the process time).
Run with the venv python that has Portage (scripts/setup-venv.sh).
"""

import argparse
import json
import os
import stat
import statistics
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "portage"))

from _paths import import_refenv  # noqa: E402


def fresh_vardb(portage):
    """A new vartree/vardbapi: empty aux and owners caches."""
    return portage.vartree(settings=portage.settings).dbapi


def op_owners(portage, vardb, paths, out):
    n = 0
    for dblnk, relpath in vardb._owners.iter_owners(list(paths)):
        n += 1
        if out:
            out.write(f"{dblnk.mycpv} /{relpath}\n")
    return {"owner_matches": n}


def op_list(portage, vardb, out):
    from portage.versions import cpv_sort_key

    n = 0
    for cpv in sorted(vardb.cpv_all(), key=cpv_sort_key()):
        slot, repo = vardb.aux_get(cpv, ["SLOT", "repository"])
        n += 1
        if out:
            out.write(f"{cpv}:{slot}::{repo}\n")
    return {"packages": n}


def op_check(portage, vardb, out):
    from portage.checksum import perform_md5

    counts = {"packages": 0, "obj": 0, "sym": 0, "dir": 0, "other": 0, "problems": 0}
    for cpv in vardb.cpv_all():
        counts["packages"] += 1
        link = vardb._dblink(cpv)
        for path, data in link.getcontents().items():
            typ = data[0]
            try:
                st = os.lstat(path)
            except OSError:
                counts["problems"] += 1
                if out:
                    out.write(f"{cpv}: missing {path}\n")
                continue
            bad = False
            if typ == "obj":
                counts["obj"] += 1
                if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns // 1000000000 != int(data[1]):
                    bad = True
                elif perform_md5(path) != data[2].lower():
                    bad = True
            elif typ == "sym":
                counts["sym"] += 1
                bad = not stat.S_ISLNK(st.st_mode) or os.readlink(path) != data[2]
            elif typ == "dir":
                counts["dir"] += 1
                bad = not stat.S_ISDIR(st.st_mode)
            else:
                counts["other"] += 1
            if bad:
                counts["problems"] += 1
                if out:
                    out.write(f"{cpv}: {typ} {path} differs\n")
    return counts


def op_verify(portage, vardb, out):
    from portage.dbapi.vartree import _read_metadata_file

    ok = bad = 0
    for cpv in vardb.cpv_all():
        d = vardb.getpath(cpv)
        if _read_metadata_file(os.path.join(d, "metadata")) is None:
            bad += 1
            if out:
                out.write(f"{cpv}: metadata file rejected by Portage\n")
        else:
            ok += 1
        if not vardb.aux_get(cpv, ["SLOT"])[0]:
            bad += 1
    return {"metadata_ok": ok, "problems": bad}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("op", choices=("owners", "list", "check", "verify"))
    ap.add_argument("--root", required=True)
    ap.add_argument("--paths-file", help="owners: query paths, one per line (as in CONTENTS)")
    ap.add_argument("--repeat", type=int, default=0,
                    help="time the query N times in-process (fresh vardbapi each time)")
    ap.add_argument("--timing-json", help="write in-process timings here (with --repeat)")
    ap.add_argument("--quiet", action="store_true", help="do not print the results")
    args = ap.parse_args()

    t_start = time.perf_counter()
    _refenv = import_refenv()
    env = _refenv.RefEnv(args.root)
    rc = 0
    try:
        import portage

        env.check()
        t_ready = time.perf_counter()
        paths = []
        if args.op == "owners":
            if not args.paths_file:
                sys.exit("owners needs --paths-file")
            with open(args.paths_file) as f:
                paths = [line.rstrip("\n") for line in f if line.strip()]

        def run(out):
            vardb = fresh_vardb(portage)
            if args.op == "owners":
                return op_owners(portage, vardb, paths, out)
            if args.op == "list":
                return op_list(portage, vardb, out)
            if args.op == "check":
                return op_check(portage, vardb, out)
            return op_verify(portage, vardb, out)

        if args.repeat:
            times, result = [], None
            for _ in range(args.repeat):
                t = time.perf_counter()
                result = run(None)
                times.append(time.perf_counter() - t)
            rep = {
                "op": args.op,
                "paths": len(paths),
                "repeat": args.repeat,
                "times_s": [round(x, 4) for x in times],
                "median_s": round(statistics.median(times), 4),
                "startup_s": round(t_ready - t_start, 4),
                "result": result,
                "portage_version": portage.VERSION,
            }
            if args.timing_json:
                with open(args.timing_json, "w") as f:
                    json.dump(rep, f, indent=1)
            sys.stderr.write(f"[portage_queries] {json.dumps(rep)}\n")
        else:
            result = run(None if args.quiet else sys.stdout)
            if args.op in ("check", "verify") and result.get("problems"):
                rc = 1
            sys.stderr.write(f"[portage_queries] {args.op}: {json.dumps(result)}\n")
    finally:
        env.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Does Portage's own vardbapi read a VDB without complaint?

    vdb_sanity.py ROOT [ROOT ...]

For each ROOT (each in its own child process, since Portage is configured
for one ROOT per process): cpv_all(), aux_get of every metadata key and
COUNTER, getcontents() and the global counter. Anything Portage writes to
stderr ("!!! Invalid db entry", "!!! Parse error in CONTENTS", "COUNTER …
corrupted", …) counts as a warning. Prints one line per root and exits 1
if any root produced a warning or an exception.
"""

import io
import os
import subprocess
import sys

from _paths import import_refenv


def check_one(root):
    if not os.path.isdir(os.path.join(root, "var", "db", "pkg")):
        raise SystemExit(f"{root}: no VDB (var/db/pkg) there")
    _refenv = import_refenv()
    import tempfile

    work = tempfile.mkdtemp(prefix=".vdb-sanity-", dir=os.path.dirname(os.path.abspath(root)))
    env = _refenv.RefEnv(root, workdir=work)
    captured = io.StringIO()
    real_stderr = sys.stderr
    sys.stderr = captured
    try:
        import portage

        eroot = env.check()
        vardb = portage.db[eroot]["vartree"].dbapi
        keys = sorted(vardb._aux_cache_keys) + ["COUNTER", "SLOT", "repository"]
        n = 0
        for cpv in vardb.cpv_all():
            vardb.aux_get(cpv, keys)
            vardb.cpv_counter(cpv)
            vardb._dblink(cpv).getcontents()
            n += 1
        vardb.get_counter_tick_core()
    finally:
        sys.stderr = real_stderr
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    warnings = [l for l in captured.getvalue().splitlines() if l.strip()]
    return n, warnings


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--one":
        n, warnings = check_one(sys.argv[2])
        for w in warnings:
            print(f"WARNING {w}")
        print(f"PACKAGES {n}")
        sys.exit(1 if warnings else 0)
    bad = 0
    for root in sys.argv[1:]:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", root],
                           capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        status = "ok" if p.returncode == 0 else "WARNINGS"
        print(f"{root}: {status}")
        if p.returncode != 0:
            bad += 1
            sys.stdout.write(p.stdout + p.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

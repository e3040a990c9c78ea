#!/usr/bin/env python3
"""Time vartree against Portage and against the filesystem floor on a VDB
made by gen_vdb.py.  Normally started by scripts/bench-vdb.sh.

    python3 bench/run_bench.py --workdir DIR --vartree PATH --python PY
                               [--runs 5] [--fast-runs 10] [--api-repeat 3]
                               [--only list,owners-1,owners-1000,check]

Every command is timed as a whole process (what a user waits for) with
hyperfine (--warmup, --runs; hyperfine subtracts its shell start-up), or,
without hyperfine, by this script (median of N after warm-up runs).  Portage's
queries are additionally timed in-process (portage_queries.py --repeat: fresh
vardbapi each time, after start-up and `import portage`).  The page cache is
warm (everything is read once before timing and by the warm-up runs): dropping
caches is not possible reliably on this machine, so these are warm-cache
numbers.

Before timing, each command runs once under /usr/bin/time (exit status, peak
RSS), and vartree's --json answers are compared with Portage's on the big VDB
(owners: the set of (cpv, CONTENTS entry) pairs; list: CPV, SLOT, repository).

Writes DIR/results/{results.json,results.md} and prints the Markdown tables.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, executable="/bin/bash", **kw)


def log(msg):
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


def fmt_s(x):
    if x is None:
        return "n/a"
    if x < 0.001:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1000:.1f} ms"
    return f"{x:.2f} s"


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "n/a"
    r = a / b
    return f"{r:.0f}×" if r >= 10 else f"{r:.2f}×"


class Timer:
    def __init__(self, args, outdir):
        self.args = args
        self.outdir = outdir
        self.hyperfine = shutil.which("hyperfine") if not args.no_hyperfine else None

    def probe(self, cmd):
        """One run under /usr/bin/time: exit status, peak RSS, wall, stderr tail."""
        timef = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            full = f"{timef} -f '%e %M' -o {tf.name} bash -c {shlex.quote(cmd)}" if timef else cmd
            t = time.perf_counter()
            r = sh(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                   errors="replace")
            wall = time.perf_counter() - t
            rss = None
            if timef:
                try:
                    parts = tf.read().split()
                    rss = int(parts[-1]) if parts else None
                except ValueError:
                    rss = None
        tail = r.stderr.strip().splitlines()[-3:] if r.stderr else []
        return {"status": r.returncode, "wall_s": round(wall, 4), "peak_rss_kib": rss,
                "stderr_tail": tail}

    def time(self, name, cmd, runs, warmup):
        if self.hyperfine:
            out = os.path.join(self.outdir, f"hyperfine-{name}.json")
            r = sh(
                f"hyperfine --style basic --warmup {warmup} --runs {runs} "
                f"--export-json {shlex.quote(out)} -n {shlex.quote(name)} {shlex.quote(cmd)}",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            )
            if r.returncode != 0:
                log(f"hyperfine failed for {name}:\n{r.stdout}")
                return None
            with open(out) as f:
                res = json.load(f)["results"][0]
            times = res["times"]
        else:
            for _ in range(warmup):
                sh(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                sh(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times.append(time.perf_counter() - t)
        return {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "runs": len(times),
            "tool": "hyperfine" if self.hyperfine else "own (median of N)",
        }


def machine_info(workdir):
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = models[0] if models else "?"
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    r = sh(f"findmnt -n -o FSTYPE --target {shlex.quote(workdir)}", stdout=subprocess.PIPE,
           text=True)
    info["filesystem"] = r.stdout.strip() or "?"
    info["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    r = sh("hyperfine --version", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info["hyperfine"] = r.stdout.strip() or None
    return info


def compare_owners(vt_json, portage_lines):
    """vartree: [{path, owners:[{cpv, entry}]}]; Portage: 'cpv /entry' lines."""
    a = {(o["cpv"], o["entry"]) for q in vt_json for o in q.get("owners", [])}
    b = set()
    for line in portage_lines:
        cpv, _, entry = line.partition(" ")
        b.add((cpv, entry))
    return {"agree": a == b, "vartree_pairs": len(a), "portage_pairs": len(b),
            "only_vartree": sorted(a - b)[:5], "only_portage": sorted(b - a)[:5]}


def compare_list(vt_json, portage_lines):
    a = {(r["cpv"], r["slot"] + (f"/{r['subslot']}" if r.get("subslot") else ""),
          r.get("repository") or "") for r in vt_json}
    b = set()
    for line in portage_lines:
        cpv_slot, _, repo = line.partition("::")
        cpv, _, slot = cpv_slot.rpartition(":")
        b.add((cpv, slot, repo))
    return {"agree": a == b, "vartree": len(a), "portage": len(b),
            "only_vartree": sorted(a - b)[:5], "only_portage": sorted(b - a)[:5]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--vartree", required=True, help="the release vartree binary")
    ap.add_argument("--python", required=True, help="python with Portage")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of the Portage commands")
    ap.add_argument("--fast-runs", type=int, default=10,
                    help="timed runs of vartree and floor commands")
    ap.add_argument("--api-repeat", type=int, default=3, help="in-process Portage repetitions")
    ap.add_argument("--only", default="list,owners-1,owners-1000,check")
    ap.add_argument("--no-hyperfine", action="store_true", help="use the built-in timer")
    args = ap.parse_args()

    # vartree reads ROOT/EPREFIX from the environment too; only the flags count.
    for var in ("ROOT", "EPREFIX"):
        os.environ.pop(var, None)
    wd = os.path.abspath(args.workdir)
    root = os.path.join(wd, "root")
    outdir = os.path.join(wd, "results")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(wd, "gen.json")) as f:
        gen = json.load(f)
    q = {n: os.path.join(wd, "queries", f"owners-{n}.txt") for n in ("1", "1000")}
    VT = shlex.quote(os.path.abspath(args.vartree))
    PY = shlex.quote(args.python)
    PQ = shlex.quote(os.path.join(HERE, "portage_queries.py"))
    R = shlex.quote(root)
    V = f"{R}/var/db/pkg"
    only = set(args.only.split(","))

    # name, group, role, command, fast?
    cases = []
    if "list" in only:
        cases += [
            # --json: the rows carry SLOT, repository and COUNTER, like
            # Portage's aux_get below (plain `list` prints CPVs from readdir alone)
            ("vartree-list", "list", "vartree", f"{VT} --root {R} list --json", True),
            ("portage-list", "list", "portage", f"{PY} {PQ} list --root {R} --quiet", False),
            # the one file per package that holds SLOT/repository/COUNTER (3.0.82+)
            ("floor-list", "list", "floor", f"cat {V}/*/*/metadata > /dev/null", True),
        ]
    for n in ("1", "1000"):
        if f"owners-{n}" in only:
            cases += [
                (f"vartree-owners-{n}", f"owners-{n}", "vartree",
                 f"{VT} --root {R} owners - < {shlex.quote(q[n])}", True),
                (f"portage-owners-{n}", f"owners-{n}", "portage",
                 f"{PY} {PQ} owners --root {R} --paths-file {shlex.quote(q[n])} --quiet", False),
                (f"floor-owners-{n}", f"owners-{n}", "floor",
                 f"cat {V}/*/*/CONTENTS > /dev/null", True),
            ]
    if "check" in only:
        files = f"find {R}/usr -type f -print0"
        cases += [
            ("vartree-check", "check", "vartree", f"{VT} --root {R} check", True),
            ("portage-check", "check", "portage", f"{PY} {PQ} check --root {R} --quiet", False),
            ("floor-check-cat", "check", "floor-cat", f"{files} | xargs -0 cat > /dev/null", True),
            ("floor-check-md5sum", "check", "floor",
             f"{files} | xargs -0 md5sum > /dev/null", True),
            ("floor-check-md5sum-P2", "check", "floor-P2",
             f"{files} | xargs -0 -P2 -n 4000 md5sum > /dev/null", True),
        ]

    info = machine_info(wd)
    info["vdb"] = gen
    timer = Timer(args, outdir)
    log(f"machine: {info}")
    log("warming the page cache (all package files and the VDB)")
    sh(f"find {R} -type f -print0 | xargs -0 cat > /dev/null")

    results = {}
    # ---- probes and cross-checks
    for name, group, role, cmd, fast in cases:
        p = timer.probe(cmd)
        results[name] = {"group": group, "role": role, "command": cmd, "probe": p}
        ok = p["status"] == 0
        log(f"probe {name}: exit {p['status']}, {p['wall_s']}s, peak RSS {p['peak_rss_kib']} KiB"
            + ("" if ok else f"  {p['stderr_tail']}"))
        results[name]["usable"] = ok

    cross = {}
    if results.get("vartree-owners-1000", {}).get("usable"):
        a = sh(f"{VT} --root {R} owners --json - < {shlex.quote(q['1000'])}",
               stdout=subprocess.PIPE, text=True)
        b = sh(f"{PY} {PQ} owners --root {R} --paths-file {shlex.quote(q['1000'])}",
               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            cross["owners-1000"] = compare_owners(json.loads(a.stdout), b.stdout.splitlines())
        except (ValueError, KeyError, TypeError) as e:
            cross["owners-1000"] = {"agree": False, "error": str(e)}
    if results.get("vartree-list", {}).get("usable"):
        a = sh(f"{VT} --root {R} list --json", stdout=subprocess.PIPE, text=True)
        b = sh(f"{PY} {PQ} list --root {R}", stdout=subprocess.PIPE,
               stderr=subprocess.DEVNULL, text=True)
        try:
            cross["list"] = compare_list(json.loads(a.stdout), b.stdout.splitlines())
        except (ValueError, KeyError, TypeError) as e:
            cross["list"] = {"agree": False, "error": str(e)}
    for k, v in cross.items():
        log(f"cross-check {k}: {v}")

    # ---- timings
    for name, group, role, cmd, fast in cases:
        r = results[name]
        if not r["usable"]:
            continue
        runs = args.fast_runs if fast else args.runs
        warm = 2 if fast else 1
        log(f"timing {name} ({runs} runs): {cmd}")
        r["timing"] = timer.time(name, cmd, runs, warm)
        log(f"  median {fmt_s(r['timing'] and r['timing']['median_s'])}")

    # ---- Portage in-process API times
    api = {}
    for group, op, extra in (
        ("list", "list", ""),
        ("owners-1", "owners", f"--paths-file {shlex.quote(q['1'])}"),
        ("owners-1000", "owners", f"--paths-file {shlex.quote(q['1000'])}"),
        ("check", "check", ""),
    ):
        if group not in only:
            continue
        out = os.path.join(outdir, f"portage-api-{group}.json")
        reps = max(1, args.api_repeat if group != "check" else min(args.api_repeat, 2))
        log(f"Portage in-process {group} x{reps}")
        r = sh(f"{PY} {PQ} {op} --root {R} {extra} --repeat {reps} --timing-json {shlex.quote(out)}",
               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            with open(out) as f:
                api[group] = json.load(f)
        else:
            log(f"  failed: {r.stderr[-500:]}")
    info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]

    # ---- tables
    def med(name):
        t = results.get(name, {}).get("timing")
        return t["median_s"] if t else None

    lines = []
    lines.append(f"Date: {info['date']}; machine: {info.get('cpu', '?')}, {info['cpus']} CPUs, "
                 f"{info.get('memory_gib', '?')} GiB RAM, kernel {info['kernel']}, "
                 f"{info['filesystem']}; load average {' '.join(info['loadavg_start'])} → "
                 f"{' '.join(info['loadavg_end'])}; warm page cache.")
    g = gen
    lines.append(f"VDB: {g['packages']} packages, {g['entries']} CONTENTS entries "
                 f"({g['by_type']}), {g['files_bytes'] / 2**20:.0f} MiB in files; "
                 f"entries per package min/median/max "
                 f"{g['entries_per_package']['min']}/{g['entries_per_package']['median']}/"
                 f"{g['entries_per_package']['max']}.")
    lines.append("")
    lines.append("| operation | vartree | Portage (whole process) | Portage (API in-process) "
                 "| floor | Portage process / vartree | Portage API / vartree | vartree / floor |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    floors = {"list": "floor-list", "owners-1": "floor-owners-1",
              "owners-1000": "floor-owners-1000", "check": "floor-check-md5sum"}
    for group in ("list", "owners-1", "owners-1000", "check"):
        if group not in only:
            continue
        vt = med(f"vartree-{group}")
        pp = med(f"portage-{group}")
        pa = api.get(group, {}).get("median_s")
        fl = med(floors[group])
        lines.append(f"| {group} | {fmt_s(vt)} | {fmt_s(pp)} | {fmt_s(pa)} | {fmt_s(fl)} | "
                     f"{fmt_ratio(pp, vt)} | {fmt_ratio(pa, vt)} | {fmt_ratio(vt, fl)} |")
    lines.append("")
    lines.append("All measurements (whole process; median, min–max, runs; peak RSS of one run):")
    lines.append("")
    lines.append("| name | command | median | min–max | runs | peak RSS |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, group, role, cmd, fast in cases:
        r = results[name]
        t = r.get("timing")
        shown = cmd.replace(root, "ROOT").replace(os.path.abspath(args.vartree), "vartree")
        shown = shown.replace(args.python, "$PY").replace(os.path.join(HERE, ""), "bench/")
        shown = shown.replace(wd, "WORKDIR")
        rss = r["probe"]["peak_rss_kib"]
        rss = f"{rss / 1024:.0f} MiB" if rss else "n/a"
        if t:
            lines.append(f"| {name} | `{shown}` | {fmt_s(t['median_s'])} | "
                         f"{fmt_s(t['min_s'])}–{fmt_s(t['max_s'])} | {t['runs']} | {rss} |")
        else:
            lines.append(f"| {name} | `{shown}` | failed (exit {r['probe']['status']}: "
                         f"{' '.join(r['probe']['stderr_tail'])[:120]}) | | | |")
    if api:
        lines.append("")
        lines.append("Portage in-process (fresh vardbapi per repetition; start-up = interpreter "
                     "+ `import portage` + configuration, measured inside the script):")
        lines.append("")
        lines.append("| operation | API median | repetitions | start-up | result |")
        lines.append("| --- | ---: | ---: | ---: | --- |")
        for group, a in api.items():
            lines.append(f"| {group} | {fmt_s(a['median_s'])} | {a['repeat']} | "
                         f"{fmt_s(a['startup_s'])} | `{json.dumps(a['result'])}` |")
    if "check" in only:
        vt = med("vartree-check")
        lines.append("")
        lines.append(f"check vs other floors: vartree / `cat` of all files = "
                     f"{fmt_ratio(vt, med('floor-check-cat'))}; vartree / `md5sum` with 2 "
                     f"processes = {fmt_ratio(vt, med('floor-check-md5sum-P2'))}.")
    if cross:
        lines.append("")
        for k, v in cross.items():
            lines.append(f"Cross-check {k}: vartree and Portage answers "
                         f"{'agree' if v.get('agree') else 'DIFFER'} ({json.dumps(v)[:300]}).")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(table)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"machine": info, "results": results, "portage_api": api, "cross_check": cross},
                  f, indent=1)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

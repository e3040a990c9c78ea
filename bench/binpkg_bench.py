#!/usr/bin/env python3
"""Binary-package benchmark: vartree vs Portage vs the filesystem floor, in one run.

For each size N a package of N small files is made once (untimed, reused
while the parameters match): portage-ref's `gen_image.py many` image (N
files of ~10 bytes, 100 per directory) is merged into a source ROOT with
`vartree merge`, then packed with `vartree quickpkg` (gpkg, zstd). That one
file is what every install below installs, and its `image.tar.zst` member,
taken out of the same file, is what the floor extracts.

Timed, every repetition, tools interleaved (the order rotates from one
repetition to the next), each on a fresh empty directory on the same
filesystem as everything else:

  install
    floor     zstd -d < image.tar.zst | tar -x -C DIR (decompress + extract,
              nothing else: no verification, no database, no staging)
    vartree   vartree --root R install --sync S PKG
    portage   portage-ref install_binpkg.py --method api (Portage's own
              _emerge.Binpkg steps in-process: inject, unpack_metadata,
              unpack_contents, portage.merge; ebuild phases skipped, the
              script's default); the whole command, and separately the
              unpack + merge calls as the script times them
  quickpkg (of the package installed in the source ROOT)
    vartree   vartree --root SRC quickpkg --pkgdir OUT --include-config y =CPV
    portage   portage-ref quickpkg.py --include-config y (Portage's own
              bin/quickpkg, gpkg, zstd); the whole command, and separately
              the bin/quickpkg process alone as the script times it
    floor     tar -c usr | zstd > OUT (packing the files, nothing else);
              context only, not a target

Syncing: `--sync never` (default) runs vartree with `--sync never` and
Portage with FEATURES=-merge-sync, because the floor does not sync either;
`--sync auto` uses both tools' defaults (syncfs). `sync` (untimed) runs
before every timed command, so that nobody pays for the previous one's
dirty data.

Each timed command is one process tree as a user runs it; wall time is
measured around fork+wait4, which also gives the tree's user+sys CPU time
and peak RSS. Medians of --reps runs; ratios are computed from medians of
the same run, because the machine is shared and noisy.

Run it through scripts/bench-binpkg.sh, which builds vartree first.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REF = os.path.join(os.path.dirname(REPO), "shared", "tools", "portage-ref")
CPV = "app-misc/many-1.0"
BUILD_INFO = {"CATEGORY": "app-misc", "PF": "many-1.0", "SLOT": "0", "EAPI": "8", "repository": "gentoo"}
FORMAT_VERSION = 1  # bump when the generated package changes


def default_workdir():
    """tmpfs when there is one (CPU-bound comparison, see the docs), else TMPDIR or /var/tmp."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and fs_type(shm) == "tmpfs":
        return os.path.join(shm, "vartree-bench-binpkg")
    return os.path.join(os.environ.get("TMPDIR", "/var/tmp"), "vartree-bench-binpkg")


def fs_type(path):
    """The filesystem type (findmnt; stat -f says "ext2/ext3" for ext4)."""
    for cmd in (["findmnt", "-no", "FSTYPE", "-T", path], ["stat", "-f", "-c", "%T", path]):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
        except OSError:
            continue
        if p.returncode == 0 and p.stdout.strip():
            return p.stdout.split()[0]
    return "?"


def vt_env():
    return {k: v for k, v in os.environ.items() if k not in ("ROOT", "EPREFIX")}


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def run(cmd, log, **kw):
    """Run untimed; abort with its output on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}\n")
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return p.stdout


TIME = shutil.which("time", path="/usr/bin:/bin")


def timed(cmd, log, env=None):
    """Wall time, user+sys CPU time and peak RSS of one command (whole process tree).

    Wall and CPU come from fork + wait4 here; the peak RSS from GNU time
    (/usr/bin/time, when installed) wrapped around the command, because a
    child forked from this Python process inherits its RSS high-water mark.
    """
    rss_file = log + ".rss"
    full = [TIME, "-f", "%M", "-o", rss_file] + cmd if TIME else cmd
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        t = time.perf_counter()
        p = subprocess.Popen(full, stdout=f, stderr=f, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        with open(log) as f:
            sys.stderr.write(f.read()[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    r = {"wall": dt, "cpu": ru.ru_utime + ru.ru_stime}
    if TIME:
        with open(rss_file) as f:
            r["rss_kib"] = int(f.read().split()[-1])
    return r


def prepare(args, n, log):
    """Source ROOT with the package installed, its gpkg, and the image member of that gpkg."""
    base = os.path.join(args.workdir, f"n{n}")
    stamp = os.path.join(base, "prepared.json")
    want = {"files": n, "version": FORMAT_VERSION}
    if not args.regen and os.path.exists(stamp):
        with open(stamp) as f:
            have = json.load(f)
        if {k: have.get(k) for k in want} == want:
            return have
    sys.stderr.write(f"  size {n}: generating the package (untimed)\n")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    img, bi, src = (os.path.join(base, x) for x in ("image", "build-info", "src"))
    run([sys.executable, os.path.join(REF, "gen_image.py"), "many", img, "--files", str(n)], log)
    os.makedirs(bi)
    for k, v in BUILD_INFO.items():
        with open(os.path.join(bi, k), "w") as f:
            f.write(v + "\n")
    os.makedirs(src)
    run([args.vartree, "--root", src, "merge", "--image", img, "--build-info", bi,
         "--sync", "never", "--move-image"], log, env=vt_env())
    shutil.rmtree(img, ignore_errors=True)
    out = run([args.vartree, "--root", src, "--json", "quickpkg", "--pkgdir", os.path.join(base, "pkgdir"),
               "--include-config", "y", "=" + CPV], log, env=vt_env())
    rep = json.loads(out)
    rep = rep[0] if isinstance(rep, list) else rep
    pkg = os.path.abspath(rep["path"])
    # The floor's input: the image member of that very file.
    tarzst = os.path.join(base, "image.tar.zst")
    with tarfile.open(pkg) as t:
        member = next(m for m in t.getmembers() if m.name.endswith("/image.tar.zst"))
        with t.extractfile(member) as src_f, open(tarzst, "wb") as out_f:
            shutil.copyfileobj(src_f, out_f)
    have = dict(want, pkg=pkg, pkg_size=os.path.getsize(pkg), image_tar_zst=tarzst,
                image_tar_zst_size=os.path.getsize(tarzst), entries=rep.get("entries"), src=src)
    with open(stamp, "w") as f:
        json.dump(have, f, indent=1)
    return have


def tree(path):
    """Relative paths (and types) under path."""
    out = set()
    for d, dirs, files in os.walk(path):
        for x in dirs + files:
            p = os.path.join(d, x)
            kind = "l" if os.path.islink(p) else "d" if os.path.isdir(p) else "f"
            out.add((os.path.relpath(p, path), kind))
    return out


def contents(root):
    with open(os.path.join(root, "var", "db", "pkg", CPV, "CONTENTS")) as f:
        return sorted(f.read().splitlines())


def verify(base):
    """After the first repetition: the three installs hold the same files, and
    vartree's CONTENTS equals Portage's (sorted)."""
    floor = tree(os.path.join(base, "install-floor", "image", "usr"))
    vt = tree(os.path.join(base, "install-vartree", "usr"))
    pt = tree(os.path.join(base, "install-portage", "usr"))
    ok = floor == vt == pt and contents(os.path.join(base, "install-vartree")) == \
        contents(os.path.join(base, "install-portage"))
    return {"same_tree_and_contents": ok, "entries_under_usr": len(vt)}


def med(xs):
    return statistics.median(xs)


def fmt(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.3f} s" if s < 10 else f"{s:.2f} s"


def ratio(a, b):
    return f"{a / b:.1f}×" if a / b >= 10 else f"{a / b:.2f}×"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sync", choices=["never", "auto"], default="never")
    ap.add_argument("--ops", default="install,quickpkg")
    ap.add_argument("--workdir", default=None, help="default: /dev/shm/vartree-bench-binpkg if tmpfs, "
                    "else ${TMPDIR:-/var/tmp}/vartree-bench-binpkg")
    ap.add_argument("--regen", action="store_true", help="regenerate the packages")
    ap.add_argument("--vartree", required=True)
    ap.add_argument("--python", default=sys.executable, help="python with Portage")
    ap.add_argument("--json", default=None, help="default: WORKDIR/results/binpkg-<time>.json")
    args = ap.parse_args()
    args.workdir = os.path.abspath(args.workdir or default_workdir())
    # A private copy of the binary: a rebuild during the run must not change it.
    os.makedirs(os.path.join(args.workdir, "bin"), exist_ok=True)
    shutil.copy2(args.vartree, os.path.join(args.workdir, "bin", "vartree"))
    args.vartree = os.path.join(args.workdir, "bin", "vartree")
    ops = [o for o in ("install", "quickpkg") if o in args.ops.split(",")]
    os.makedirs(os.path.join(args.workdir, "results"), exist_ok=True)
    log = os.path.join(args.workdir, "results", "commands.log")
    open(log, "w").close()
    sizes = [int(x) for x in args.sizes.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc)
    info = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M"),
        "workdir": args.workdir,
        "fs": fs_type(args.workdir),
        "sync": args.sync,
        "reps": args.reps,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "portage": subprocess.run([args.python, "-c", "import portage; print(portage.VERSION)"],
                                  capture_output=True, text=True).stdout.strip(),
        "vartree": subprocess.run([args.vartree, "--version"], capture_output=True, text=True).stdout.strip(),
        "commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
        + (" (uncommitted changes)" if subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                                                      capture_output=True, text=True).stdout.strip() else ""),
    }
    sys.stderr.write(f"binpkg bench: workdir {args.workdir} ({info['fs']}), sync={args.sync}, "
                     f"sizes {sizes}, {args.reps} reps\n")
    results = {"info": info, "sizes": {}}
    for n in sizes:
        prep = prepare(args, n, log)
        base = os.path.dirname(prep["image_tar_zst"])
        pkg, src = prep["pkg"], prep["src"]
        runs = {}
        extra = {}

        def add(name, r):
            runs.setdefault(name, []).append(r)

        for rep in range(args.reps):
            if "install" in ops:
                order = ["floor", "vartree", "portage"]
                for tool in order[rep % 3:] + order[:rep % 3]:
                    dest = os.path.join(base, f"install-{tool}")
                    fresh(dest)
                    subprocess.run(["sync"], check=True)
                    if tool == "floor":
                        add("install-floor", timed(
                            ["bash", "-c", 'set -o pipefail; zstd -dq < "$1" | tar -x -C "$2"', "floor",
                             prep["image_tar_zst"], dest], log))
                    elif tool == "vartree":
                        add("install-vartree", timed(
                            [args.vartree, "--root", dest, "install", "--sync", args.sync, pkg], log, env=vt_env()))
                    else:
                        j = os.path.join(base, "portage-install.json")
                        cmd = [args.python, os.path.join(REF, "install_binpkg.py"), "--root", dest,
                               "--binpkg", pkg, "--method", "api", "--json", j]
                        if args.sync == "never":
                            cmd.append("--features=-merge-sync")
                        add("install-portage", timed(cmd, log))
                        with open(j) as f:
                            ts = json.load(f)["timings_s"]
                        add("install-portage-call", {"wall": ts["install"]})
                        add("install-portage-unpack", {"wall": ts["unpack"]})
                        add("install-portage-merge", {"wall": ts["merge"]})
                if rep == 0:
                    extra["verify"] = verify(base)
                    if not extra["verify"]["same_tree_and_contents"]:
                        sys.stderr.write(f"  size {n}: WARNING: the installs differ: {extra['verify']}\n")
            if "quickpkg" in ops:
                order = ["vartree", "portage", "floor"]
                for tool in order[rep % 3:] + order[:rep % 3]:
                    out = os.path.join(base, f"quickpkg-{tool}")
                    fresh(out)
                    subprocess.run(["sync"], check=True)
                    if tool == "vartree":
                        add("quickpkg-vartree", timed(
                            [args.vartree, "--root", src, "quickpkg", "--pkgdir", out, "--include-config", "y",
                             "=" + CPV], log, env=vt_env()))
                    elif tool == "portage":
                        j = os.path.join(base, "portage-quickpkg.json")
                        add("quickpkg-portage", timed(
                            [args.python, os.path.join(REF, "quickpkg.py"), "--root", src, "--cpv", CPV,
                             "--pkgdir", out, "--include-config", "y", "--json", j], log))
                        with open(j) as f:
                            add("quickpkg-portage-call", {"wall": json.load(f)["quickpkg_wall_s"]})
                    else:
                        add("quickpkg-floor", timed(
                            ["bash", "-c", 'set -o pipefail; tar -C "$1" -cf - usr | zstd -q > "$2"', "floor",
                             src, os.path.join(out, "usr.tar.zst")], log))
                if rep == 0:
                    for tool in order:
                        d = os.path.join(base, f"quickpkg-{tool}")
                        files = [os.path.join(p, f) for p, _, fs in os.walk(d) for f in fs
                                 if f.endswith((".gpkg.tar", ".tar.zst"))]
                        extra[f"quickpkg-{tool}-size"] = sum(os.path.getsize(f) for f in files)
            sys.stderr.write(f"  size {n}: rep {rep + 1}/{args.reps} done (load {os.getloadavg()[0]:.1f})\n")
        medians = {k: {m: med([r[m] for r in v]) for m in v[0]} for k, v in runs.items()}
        results["sizes"][n] = {"prepared": prep, "runs": runs, "median": medians, **extra}
    info["loadavg_end"] = os.getloadavg()
    report(results, ops)
    path = args.json or os.path.join(args.workdir, "results", f"binpkg-{started.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    sys.stderr.write(f"raw data: {path}; commands and their output: {log}\n")


def report(results, ops):
    info = results["info"]
    print(f"\n## Binary packages: {info['started_utc']} UTC, {info['fs']} ({info['workdir']}), "
          f"sync={info['sync']}, medians of {info['reps']}, load average "
          f"{info['loadavg_start'][0]:.1f} at start, {info['loadavg_end'][0]:.1f} at end; "
          f"Portage {info['portage']}, {info['vartree']} release build at {info['commit']}\n")
    print("| files | operation | Portage (whole command) | Portage (call) | vartree | floor "
          "| Portage / vartree | Portage call / vartree | vartree / floor |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r in results["sizes"].items():
        m = {k: v["wall"] for k, v in r["median"].items()}
        for op in ops:
            p, pc, v, fl = m[f"{op}-portage"], m[f"{op}-portage-call"], m[f"{op}-vartree"], m[f"{op}-floor"]
            print(f"| {n:,} | {op} | {fmt(p)} | {fmt(pc)} | {fmt(v)} | {fmt(fl)} | **{ratio(p, v)}** "
                  f"| {ratio(pc, v)} | **{ratio(v, fl)}** |")
    print("\nAll timed commands (wall: median, min–max; CPU = user+sys of the process tree, median; "
          "peak RSS, max):\n")
    print("| files | name | wall median | wall min–max | CPU median | peak RSS |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for n, r in results["sizes"].items():
        for name, v in r["runs"].items():
            w = [x["wall"] for x in v]
            cpu = f"{fmt(med([x['cpu'] for x in v]))}" if "cpu" in v[0] else "–"
            rss = f"{max(x['rss_kib'] for x in v) / 1024:.0f} MiB" if "rss_kib" in v[0] else "–"
            print(f"| {n:,} | {name} | {fmt(med(w))} | {fmt(min(w))}–{fmt(max(w))} | {cpu} | {rss} |")
    print()
    for n, r in results["sizes"].items():
        p = r["prepared"]
        sizes = ", ".join(f"{k[9:-5]} {r[k] / 1024:.0f} KiB" for k in r if k.startswith("quickpkg-") and k.endswith("-size"))
        print(f"* {n:,} files: package {p['pkg_size'] / 1024:.0f} KiB ({p['entries']} entries; image.tar.zst "
              f"{p['image_tar_zst_size'] / 1024:.0f} KiB)"
              + (f"; installs identical (tree + sorted CONTENTS): {r['verify']['same_tree_and_contents']}"
                 if "verify" in r else "")
              + (f"; quickpkg output: {sizes}" if sizes else ""))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Merge benchmark: vartree vs Portage vs the filesystem floor, in one run.

For each size an image of N small files (portage-ref's `gen_image.py many`,
100 files per directory) is generated once. Every repetition copies it (not
timed) to a fresh staging directory on the same filesystem as an empty ROOT,
then times one merge of it:

  portage   portage-ref merge_image.py --move-image (Portage consumes ${D} by
            rename, as on a Gentoo box); the whole command, and separately the
            merge call alone as Portage's script measures it
  vartree   vartree merge --move-image (rename out of the image too)
  vartree-copy  vartree merge without --move-image (the image is kept:
            copy_file_range/reflink into temp names)
  floor     floor_rename: mkdir + rename of every entry, nothing else

The staging copy is flushed (`sync`, untimed) before each timed run, so
that a tool's own syncfs does not pay for writing the copy back.

Syncing: `--sync` picks `auto` (Portage's default merge-sync and vartree's
default: syncfs) or `never` (Portage FEATURES=-merge-sync, vartree --sync
never). Medians of --reps runs; ratios are computed from the medians of the
same run, because the machine is shared and noisy.

Run it through scripts/bench-merge.sh, which builds the binaries first.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REF = os.path.join(os.path.dirname(REPO), "shared", "tools", "portage-ref")


def run(cmd, **kw):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return dt


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sync", choices=["auto", "never"], default="auto")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/var/tmp"), "vartree-bench-merge"))
    ap.add_argument("--vartree", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--python", default=sys.executable, help="python with Portage")
    ap.add_argument("--json", default=None)
    ap.add_argument("--scenarios", default="fresh,unmerge,upgrade,reinstall",
                    help="fresh merges, unmerge, 1%%-changed upgrade, identical reinstall")
    ap.add_argument("--lifecycle-tools", default="vartree,vartree-copy,vartree-copy-trust,portage",
                    help="who runs the unmerge/upgrade/reinstall scenarios (vartree = --move-image, "
                         "vartree-copy = default copy mode, vartree-copy-trust = copy mode + --trust-vdb)")
    args = ap.parse_args()
    scenarios = set(args.scenarios.split(","))

    os.makedirs(args.workdir, exist_ok=True)
    results = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        img = os.path.join(args.workdir, f"image-{n}")
        if not os.path.isdir(img):
            subprocess.run(
                [sys.executable, os.path.join(REF, "gen_image.py"), "many", img, "--files", str(n)],
                check=True,
                capture_output=True,
            )
        bi = os.path.join(args.workdir, "build-info")
        os.makedirs(bi, exist_ok=True)
        for k, v in {"CATEGORY": "app-misc", "PF": "many-1.0", "SLOT": "0", "EAPI": "8", "repository": "gentoo"}.items():
            with open(os.path.join(bi, k), "w") as f:
                f.write(v + "\n")
        stage = os.path.join(args.workdir, "stage")
        root = os.path.join(args.workdir, "root")
        times = {k: [] for k in ("portage", "portage-merge-call", "vartree", "vartree-copy", "floor")}
        for rep in range(args.reps if "fresh" in scenarios else 0):
            for tool in ("floor", "vartree", "vartree-copy", "portage"):
                shutil.rmtree(stage, ignore_errors=True)
                subprocess.run(["cp", "-a", img, stage], check=True)
                fresh(root)
                # Flush the copy now, so that neither tool's syncfs pays for it.
                subprocess.run(["sync"], check=True)
                if tool == "floor":
                    times["floor"].append(run([args.floor, stage, root]))
                elif tool.startswith("vartree"):
                    cmd = [args.vartree, "--root", root, "merge", "--image", stage, "--build-info", bi, "--sync", args.sync]
                    if tool == "vartree":
                        cmd.append("--move-image")
                    times[tool].append(run(cmd, env={k: v for k, v in os.environ.items() if k not in ("ROOT", "EPREFIX")}))
                else:
                    j = os.path.join(args.workdir, "portage.json")
                    cmd = [args.python, os.path.join(REF, "merge_image.py"), "--root", root, "--image", stage,
                           "--cpv", "app-misc/many-1.0", "--move-image", "--no-env-update", "--json", j]
                    if args.sync == "never":
                        cmd += ["--features=-merge-sync"]
                    times["portage"].append(run(cmd))
                    with open(j) as f:
                        times["portage-merge-call"].append(json.load(f)["timings_s"]["merge"])
            sys.stderr.write(f"  size {n}: rep {rep + 1}/{args.reps} done\n")
        if "fresh" in scenarios:
            med = {k: statistics.median(v) for k, v in times.items()}
            results[n] = {"median_s": med, "runs": times}
            print(f"\n### {n} files, sync={args.sync} (median of {args.reps})")
            print("| tool | median s | vs vartree |")
            print("| --- | ---: | ---: |")
            for k in ("portage", "portage-merge-call", "vartree", "vartree-copy", "floor"):
                print(f"| {k} | {med[k]:.3f} | {med[k] / med['vartree']:.2f}x |")
            print(f"\nPortage / vartree: **{med['portage'] / med['vartree']:.1f}x** (merge call alone: "
                  f"{med['portage-merge-call'] / med['vartree']:.1f}x); vartree / floor: **{med['vartree'] / med['floor']:.2f}x**")
        if scenarios & {"unmerge", "upgrade", "reinstall"}:
            if "portage" not in args.lifecycle_tools.split(","):
                raise SystemExit("--lifecycle-tools must include portage (ratios are against it)")
            results[f"{n}-lifecycle"] = lifecycle(args, n, img, bi, scenarios)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def vt_env():
    return {k: v for k, v in os.environ.items() if k not in ("ROOT", "EPREFIX")}


def changed_image(img, out, percent=1):
    """A copy of img where `percent` % of the files have new content."""
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["cp", "-a", img, out], check=True)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs)
    step = max(1, 100 // percent)
    for p in files[::step]:
        st = os.stat(p)
        with open(p, "a") as f:
            f.write("changed\n")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    return len(files[::step])


LIFECYCLE_TOOLS = {
    # name: (merge options, options for reinstall/upgrade)
    "vartree": (["--move-image"], []),
    "vartree-copy": ([], []),
    "vartree-copy-trust": ([], ["--trust-vdb"]),
}


def lifecycle(args, n, img, bi, scenarios):
    """Unmerge, 1%-changed upgrade and identical reinstall, both tools.

    vartree runs three ways: `--move-image` (the image consumed by rename,
    as Portage does), copy mode (`vartree merge` without options: the image
    is kept, every placed file is written), and copy mode with `--trust-vdb`
    for the reinstall and the upgrade. The unmerge floor is `rm -rf` of the
    package's top directory on a root holding it (merged by vartree)."""
    w = args.workdir
    stage, root = os.path.join(w, "stage"), os.path.join(w, "root")
    img2 = os.path.join(w, f"image-{n}-1pct")
    nchanged = changed_image(img, img2)
    bi2 = os.path.join(w, "build-info-1.1")
    os.makedirs(bi2, exist_ok=True)
    for k, v in {"CATEGORY": "app-misc", "PF": "many-1.1", "SLOT": "0", "EAPI": "8", "repository": "gentoo"}.items():
        with open(os.path.join(bi2, k), "w") as f:
            f.write(v + "\n")
    tools = [t for t in args.lifecycle_tools.split(",") if t]

    def merge(tool, image, info, cpv, timed, again=False):
        shutil.rmtree(stage, ignore_errors=True)
        subprocess.run(["cp", "-a", image, stage], check=True)
        subprocess.run(["sync"], check=True)
        if tool.startswith("vartree"):
            first, later = LIFECYCLE_TOOLS[tool]
            cmd = [args.vartree, "--root", root, "merge", "--image", stage, "--build-info", info,
                   "--sync", args.sync] + first + (later if again else [])
            env = vt_env()
        else:
            cmd = [args.python, os.path.join(REF, "merge_image.py"), "--root", root, "--image", stage,
                   "--cpv", cpv, "--move-image", "--no-env-update", "--build-info", info]
            if args.sync == "never":
                cmd += ["--features=-merge-sync"]
            env = None
        dt = run(cmd, env=env)
        return dt if timed else None

    def unmerge(tool, cpv):
        if tool.startswith("vartree"):
            return run([args.vartree, "--root", root, "unmerge", cpv], env=vt_env())
        cmd = [args.python, os.path.join(REF, "unmerge.py"), "--root", root, "--cpv", cpv, "--no-env-update"]
        if args.sync == "never":
            cmd += ["--features=-merge-sync"]
        return run(cmd)

    t = {}
    for rep in range(args.reps):
        for tool in tools:
            fresh(root)
            t.setdefault(f"{tool}-fresh", []).append(merge(tool, img, bi, "app-misc/many-1.0", True))
            if "reinstall" in scenarios:
                t.setdefault(f"{tool}-reinstall", []).append(
                    merge(tool, img, bi, "app-misc/many-1.0", True, again=True))
            if "upgrade" in scenarios:
                t.setdefault(f"{tool}-upgrade-1pct", []).append(
                    merge(tool, img2, bi2, "app-misc/many-1.1", True, again=True))
                cpv = "app-misc/many-1.1"
            else:
                cpv = "app-misc/many-1.0"
            if "unmerge" in scenarios:
                subprocess.run(["sync"], check=True)
                t.setdefault(f"{tool}-unmerge", []).append(unmerge(tool, cpv))
        if "unmerge" in scenarios:
            # The floor: remove the same files with rm -rf, nothing else.
            fresh(root)
            merge("vartree", img, bi, "app-misc/many-1.0", False)
            subprocess.run(["sync"], check=True)
            top = os.path.join(root, "usr")
            t.setdefault("floor-unmerge", []).append(run(["rm", "-rf", top]))
        sys.stderr.write(f"  size {n} lifecycle: rep {rep + 1}/{args.reps} done\n")
    med = {k: statistics.median(v) for k, v in t.items()}
    print(f"\n### {n} files: unmerge, upgrade with {nchanged} files (1%) changed, identical reinstall; "
          f"sync={args.sync}, workdir {args.workdir} (median of {args.reps})")
    vts = [x for x in tools if x != "portage"]
    print("| operation | Portage s | " + " | ".join(f"{x} s" for x in vts) + " | "
          + " | ".join(f"Portage / {x}" for x in vts) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in vts) + " | " + " | ".join("---:" for _ in vts) + " |")
    for op in ("fresh", "upgrade-1pct", "reinstall", "unmerge"):
        if f"portage-{op}" not in med:
            continue
        p = med[f"portage-{op}"]
        row = [f"{med[x + '-' + op]:.3f}" for x in vts]
        ratio = [f"{p / med[x + '-' + op]:.1f}x" for x in vts]
        print(f"| {op} | {p:.3f} | " + " | ".join(row) + " | " + " | ".join(ratio) + " |")
    if "floor-unmerge" in med:
        f = med["floor-unmerge"]
        print(f"\nunmerge floor (`rm -rf` of the tree): {f:.3f} s; Portage / floor {med['portage-unmerge'] / f:.1f}x; "
              + "; ".join(f"{x} / floor {med[x + '-unmerge'] / f:.2f}x" for x in vts))
    if "upgrade" in scenarios:
        print("\nfresh merge / 1%-changed upgrade: "
              + "; ".join(f"{x} **{med[x + '-fresh'] / med[x + '-upgrade-1pct']:.1f}x**" for x in vts)
              + f"; Portage {med['portage-fresh'] / med['portage-upgrade-1pct']:.1f}x")
    return {"median_s": med, "runs": t}


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Take a lock with the real Portage lock code, for vartree's interop tests.

Usage:
  lock_helper.py hold KIND PATH [--nonblock-first] [--hold SECONDS]
  lock_helper.py stress KIND PATH --iterations N --inside FILE

KIND selects how the lock is taken, mirroring Portage's callers:
  vdb      PATH is EROOT; what vardbapi.lock() does: ensure_dirs(EROOT/var/db/pkg)
           then lockdir(EROOT/var/db/pkg)
  sidecar  lockfile(PATH, wantnewlockfile=True)   (e.g. PKGDIR/Packages)
  file     lockfile(PATH)                         (e.g. var/lib/portage/config)

Everything meant for the test goes to stdout as lines starting with "@@VT ",
flushed at once; timestamps are CLOCK_MONOTONIC nanoseconds (the clock the
test reads too). Portage's own messages (e.g. "waiting for lock on ...") go
wherever Portage writes them.

hold:   "@@VT ready t=..." after importing Portage; with --nonblock-first a
        non-blocking attempt first, reporting "@@VT busy t=..." on TryAgain;
        then the blocking call; "@@VT locked t=... path=..."; then waits for a
        line on stdin (or EOF, or --hold seconds); "@@VT unlocking t=..." just
        before unlocking; "@@VT released t=... exists=0|1" after, telling
        whether the lock file still exists.
stress: "@@VT ready", waits for a stdin line, then N times: lock, create
        FILE with O_EXCL (failure = another holder inside: prints
        "@@VT VIOLATION" and exits 3), remove it, unlock. "@@VT done N".
"""

import argparse
import os
import select
import sys
import time


def now():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def say(msg):
    sys.stdout.write("@@VT %s\n" % msg)
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["hold", "stress"])
    ap.add_argument("kind", choices=["vdb", "sidecar", "file"])
    ap.add_argument("path")
    ap.add_argument("--nonblock-first", action="store_true")
    ap.add_argument("--hold", type=float, default=60.0)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--inside")
    args = ap.parse_args()

    import portage.locks
    from portage.exception import TryAgain
    from portage.util import ensure_dirs

    def lock(flags=0):
        if args.kind == "vdb":
            dbroot = os.path.join(args.path, "var/db/pkg")
            ensure_dirs(dbroot)
            return portage.locks.lockdir(dbroot, flags=flags)
        if args.kind == "sidecar":
            return portage.locks.lockfile(args.path, wantnewlockfile=True, flags=flags)
        return portage.locks.lockfile(args.path, flags=flags)

    def unlock(lk):
        if args.kind == "vdb":
            portage.locks.unlockdir(lk)
        else:
            portage.locks.unlockfile(lk)

    # Resolve Portage's lazy one-time state before "ready", so that it does
    # not delay the timed part.
    int(portage.data.secpass)
    int(portage.data.portage_gid)
    # Portage picks lockf vs flock once per process with a forked self-test.
    portage.locks._get_lock_fn()
    say("ready t=%d" % now())

    if args.mode == "hold":
        lk = None
        if args.nonblock_first:
            try:
                lk = lock(os.O_NONBLOCK)
            except TryAgain:
                say("busy t=%d" % now())
        if lk is None:
            lk = lock()
        say("locked t=%d path=%s" % (now(), lk[0]))
        select.select([sys.stdin], [], [], args.hold)
        say("unlocking t=%d" % now())
        unlock(lk)
        say("released t=%d exists=%d" % (now(), int(os.path.exists(lk[0]))))
        return 0

    sys.stdin.readline()
    for _ in range(args.iterations):
        lk = lock()
        try:
            fd = os.open(args.inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            say("VIOLATION t=%d" % now())
            return 3
        os.close(fd)
        time.sleep(0.0005)
        os.unlink(args.inside)
        unlock(lk)
    say("done %d" % args.iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())

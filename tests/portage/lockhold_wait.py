#!/usr/bin/env python
"""Portage takes EROOT's VDB lock only when told to (vartree's concurrency tests).

Usage:
  lockhold_wait.py EROOT CAT/PF

Lines for the test go to stdout, starting with "@@VT ", flushed at once;
timestamps are CLOCK_MONOTONIC nanoseconds (the clock the test reads too).

  "@@VT ready t=..."   after importing Portage (its lazy one-time state resolved)
  then waits for a line on stdin, then tries vardbapi.lock()'s lockdir() of
  EROOT/var/db/pkg without blocking:
  "@@VT busy t=... journals=N entry=0|1 old=0|1"   the lock is held by someone else
  "@@VT free t=... journals=N entry=0|1 old=0|1"   got it at once
  if busy, the blocking call (Portage prints its "waiting for lock on ..."), then
  "@@VT locked t=... journals=N entry=0|1 old=0|1"
  then waits for a line on stdin (or EOF) and unlocks:
  "@@VT released t=..."

journals: vartree journals (EROOT/var/db/.vartree/*.journal) existing at that
moment; entry: whether EROOT/var/db/pkg/CAT/PF exists; old: whether any other
instance of CAT/PN's directory exists (the replaced one, for an upgrade).
"""

import os
import sys
import time


def now():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def say(msg):
    sys.stdout.write("@@VT %s\n" % msg)
    sys.stdout.flush()


def main():
    eroot, cpv = sys.argv[1], sys.argv[2]
    cat, pf = cpv.split("/", 1)

    import portage.locks
    from portage.exception import TryAgain
    from portage.util import ensure_dirs
    from portage.versions import cpv_getkey

    dbroot = os.path.join(eroot, "var/db/pkg")
    jdir = os.path.join(eroot, "var/db/.vartree")
    pn = cpv_getkey(cpv).split("/", 1)[1]

    def observe():
        try:
            journals = sum(1 for n in os.listdir(jdir) if n.endswith(".journal"))
        except FileNotFoundError:
            journals = 0
        entry = int(os.path.isdir(os.path.join(dbroot, cat, pf)))
        try:
            others = [
                n
                for n in os.listdir(os.path.join(dbroot, cat))
                if n != pf and not n.startswith((".", "-MERGING-")) and n.startswith(pn + "-")
            ]
        except FileNotFoundError:
            others = []
        return "journals=%d entry=%d old=%d" % (journals, entry, int(bool(others)))

    int(portage.data.secpass)
    int(portage.data.portage_gid)
    portage.locks._get_lock_fn()
    say("ready t=%d" % now())
    sys.stdin.readline()

    ensure_dirs(dbroot)
    try:
        lk = portage.locks.lockdir(dbroot, flags=os.O_NONBLOCK)
        say("free t=%d %s" % (now(), observe()))
    except TryAgain:
        say("busy t=%d %s" % (now(), observe()))
        lk = portage.locks.lockdir(dbroot)
        say("locked t=%d %s" % (now(), observe()))
    sys.stdin.readline()
    portage.locks.unlockdir(lk)
    say("released t=%d" % now())
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Unmerge an installed package with the real Portage, for the upgrade /
unmerge differential test (crates/vartree/tests/upgrade_portage.rs).

    $PY upgrade_unmerge.py [--eprefix P] --root ROOT --cpv CAT/PF
        [any other unmerge.py option, e.g. --verbose, --features -unmerge-orphans]

portage-ref's unmerge.py (imported, its main() called unchanged) with
--eprefix P: Portage runs with that target EPREFIX (prefix_env.py, as
merge_portage.py / merge_eprefix.py do for merges).  With --verbose,
Portage prints its per-entry decisions ("<<<          obj PATH",
"--- !mtime   obj PATH", …), which the test reads.

Run with the venv python that has Portage.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _paths import import_refenv  # noqa: E402
from merge_portage import take  # noqa: E402


def main(argv):
    argv = list(argv)
    eprefix = take(argv, "--eprefix")
    if eprefix and eprefix.strip("/"):
        from prefix_env import use_eprefix

        use_eprefix(eprefix)
    else:
        import_refenv()
    import unmerge  # portage-ref, on sys.path through _refenv

    return unmerge.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

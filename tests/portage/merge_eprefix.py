#!/usr/bin/env python3
"""portage-ref's merge_image.py with a target EPREFIX.

    $PY merge_eprefix.py --eprefix /opt/gentoo --root ROOT --image IMAGE --cpv CAT/PF [merge_image options]

Same options and behaviour as merge_image.py (it is imported and its main()
called); the only difference is that Portage runs with EPREFIX=--eprefix, so
the vdb entry lands in ROOT/EPREFIX/var/db/pkg/CAT/PF and only the part of
IMAGE under IMAGE/EPREFIX is merged (Portage merges ${ED} = ${D}${EPREFIX}).
See prefix_env.py for how.  Run with the venv python that has Portage.
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prefix_env import use_eprefix  # noqa: E402


def main(argv):
    if "--eprefix" not in argv and not any(a.startswith("--eprefix=") for a in argv):
        sys.exit("merge_eprefix.py: --eprefix is required")
    rest, eprefix, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--eprefix":
            eprefix = argv[i + 1]
            i += 2
            continue
        if a.startswith("--eprefix="):
            eprefix = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    use_eprefix(eprefix)
    import merge_image  # from portage-ref, on sys.path via prefix_env/_paths

    return merge_image.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

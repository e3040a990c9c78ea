"""Where things are, relative to this file (no absolute paths of any machine).

    <repo>/tests/portage/_paths.py     this file
    <repo>/../shared/tools/portage-ref the portage-ref scripts (read-only)

Override the portage-ref location with VARTREE_PORTAGE_REF=DIR.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))


def portage_ref_dir():
    d = os.environ.get("VARTREE_PORTAGE_REF") or os.path.join(
        REPO, "..", "shared", "tools", "portage-ref"
    )
    d = os.path.normpath(d)
    if not os.path.isfile(os.path.join(d, "_refenv.py")):
        raise SystemExit(
            f"portage-ref not found at {d} (expected <repo>/../shared/tools/portage-ref; "
            "set VARTREE_PORTAGE_REF)"
        )
    return d


def import_refenv():
    """Import portage-ref's _refenv (must happen before `import portage`)."""
    d = portage_ref_dir()
    if d not in sys.path:
        sys.path.insert(0, d)
    import _refenv  # noqa: E402

    return _refenv

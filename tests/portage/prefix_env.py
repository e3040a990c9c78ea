"""Drive portage-ref with a non-empty EPREFIX (a Gentoo Prefix target root).

portage-ref's _refenv.RefEnv always sets EPREFIX="" (vdb = ROOT/var/db/pkg).
Portage itself takes the target EPREFIX from the EPREFIX environment variable
(portage._legacy_globals -> create_trees(eprefix=os.environ["EPREFIX"]) ->
config(eprefix=...)), so EROOT = ROOT + EPREFIX and the vdb is
ROOT/EPREFIX/var/db/pkg.  PORTAGE_CONFIGROOT and PORTAGE_OVERRIDE_EPREFIX stay
the throw-away WORK/prefix of RefEnv (config files, make.globals, and the
"running root" Portage instantiates when ROOT != /).

use_eprefix(eprefix) patches RefEnv (in this process only, nothing on disk) so
that, after RefEnv's own environment set-up, EPREFIX=<eprefix> is exported,
and RefEnv.check() accepts EROOT = ROOT + EPREFIX.  Call it before any RefEnv
is constructed and before `import portage`.
"""

import os

from _paths import import_refenv


def use_eprefix(eprefix):
    _refenv = import_refenv()
    eprefix = os.path.normpath("/" + eprefix.strip("/")) if eprefix.strip("/") else ""
    if not eprefix:
        return _refenv
    cls = _refenv.RefEnv
    if getattr(cls, "_vartree_eprefix", None) is not None:
        cls._vartree_eprefix = eprefix
        return _refenv
    orig_set_environ = cls._set_environ

    def _set_environ(self):
        orig_set_environ(self)
        os.environ["EPREFIX"] = cls._vartree_eprefix

    def check(self):
        import portage

        if portage.const.EPREFIX != self.prefix:
            raise RuntimeError(
                "portage was imported before RefEnv; EPREFIX=%r" % portage.const.EPREFIX
            )
        eroot = portage.settings["EROOT"]
        want = os.path.join(self.root, cls._vartree_eprefix.lstrip("/"))
        if os.path.normpath(eroot) != want:
            raise RuntimeError(f"unexpected EROOT {eroot!r}, wanted {want!r}")
        if portage.settings["EPREFIX"] != cls._vartree_eprefix:
            raise RuntimeError(f"unexpected EPREFIX {portage.settings['EPREFIX']!r}")
        return eroot

    cls._vartree_eprefix = eprefix
    cls._set_environ = _set_environ
    cls.check = check
    return _refenv

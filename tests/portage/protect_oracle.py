"""Batch oracle for crates/merge/tests/protect_portage.rs and config_portage.rs.

Reads one JSON document on stdin: {"ops": [op, ...]}; writes {"results": [...]}
(one entry per op) to the file named by argv[1] (stdout is left to Portage's
own chatter). Each op is a dict with "op" and its arguments; a Python
exception becomes {"error": "<ExceptionType>: <message>"}.

Ops (all evaluated with the real Portage 3.0.83 functions):
  is_protected      eroot, protect, mask, ci, objs      -> [bool]
  new_protect       dest, newmd5, force                 -> path
  confmem           src, dst, ops=[["set",k,v]|["del",k]]
                    -> {"items": [[k, [v...]], ...]} and writes dst (writedict)
  protect_decide    installed, has_instance, protect_if_modified, src_md5,
                    src_link, dest_mode, dest_md5, dest_link, confmem, ignore
                    -> dblink._protect's outcome (see protect_decide)
  install_mask      mask, paths                         -> [bool | "error"]
  fnmatch           pattern, names                      -> [bool]
  shlex_split       s                                   -> [str]
  getconfig         path, tolerant, sourcing, expand (dict|null), recursive -> dict|null
  config            root, env                           -> {VAR: value}
                    (runs env_update on root first when root/etc/env.d exists)

Usage: python protect_oracle.py OUT.json [PREFIX_DIR]. With PREFIX_DIR, a fake
host EPREFIX is made there (holding the venv's make.globals) before Portage is
imported, so the "config" op sees Portage's real defaults and nothing of the
host system.
"""

import fnmatch
import json
import os
import shlex
import sys
import traceback

# Bytes that are not UTF-8 travel as surrogate escapes in JSON strings
# ("\udcXX"); os functions accept them as str paths.


def protect_decide(op):
    """dblink._protect on a stub dblink: the installed instance's CONTENTS
    entry comes from op["installed"] (null, ["dir"], ["obj", md5],
    ["sym", target]); new_protect_filename is intercepted to report its
    arguments instead of touching a directory."""
    import stat
    import types

    import portage.util
    from portage.dbapi.vartree import dblink

    dest_real = "/etc/x.conf"
    inst = op["installed"]
    if op["has_instance"]:
        if inst is None:
            contents = {}
        elif inst[0] == "dir":
            contents = {dest_real: ("dir",)}
        else:
            contents = {dest_real: (inst[0], "0", inst[1])}
        instance = types.SimpleNamespace(
            _match_contents=lambda p: p if p in contents else False,
            getcontents=lambda: contents,
        )
    else:
        instance = None
    fake = types.SimpleNamespace(_installed_instance=instance)
    modes = {
        None: None,
        "file": stat.S_IFREG | 0o644,
        "link": stat.S_IFLNK | 0o777,
        "dir": stat.S_IFDIR | 0o755,
    }
    cfgfiledict = {k: [v] for k, v in op["confmem"].items()}
    cfgfiledict["IGNORE"] = 1 if op["ignore"] else 0
    saved = portage.util.new_protect_filename
    portage.util.new_protect_filename = lambda dest, newmd5=None, force=False: [
        "CFG",
        newmd5,
        force,
    ]
    try:
        dest, protected, move_me = dblink._protect(
            fake,
            cfgfiledict,
            op["protect_if_modified"],
            op["src_md5"],
            op["src_link"],
            "/root" + dest_real,
            dest_real,
            modes[op["dest_mode"]],
            op["dest_md5"],
            op["dest_link"],
        )
    finally:
        portage.util.new_protect_filename = saved
    cfgfiledict.pop("IGNORE", None)
    return {
        "dest": dest,
        "protected": bool(protected),
        "moveme": bool(move_me),
        "confmem": {k: v for k, v in cfgfiledict.items()},
    }


def run(op):
    kind = op["op"]
    if kind == "is_protected":
        from portage.util import ConfigProtect

        cp = ConfigProtect(op["eroot"], op["protect"], op["mask"], op["ci"])
        return [bool(cp.isprotected(o)) for o in op["objs"]]
    if kind == "new_protect":
        from portage.util import new_protect_filename

        return new_protect_filename(op["dest"], newmd5=op["newmd5"], force=op["force"])
    if kind == "confmem":
        from portage.util import grabdict, writedict

        d = grabdict(op["src"])
        items = [[k, list(v)] for k, v in d.items()]
        for o in op.get("ops", []):
            if o[0] == "set":
                d[o[1]] = [o[2]]
            elif o[0] == "del":
                d.pop(o[1], None)
        writedict(d, op["dst"])
        return {"items": items}
    if kind == "protect_decide":
        return protect_decide(op)
    if kind == "install_mask":
        from portage.util.install_mask import InstallMask

        m = InstallMask(op["mask"])
        out = []
        for p in op["paths"]:
            try:
                out.append(bool(m.match(p)))
            except Exception:
                out.append("error")
        return out
    if kind == "fnmatch":
        out = []
        for n in op["names"]:
            try:
                out.append(bool(fnmatch.fnmatch(n, op["pattern"])))
            except Exception:
                out.append("error")
        return out
    if kind == "shlex_split":
        return shlex.split(op["s"])
    if kind == "getconfig":
        from portage.util import getconfig

        expand = op["expand"]
        if expand is None:
            expand = False
        return getconfig(
            op["path"],
            tolerant=op["tolerant"],
            allow_sourcing=op["sourcing"],
            expand=expand,
            recursive=op["recursive"],
        )
    if kind == "config":
        from portage.package.ebuild.config import config
        from portage.util.env_update import env_update

        root = op["root"]
        if os.path.isdir(os.path.join(root, "etc", "env.d")):
            s = config(config_root=root, target_root=root, eprefix="", env={})
            env_update(
                makelinks=0,
                target_root=root,
                prev_mtimes={},
                contents=None,
                env=s,
                writemsg_level=lambda *a, **k: None,
            )
        s = config(config_root=root, target_root=root, eprefix="", env=dict(op["env"]))
        keys = (
            "CONFIG_PROTECT",
            "CONFIG_PROTECT_MASK",
            "COLLISION_IGNORE",
            "UNINSTALL_IGNORE",
            "INSTALL_MASK",
            "FEATURES",
            "PKGDIR",
        )
        out = {k: s.get(k) for k in keys}
        out["NOCONFMEM"] = "NOCONFMEM" in s
        return out
    raise ValueError(f"unknown op {kind}")


def setup_prefix(prefix):
    """A fake host EPREFIX holding the installed make.globals, so that the
    "config" op reads Portage's real defaults and nothing of the host."""
    import shutil

    src = os.path.join(sys.prefix, "share", "portage", "config", "make.globals")
    dst_dir = os.path.join(prefix, "share", "portage", "config")
    os.makedirs(dst_dir, exist_ok=True)
    shutil.copy(src, os.path.join(dst_dir, "make.globals"))
    os.environ["PORTAGE_OVERRIDE_EPREFIX"] = prefix


def main():
    out_path = sys.argv[1]
    if len(sys.argv) > 2:
        setup_prefix(sys.argv[2])
    doc = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogatepass"))
    results = []
    for op in doc["ops"]:
        try:
            results.append(run(op))
        except Exception as e:  # the Rust side decides what an error means
            results.append({"error": f"{type(e).__name__}: {e}"})
            if os.environ.get("PROTECT_ORACLE_TRACE"):
                traceback.print_exc()
    with open(out_path, "w", encoding="utf-8", errors="surrogateescape") as f:
        json.dump({"results": results}, f, ensure_ascii=True)


if __name__ == "__main__":
    main()

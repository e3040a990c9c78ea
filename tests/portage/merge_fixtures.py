#!/usr/bin/env python3
"""Images, build-info directories and live root states for the merge
differential test (crates/vartree/tests/merge_portage.rs).

    merge_fixtures.py image NAME OUT [--for portage|vartree] [--eprefix P]
        writes OUT/image (${D}) and OUT/build-info for fixture NAME
    merge_fixtures.py live NAME ROOT [--eprefix P]
        creates the pre-existing live state NAME in ROOT
    merge_fixtures.py list
        prints the fixture names

Every fixture is deterministic (fixed contents, modes, owners and ns mtimes),
so building it twice gives two identical trees: one is merged by Portage,
the other by vartree.  The only intended difference is the target of a
symlink that points into the image directory (the `${D}` rewrite case):
Portage stages the image in a build directory whose name is only known
while it runs, so `--for portage` writes the placeholder `@D@` which
merge_portage.py replaces with Portage's real `${D}` after staging;
`--for vartree` writes the absolute path of OUT/image itself (what vartree
strips).

Needs no Portage; any python3 works.  Must run as root (owners, devices).
"""

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _paths import portage_ref_dir  # noqa: E402

MTIME = 1700000000
# A nanosecond part, to check that ns mtimes survive the merge.
MTIME_NS = MTIME * 10**9 + 123456789
DEE = "@D@"

# security.capability v2 value for cap_net_raw+ep (what `setcap cap_net_raw+ep` writes).
CAP_NET_RAW_EP = bytes.fromhex("0100000200200000000000000000000000000000")


# ---------------------------------------------------------------- primitives
class Tree:
    """Build a tree under `top`; every entry's ns mtime is fixed at the end."""

    def __init__(self, top):
        self.top = top
        os.makedirs(top, exist_ok=True)
        self.times = []  # (path, ns) applied after everything exists

    def p(self, rel):
        return os.path.join(self.top, rel.lstrip("/"))

    def _parent(self, rel):
        os.makedirs(os.path.dirname(self.p(rel)), exist_ok=True)

    def dir(self, rel, mode=0o755, uid=0, gid=0):
        path = self.p(rel)
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return path

    def file(self, rel, data=b"", mode=0o644, uid=0, gid=0, mtime_ns=MTIME_NS, xattrs=()):
        self._parent(rel)
        path = self.p(rel)
        if isinstance(data, str):
            data = data.encode()
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, uid, gid)  # before chmod (chown clears set[ug]id)
        os.chmod(path, mode)
        for k, v in xattrs:  # after chown (chown clears security.capability)
            os.setxattr(path, k, v)
        self.times.append((path, mtime_ns))
        return path

    def link(self, existing, rel):
        self._parent(rel)
        os.link(self.p(existing), self.p(rel))

    def symlink(self, rel, target, mtime_ns=MTIME_NS, uid=0, gid=0):
        self._parent(rel)
        path = self.p(rel)
        os.symlink(target, path)
        os.lchown(path, uid, gid)
        self.times.append((path, mtime_ns))
        return path

    def fifo(self, rel, mode=0o644, mtime_ns=MTIME_NS):
        self._parent(rel)
        path = self.p(rel)
        os.mkfifo(path)
        os.chmod(path, mode)
        self.times.append((path, mtime_ns))

    def chardev(self, rel, major, minor, mode=0o666, mtime_ns=MTIME_NS):
        self._parent(rel)
        path = self.p(rel)
        os.mknod(path, 0o600 | 0o020000, os.makedev(major, minor))
        os.chmod(path, mode)
        self.times.append((path, mtime_ns))

    def finish(self):
        for path, ns in self.times:
            os.utime(path, ns=(ns, ns), follow_symlinks=False)
        # Directory mtimes are not compared (both tools give them the merge time).


def build_info(out, cpv, slot="0", eapi="8", extra=None):
    cat, pf = cpv.split("/", 1)
    os.makedirs(out, exist_ok=True)
    files = {
        "CATEGORY": cat,
        "PF": pf,
        "SLOT": slot,
        "EAPI": eapi,
        "repository": "gentoo",
        "BUILD_TIME": str(MTIME),
        "CHOST": "x86_64-pc-linux-gnu",
        "DEFINED_PHASES": "",
        "USE": "abi_x86_64 amd64 elibc_glibc kernel_linux",
        "IUSE": "",
        "KEYWORDS": "amd64",
        "LICENSE": "MIT",
        "DESCRIPTION": f"merge differential test package {cpv}",
        "HOMEPAGE": "https://example.invalid/",
        "CBUILD": "x86_64-pc-linux-gnu",
        "SIZE": "0",
    }
    files.update(extra or {})
    for k, v in files.items():
        with open(os.path.join(out, k), "w") as f:
            f.write(v + "\n")


# ------------------------------------------------------------------ images
# Each returns (cpv, slot) and fills the Tree `t` (the image, below EPREFIX
# unless the fixture places things itself).  `dee` is the prefix for
# symlinks into the image directory.

def img_small(t, dee, eprefix):
    # portage-ref's own small package (files, exec, empty dir, relative +
    # absolute symlink, /etc files).
    gen = os.path.join(portage_ref_dir(), "gen_image.py")
    tmp = t.top + ".gen"
    subprocess.run([sys.executable, gen, "small", tmp, "--version", "1.0"], check=True)
    os.rmdir(t.top)
    os.rename(tmp, t.top)
    return "app-misc/foo-1.0", "0"


def img_second(t, dee, eprefix):
    t.file("/usr/bin/bar", "#!/bin/sh\necho bar\n", 0o755)
    t.file("/usr/share/bar/README", "bar\n")
    t.file("/usr/share/foo/bar-plugin.txt", "plugin for foo\n")
    return "app-misc/bar-1.0", "0"


def img_alltypes(t, dee, eprefix):
    s = "/usr/share/weird"
    t.file(f"{s}/regular.txt", "a regular file\n")
    t.file(f"{s}/empty.txt", b"")
    t.dir(f"{s}/keepdir")
    t.file(f"{s}/keepdir/.keep_app-misc_weird-0", b"")
    # three hard links, in two directories
    t.file(f"{s}/hl-1", "hard linked three times\n", 0o644)
    t.link(f"{s}/hl-1", f"{s}/hl-2")
    t.link(f"{s}/hl-1", "/usr/bin/hl-3")
    # modes
    t.file("/usr/bin/suid", "#!/bin/sh\n", 0o4755)
    t.file("/usr/bin/sgid", "#!/bin/sh\n", 0o2711)
    t.file(f"{s}/sticky-file", "sticky\n", 0o1644)
    t.dir(f"{s}/sticky-dir", 0o1777)
    t.file(f"{s}/sticky-dir/inside", "x\n")
    t.dir(f"{s}/sgid-dir", 0o2775, uid=1234, gid=5678)
    t.file(f"{s}/sgid-dir/inside", "y\n", 0o640, uid=1234, gid=5678)
    t.file(f"{s}/owned-1234", "owned by 1234:5678\n", 0o600, uid=1234, gid=5678)
    t.file(f"{s}/suid-1234", "#!/bin/sh\n", 0o4750, uid=1234, gid=5678)
    # xattrs
    t.file(f"{s}/with-user-xattr", "xattr\n", xattrs=[("user.foo", b"bar")])
    t.file("/usr/bin/ping-cap", "#!/bin/sh\n", 0o755,
           xattrs=[("security.capability", CAP_NET_RAW_EP), ("user.other", b"1")])
    # FIFO and character device
    t.fifo(f"{s}/fifo", 0o600)
    t.chardev(f"{s}/null", 1, 3, 0o666)
    # symlinks
    t.dir(f"{s}/subdir")
    t.file(f"{s}/subdir/inner.txt", "inner\n")
    t.symlink(f"{s}/dirlink", "subdir")
    t.symlink(f"{s}/dirlink-abs", f"{s}/subdir")
    t.symlink(f"{s}/dangling", "does-not-exist")
    t.symlink(f"{s}/up-rel", "../../bin/suid")
    t.symlink(f"{s}/into-image", f"{dee}{s}/regular.txt")
    t.symlink(f"{s}/into-image-top", f"{dee}/")
    t.symlink(f"{s}/loop-a", "loop-b")
    t.symlink(f"{s}/loop-b", "loop-a")
    t.symlink(f"{s}/arrow-target", "tgt -> weird")
    t.symlink(f"{s}/link -> arrow", "regular.txt")
    # names
    t.file(f"{s}/with space.txt", "space\n")
    t.file(f"{s}/arrow -> name.txt", "arrow\n")
    t.file(f"{s}/ünïcødé-名前.txt", "utf-8\n")
    t.file(f"{s}/different mtime", "old\n", mtime_ns=1000000000 * 10**9 + 1)
    return "app-misc/weird-1.0", "0"


def img_libdir(t, dee, eprefix):
    t.file("/lib/libfoo.so.1", "\x7fELF not really\n", 0o755)
    t.symlink("/lib/libfoo.so", "libfoo.so.1")
    t.dir("/lib/foo-plugins")
    t.file("/lib/foo-plugins/a.so", "plugin\n", 0o755)
    t.file("/usr/lib/libfoo-extra.so", "extra\n", 0o755)
    return "sys-libs/libfoo-1.0", "0"


def img_prefixed(t, dee, eprefix):
    t.file(f"{eprefix}/usr/bin/pfx", "#!/bin/sh\necho prefixed\n", 0o755)
    t.file(f"{eprefix}/usr/share/pfx/data.txt", "data\n")
    t.symlink(f"{eprefix}/usr/bin/pfx-abs", f"{eprefix}/usr/bin/pfx")
    t.symlink(f"{eprefix}/usr/share/pfx/into-image", f"{dee}{eprefix}/usr/share/pfx/data.txt")
    t.file(f"{eprefix}/etc/pfx.conf", "conf\n")
    # Outside EPREFIX: neither tool merges or records it.
    t.file("/outside-eprefix.txt", "not merged\n")
    t.file("/usr/bin/outside", "not merged\n", 0o755)
    return "app-misc/pfx-1.0", "0"


def img_typeconf(t, dee, eprefix):
    """Entries that meet other types in ROOT (see live 'typeconf-*')."""
    s = "/usr/share/tc"
    t.dir(f"{s}/file-vs-dir")  # live: regular file
    t.file(f"{s}/file-vs-dir/child.txt", "child\n")
    t.file(f"{s}/dir-vs-file", "image file\n")  # live: directory
    t.dir(f"{s}/dangling-vs-dir")  # live: dangling symlink
    t.file(f"{s}/dangling-vs-dir/child.txt", "child\n")
    t.file(f"{s}/plain.txt", "plain\n")
    t.file(f"{s}/file-over-symlink", "image file\n")  # live: symlink to a file
    t.file(f"{s}/file-over-dirsymlink", "image file\n")  # live: symlink to a directory
    t.symlink(f"{s}/symlink-over-file", "plain.txt")  # live: regular file
    t.dir(f"{s}/filesymlink-vs-dir")  # live: symlink to a file
    t.file(f"{s}/filesymlink-vs-dir/child.txt", "child\n")
    t.file(f"{s}/file-over-fifo", "image file\n")  # live: FIFO
    t.fifo(f"{s}/fifo-over-file", 0o600)  # live: regular file (left alone)
    return "app-misc/tc-1.0", "0"


def img_sym_over_dir(t, dee, eprefix):
    s = "/usr/share/tc"
    t.file(f"{s}/target.txt", "target\n")
    t.symlink(f"{s}/sym-vs-dir", "target.txt")  # live: directory
    return "app-misc/tcsym-1.0", "0"


def img_symdir_over_dir(t, dee, eprefix):
    """A symlink that resolves to a directory (os.walk lists it as a
    directory), over a live directory: §5.2, Portage skips the collision
    check and merges it as NAME.backup.0000."""
    s = "/usr/share/tc"
    t.dir(f"{s}/real")
    t.file(f"{s}/real/x.txt", "x\n")
    t.symlink(f"{s}/symdir-vs-dir", "real")  # live: directory
    return "app-misc/tcsymdir-1.0", "0"


def img_escape(t, dee, eprefix):
    """Directories whose live counterparts are symlinks leaving ROOT (see
    live 'escape')."""
    t.dir("/usr/share/esc-rel")
    t.file("/usr/share/esc-rel/escaped.txt", "where am I?\n")
    t.dir("/usr/share/esc-abs")
    t.file("/usr/share/esc-abs/escaped.txt", "where am I?\n")
    return "app-misc/escape-1.0", "0"


def img_collide(t, dee, eprefix):
    t.file("/usr/share/c/shared.txt", "from the new package\n")
    t.file("/usr/share/c/own.txt", "own\n")
    return "app-misc/newpkg-1.0", "0"


def img_owner(t, dee, eprefix):
    t.file("/usr/share/c/shared.txt", "from the owner\n")
    t.file("/usr/share/c/owner-only.txt", "owner only\n")
    return "app-misc/owner-1.0", "0"


def img_identical(t, dee, eprefix):
    s = "/usr/share/ident"
    t.file(f"{s}/same.txt", "same content\n", 0o644)  # live: same content, mode, older mtime
    t.file(f"{s}/same-other-owner.txt", "same\n", 0o644)  # live: same, owned 1234:5678
    t.file(f"{s}/same-other-mode.txt", "same\n", 0o644)  # live: same content, mode 0600
    t.file(f"{s}/differs.txt", "new content\n", 0o644)  # live: other content
    t.symlink(f"{s}/same-link", "same.txt")  # live: same symlink
    # hard links, one of which is identical to a live file
    t.file(f"{s}/hl-a", "linked\n", 0o644)  # live: identical
    t.link(f"{s}/hl-a", f"{s}/hl-b")
    # new directory and file inside the existing (setgid) directory
    t.dir(f"{s}/newdir", 0o755)
    t.file(f"{s}/newdir/f.txt", "new\n")
    t.link(f"{s}/hl-a", f"{s}/newdir/hl-c")
    # identical content and mode, but the image file has an xattr
    t.file(f"{s}/same-but-xattr.txt", "same\n", 0o644, xattrs=[("user.foo", b"image")])
    t.file(f"{s}/new-file.txt", "new\n")
    return "app-misc/ident-1.0", "0"


def img_small_11(t, dee, eprefix):
    gen = os.path.join(portage_ref_dir(), "gen_image.py")
    tmp = t.top + ".gen"
    subprocess.run([sys.executable, gen, "small", tmp, "--version", "1.1"], check=True)
    os.rmdir(t.top)
    os.rename(tmp, t.top)
    return "app-misc/foo-1.1", "0"


def img_empty(t, dee, eprefix):
    # A virtual: the image is an empty directory.
    return "virtual/empty-1", "0"


def img_prehistoric(t, dee, eprefix):
    s = "/usr/share/old"
    t.file(f"{s}/minus-5s", "1969\n", mtime_ns=-5 * 10**9)
    t.file(f"{s}/minus-half-s", "1969\n", mtime_ns=-500000000)
    t.symlink(f"{s}/link-minus-5s", "minus-5s", mtime_ns=-5 * 10**9)
    t.file(f"{s}/epoch", "1970\n", mtime_ns=0)
    return "app-misc/old-1.0", "0"


def img_badname(t, dee, eprefix):
    s = "/usr/share/bad"
    t.file(f"{s}/good.txt", "good\n")
    # A name that is not UTF-8 (bytes path so that it stays raw).
    d = os.fsencode(t.p(s))
    with open(os.path.join(d, b"bad-\xff\xfe-name.txt"), "wb") as f:
        f.write(b"bad name\n")
    t.times.append((os.path.join(d, b"bad-\xff\xfe-name.txt"), MTIME_NS))
    return "app-misc/badname-1.0", "0"


def img_pyc_owner(t, dee, eprefix):
    t.file("/usr/lib/py/mod.pyc", b"owner pyc\n")
    t.file("/usr/lib/py/owner.txt", "owner\n")
    return "app-misc/pyowner-1.0", "0"


def img_pyc_new(t, dee, eprefix):
    # Its only collision is with pyowner's mod.pyc, which the default
    # COLLISION_IGNORE ("*.py[co]") exempts.
    t.file("/usr/lib/py/mod.pyc", b"new pyc\n")
    t.file("/usr/lib/py/new.txt", "new\n")
    return "app-misc/pynew-1.0", "0"


def img_install_mask(t, dee, eprefix):
    t.file("/usr/bin/masked-pkg", "#!/bin/sh\n", 0o755)
    t.file("/usr/share/doc/masked-pkg/README", "doc\n")
    t.file("/usr/share/masked-pkg/keep.txt", "kept\n")
    t.file("/usr/share/masked-pkg/drop.la", "libtool\n")
    return "app-misc/masked-pkg-1.0", "0", {"INSTALL_MASK": "/usr/share/doc *.la"}


def img_config(t, dee, eprefix):
    t.file("/etc/cfgpkg/cfg.conf", "# new config\n")
    t.file("/etc/cfgpkg/same.conf", "# same\n")
    t.file("/etc/cfgpkg/.keep_app-misc_cfgpkg-0", b"")
    t.file("/usr/share/cfgpkg/data", "data\n")
    return "app-misc/cfgpkg-1.0", "0"


IMAGES = {
    "small": img_small,
    "second": img_second,
    "alltypes": img_alltypes,
    "libdir": img_libdir,
    "prefixed": img_prefixed,
    "typeconf": img_typeconf,
    "sym-over-dir": img_sym_over_dir,
    "symdir-over-dir": img_symdir_over_dir,
    "collide": img_collide,
    "escape": img_escape,
    "owner": img_owner,
    "identical": img_identical,
    "small-1.1": img_small_11,
    "empty": img_empty,
    "prehistoric": img_prehistoric,
    "badname": img_badname,
    "pyc-owner": img_pyc_owner,
    "pyc-new": img_pyc_new,
    "install-mask": img_install_mask,
    "config": img_config,
}


# -------------------------------------------------------------- live states
# Each fills the Tree `t` on ROOT; `ep` is the EPREFIX ("" or "/opt/…"),
# prepended to the paths of fixtures that live below EROOT.

def live_lib_symlink(t, ep):
    t.dir(f"{ep}/usr/lib")
    t.file(f"{ep}/usr/lib/preexisting.so", "already here\n")
    t.symlink(f"{ep}/lib", "usr/lib")


def live_eprefix_dir(t, ep):
    # The prefix directory exists, as it always does on a Prefix system.
    t.dir(ep or "/")


def live_typeconf(t, ep):
    s = f"{ep}/usr/share/tc"
    t.dir(s)
    t.file(f"{s}/file-vs-dir", "live file\n")
    t.dir(f"{s}/dir-vs-file")
    t.file(f"{s}/dir-vs-file/keep.txt", "live content\n")
    t.symlink(f"{s}/dangling-vs-dir", "nowhere")
    t.file(f"{s}/live.txt", "live\n")
    t.symlink(f"{s}/file-over-symlink", "live.txt")
    t.dir(f"{s}/realdir")
    t.symlink(f"{s}/file-over-dirsymlink", "realdir")
    t.file(f"{s}/symlink-over-file", "live regular file\n")
    t.symlink(f"{s}/filesymlink-vs-dir", "live.txt")
    t.fifo(f"{s}/file-over-fifo", 0o644)
    t.file(f"{s}/fifo-over-file", "live regular file\n")


def live_sym_over_dir(t, ep):
    t.dir(f"{ep}/usr/share/tc/sym-vs-dir")
    t.file(f"{ep}/usr/share/tc/sym-vs-dir/keep.txt", "live\n")


def live_symdir_over_dir(t, ep):
    t.dir(f"{ep}/usr/share/tc/symdir-vs-dir")
    t.file(f"{ep}/usr/share/tc/symdir-vs-dir/keep.txt", "live\n")


def live_orphan(t, ep):
    t.file(f"{ep}/usr/share/c/shared.txt", "orphan file, owned by nobody\n",
           mtime_ns=1600000000 * 10**9)


def live_identical(t, ep):
    s = f"{ep}/usr/share/ident"
    t.file(f"{s}/same.txt", "same content\n", 0o644, mtime_ns=1600000000 * 10**9 + 5)
    t.file(f"{s}/same-other-owner.txt", "same\n", 0o644, uid=1234, gid=5678,
           mtime_ns=1600000000 * 10**9 + 6)
    t.file(f"{s}/same-other-mode.txt", "same\n", 0o600, mtime_ns=1600000000 * 10**9 + 7)
    t.file(f"{s}/differs.txt", "old content\n", 0o644, mtime_ns=1600000000 * 10**9 + 8)
    t.symlink(f"{s}/same-link", "same.txt", mtime_ns=1600000000 * 10**9 + 9)
    t.file(f"{s}/hl-a", "linked\n", 0o644, mtime_ns=1600000000 * 10**9 + 10)
    t.file(f"{s}/same-but-xattr.txt", "same\n", 0o644, mtime_ns=1600000000 * 10**9 + 11)


def live_escape(t, ep):
    """Symlinks in ROOT that lead out of ROOT, to directories that exist
    next to ROOT (never anywhere else on the host): ROOT/../outside-NAME-rel
    and -abs, where NAME is ROOT's basename, so that two roots in one work
    directory do not share them.  Resolved inside ROOT (as a chroot would),
    both are dangling."""
    root = t.top.rstrip("/")
    name = os.path.basename(root)
    parent = os.path.dirname(root)
    for kind in ("rel", "abs"):
        d = os.path.join(parent, f"outside-{name}-{kind}")
        os.makedirs(d, exist_ok=True)
    t.dir(f"{ep}/usr/share")
    depth = len([c for c in f"{ep}/usr/share".split("/") if c])
    t.symlink(f"{ep}/usr/share/esc-rel", "../" * (depth + 1) + f"outside-{name}-rel")
    t.symlink(f"{ep}/usr/share/esc-abs", os.path.join(parent, f"outside-{name}-abs"))


def live_host_files(t, ep):
    # Files of the host around a Prefix (outside EPREFIX, ignoring it).
    t.file("/etc/os-release", "NAME=host\n")
    t.file("/usr/bin/host-tool", "#!/bin/sh\n", 0o755)


def live_config(t, ep):
    t.file(f"{ep}/etc/cfgpkg/cfg.conf", "# edited by the admin\n", mtime_ns=1600000000 * 10**9)
    t.file(f"{ep}/etc/cfgpkg/same.conf", "# same\n", mtime_ns=1600000000 * 10**9)


def live_setgid_dir(t, ep):
    # An existing directory with another mode/owner than the image's, and
    # setgid (new subdirectories would inherit the bit and the group).
    t.dir(f"{ep}/usr/share/ident", 0o2770, uid=1234, gid=5678)


LIVE = {
    "lib-symlink": live_lib_symlink,
    "eprefix-dir": live_eprefix_dir,
    "typeconf": live_typeconf,
    "sym-over-dir": live_sym_over_dir,
    "symdir-over-dir": live_symdir_over_dir,
    "orphan": live_orphan,
    "identical": live_identical,
    "config": live_config,
    "escape": live_escape,
    "host-files": live_host_files,
    "setgid-dir": live_setgid_dir,
}


def norm_eprefix(e):
    e = (e or "").strip("/")
    return "/" + e if e else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("image")
    a.add_argument("name", choices=sorted(IMAGES))
    a.add_argument("out")
    a.add_argument("--for", dest="tool", choices=("portage", "vartree"), required=True)
    a.add_argument("--eprefix", default="")
    b = sub.add_parser("live")
    b.add_argument("name", choices=sorted(LIVE))
    b.add_argument("root")
    b.add_argument("--eprefix", default="")
    sub.add_parser("list")
    args = ap.parse_args()
    os.umask(0o022)
    if args.cmd == "list":
        print("images:", " ".join(sorted(IMAGES)))
        print("live:", " ".join(sorted(LIVE)))
        return
    eprefix = norm_eprefix(args.eprefix)
    if args.cmd == "image":
        out = os.path.abspath(args.out)
        image = os.path.join(out, "image")
        if os.path.exists(image):
            shutil.rmtree(image)
        t = Tree(image)
        dee = DEE if args.tool == "portage" else os.path.realpath(image)
        cpv, slot, *extra = IMAGES[args.name](t, dee, eprefix)
        t.finish()
        build_info(os.path.join(out, "build-info"), cpv, slot, extra=extra[0] if extra else None)
        print(cpv)
    else:
        root = os.path.abspath(args.root)
        os.makedirs(root, exist_ok=True)
        t = Tree(root)
        LIVE[args.name](t, eprefix)
        t.finish()


if __name__ == "__main__":
    main()

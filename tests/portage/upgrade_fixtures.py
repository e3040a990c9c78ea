#!/usr/bin/env python3
"""Images, build-info directories and admin actions for the upgrade /
reinstall / downgrade / unmerge differential test
(crates/vartree/tests/upgrade_portage.rs).

    upgrade_fixtures.py image NAME OUT [--for portage|vartree] [--eprefix P]
        writes OUT/image (${D}) and OUT/build-info for fixture NAME and
        prints its CATEGORY/PF
    upgrade_fixtures.py live NAME ROOT [--eprefix P]
        applies the live state or admin action NAME to ROOT (creating,
        editing, touching or deleting files; deterministic)
    upgrade_fixtures.py list
        prints the names

Built on merge_fixtures.py (its Tree and build_info); nothing here depends
on the tool, so `--for` is accepted only for symmetry with merge_fixtures.py.
Every image lives below IMAGE/EPREFIX.  All file mtimes are fixed
(1700000000.123456789 unless said otherwise), so CONTENTS records 1700000000.

Needs no Portage; any python3 works.  Must run as root (owners, devices).
"""

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from merge_fixtures import MTIME_NS, Tree, build_info, norm_eprefix  # noqa: E402

# Admin edits happen "later" than the merge; CONTENTS says 1700000000.
ADMIN_NS = 1750000000 * 10**9 + 42


# --------------------------------------------------------------- app-misc/upg
# The package of the upgrade sequences (versions 1.0 and 1.1).  What changes
# between the versions (S = /usr/share/upg):
#   same.txt, admin-*.txt, mtime-only.txt, content-only.txt, link-same,
#   empty-dir                                                     unchanged
#   changed.txt, /usr/bin/upg                                     new content
#   old-only.txt, *-gone*, gone-tree/, admin-dir/, hl-b, fifo-gone, null-gone
#                                                                 only in 1.0
#   new-only.txt, hl-c                                            only in 1.1
#   x      file in 1.0, directory (x/inner.txt) in 1.1
#   z      directory (z/inner.txt) in 1.0, file in 1.1
#   l1     symlink (-> same.txt) in 1.0, file in 1.1
#   f1     file in 1.0, symlink (-> same.txt) in 1.1
#   link-retarget  -> same.txt in 1.0, -> changed.txt in 1.1
#   mode-change.txt, owner-change.txt, mtime-change.txt  same content, other
#          mode / owner / mtime in 1.1
#   admin-made-dir  a file in both; the admin replaces it by a directory
#   admin-made-dirlink-gone  only in 1.0; the admin replaces it by a
#          symlink to a directory
#   lib/…  1.0 installs /lib/upg/*, /lib/libupg.so.1 and /usr/lib/upg-extra.so;
#          1.1 the same names under /usr/lib and /lib/upg-extra.so (with a
#          live /lib -> usr/lib these are the same files)
# and with `etc` (the /etc files are all unmodified by the admin, except
# gone-modified.conf which only 1.0 has, and admin.conf with `etc_admin`):
#   /etc/upg/unchanged.conf  same in both
#   /etc/upg/changed.conf    new content in 1.1
#   /etc/upg/gone.conf       only in 1.0
#   /etc/upg/gone-modified.conf  only in 1.0 (the admin edits it)
#   /etc/upg/conf-link       symlink, -> unchanged.conf in 1.0, -> changed.conf
#                            in 1.1
#   /etc/upg/admin.conf      new content in 1.1 (the admin edits it; only
#                            with etc_admin: needs config protection)
#   /etc/upg/admin-link      symlink like conf-link; the admin re-points it
#   /etc/upg/admin-deleted.conf  same in both; the admin deletes it (bug
#                            523684: merged as ._cfg0000_ all the same)
#   /etc/upg/admin-identical.conf  new content in 1.1; the admin makes it
#                            identical to 1.1's before the upgrade
#   /etc/upg/keepdir/.keep_app-misc_upg-0  empty .keep file (never protected)
#   /etc/env.d/50upg         new content in 1.1, the admin edits it
#                            (CONFIG_PROTECT_MASK: overwritten)
#                            (these five only with etc_admin)
def upg(t, ep, v, etc=False, etc_admin=False):
    old = v == "1.0"
    S = f"{ep}/usr/share/upg"
    t.file(f"{ep}/usr/bin/upg", f"#!/bin/sh\necho upg {v}\n", 0o755)
    t.file(f"{S}/same.txt", "same in every version\n")
    t.file(f"{S}/changed.txt", f"changed.txt of {v}\n")
    t.file(f"{S}/with space.txt", "a name with a space\n")
    if old:
        t.file(f"{S}/old-only.txt", "only in 1.0\n")
    else:
        t.file(f"{S}/new-only.txt", "only in 1.1\n")
    # the admin touches these (see admin_upg)
    for name in ("admin-edited.txt", "mtime-only.txt", "admin-deleted.txt",
                 "content-only.txt"):
        t.file(f"{S}/{name}", f"pristine {name}\n")
    if old:
        for name in ("admin-edited-gone.txt", "mtime-only-gone.txt", "admin-deleted-gone.txt"):
            t.file(f"{S}/{name}", f"pristine {name}\n")
    # metadata changes with the same content
    t.file(f"{S}/mode-change.txt", "same content\n", 0o644 if old else 0o755)
    t.file(f"{S}/owner-change.txt", "same content\n", uid=0 if old else 1234,
           gid=0 if old else 5678)
    t.file(f"{S}/mtime-change.txt", "same content\n",
           mtime_ns=MTIME_NS if old else MTIME_NS + 10**9)
    # the admin replaces these with a directory / a symlink to a directory
    t.file(f"{S}/admin-made-dir", "a file in every version\n")
    if old:
        t.file(f"{S}/admin-made-dirlink-gone", "a file only in 1.0\n")
    # file <-> directory <-> symlink
    if old:
        t.file(f"{S}/x", "x is a file in 1.0\n")
        t.dir(f"{S}/z")
        t.file(f"{S}/z/inner.txt", "z is a directory in 1.0\n")
        t.symlink(f"{S}/l1", "same.txt")
        t.file(f"{S}/f1", "f1 is a file in 1.0\n")
    else:
        t.dir(f"{S}/x")
        t.file(f"{S}/x/inner.txt", "x is a directory in 1.1\n")
        t.file(f"{S}/z", "z is a file in 1.1\n")
        t.file(f"{S}/l1", "l1 is a file in 1.1\n")
        t.symlink(f"{S}/f1", "same.txt")
    t.symlink(f"{S}/link-same", "same.txt")
    t.symlink(f"{S}/link-retarget", "same.txt" if old else "changed.txt")
    t.symlink(f"{S}/link-abs", f"{ep}/usr/bin/upg")
    t.symlink(f"{S}/dangling", "nowhere")
    # directories
    t.dir(f"{S}/empty-dir")
    if old:
        t.dir(f"{S}/empty-dir-gone")
        t.file(f"{S}/gone-tree/a/b/deep.txt", "deep, only in 1.0\n")
        t.file(f"{S}/admin-dir/owned.txt", "admin-dir is only in 1.0\n")
    # hard links
    t.file(f"{S}/hl-a", "hard linked\n")
    t.link(f"{S}/hl-a", f"{S}/hl-b" if old else f"{S}/hl-c")
    # special files
    t.fifo(f"{S}/fifo", 0o600)
    if old:
        t.fifo(f"{S}/fifo-gone", 0o600)
        t.chardev(f"{S}/null-gone", 1, 3, 0o666)
    # /lib <-> /usr/lib
    lib_a, lib_b = (f"{ep}/lib", f"{ep}/usr/lib") if old else (f"{ep}/usr/lib", f"{ep}/lib")
    t.file(f"{lib_a}/upg/plugin.so", "plugin, same in both\n", 0o755)
    t.file(f"{lib_a}/upg/changed.so", f"plugin of {v}\n", 0o755)
    t.file(f"{lib_a}/libupg.so.1", "libupg, same in both\n", 0o755)
    t.symlink(f"{lib_a}/libupg.so", "libupg.so.1")
    t.file(f"{lib_a}/upg/{'old' if old else 'new'}-only.so", f"only in {v}\n", 0o755)
    t.file(f"{lib_b}/upg-extra.so", "extra, same in both\n", 0o755)
    if etc:
        E = f"{ep}/etc/upg"
        t.file(f"{E}/unchanged.conf", "# unchanged\n")
        t.file(f"{E}/changed.conf", f"# changed.conf of {v}\n")
        t.symlink(f"{E}/conf-link", "unchanged.conf" if old else "changed.conf")
        if old:
            t.file(f"{E}/gone.conf", "# only in 1.0\n")
            t.file(f"{E}/gone-modified.conf", "# only in 1.0, the admin edits it\n")
    if etc_admin:
        E = f"{ep}/etc/upg"
        t.file(f"{E}/admin.conf", f"# admin.conf of {v}\n")
        t.file(f"{E}/admin-deleted.conf", "# the admin deletes it\n")
        t.file(f"{E}/admin-identical.conf", f"# admin-identical.conf of {v}\n")
        t.file(f"{E}/keepdir/.keep_app-misc_upg-0", b"")
        t.file(f"{ep}/etc/env.d/50upg", f"UPG_VERSION={v}\n")
        t.symlink(f"{ep}/etc/upg/admin-link", "unchanged.conf" if old else "changed.conf")
    return f"app-misc/upg-{v}", "0"


def img_upg_10(t, ep):
    return upg(t, ep, "1.0")


def img_upg_11(t, ep):
    return upg(t, ep, "1.1")


def img_upg_etc_10(t, ep):
    return upg(t, ep, "1.0", etc=True)


def img_upg_etc_11(t, ep):
    return upg(t, ep, "1.1", etc=True)


def img_upg_etcadm_10(t, ep):
    return upg(t, ep, "1.0", etc=True, etc_admin=True)


def img_upg_etcadm_11(t, ep):
    return upg(t, ep, "1.1", etc=True, etc_admin=True)


# ---------------------------------------------- file <-> dir <-> symlink (sd)
# 1.0: b is a symlink to a file, 1.1: b is a directory (an upgrade Portage
# does: the live symlink is moved aside to b.backup.0000).  Downgrading 1.1
# -> 1.0 puts a symlink where ROOT has a directory: refused (PMS 13.4).
def sd(t, ep, v):
    S = f"{ep}/usr/share/sd"
    t.file(f"{S}/target.txt", "target\n")
    if v == "1.0":
        t.symlink(f"{S}/b", "target.txt")
    else:
        t.file(f"{S}/b/inner.txt", "b is a directory in 1.1\n")
    return f"app-misc/sd-{v}", "0"


def img_sd_10(t, ep):
    return sd(t, ep, "1.0")


def img_sd_11(t, ep):
    return sd(t, ep, "1.1")


# 1.0: y is a directory, 1.1: y is a symlink to a file: refused (PMS 13.4,
# Portage's symlink_collisions), also when the directory belongs to the
# instance being replaced.
def dy(t, ep, v):
    S = f"{ep}/usr/lib/dy"
    t.file(f"{S}/target.so", "target\n")
    if v == "1.0":
        t.file(f"{S}/y/a.so", "y is a directory in 1.0\n")
    else:
        t.symlink(f"{S}/y", "target.so")
    return f"app-misc/dy-{v}", "0"


def img_dy_10(t, ep):
    return dy(t, ep, "1.0")


def img_dy_11(t, ep):
    return dy(t, ep, "1.1")


# The package's own directory symlink: 1.0 has real/a.txt, real/b.txt and
# link -> real; 1.1 installs link/a.txt (same content) and link/c.txt with
# `link` a directory in its image, merged through the live symlink (CONTENTS
# `dir …/link`, `obj …/link/a.txt`): the old instance's real/a.txt is the
# new one's link/a.txt (owned through the symlinked directory), its `sym
# link` is the new one's `dir link`.
def dlk(t, ep, v):
    S = f"{ep}/usr/share/dlk"
    if v == "1.0":
        t.file(f"{S}/real/a.txt", "a, same in both\n")
        t.file(f"{S}/real/b.txt", "b, only in 1.0\n")
        t.symlink(f"{S}/link", "real")
    else:
        t.file(f"{S}/link/a.txt", "a, same in both\n")
        t.file(f"{S}/link/c.txt", "c, only in 1.1\n")
    return f"app-misc/dlk-{v}", "0"


def img_dlk_10(t, ep):
    return dlk(t, ep, "1.0")


def img_dlk_11(t, ep):
    return dlk(t, ep, "1.1")


# Files shared between packages: A and B both own shared.txt (B merged with
# protect-owned off); drops it.  Slots: sl-1.0 (SLOT 1) and sl-2.0
# (SLOT 2) both own common.txt; sl-2.1 (SLOT 2/2.1) drops it.
def img_sha_a_10(t, ep):
    t.file(f"{ep}/usr/share/sha/shared.txt", "shared, A's version\n")
    t.file(f"{ep}/usr/share/sha/a.txt", "a\n")
    return "app-misc/sha-a-1.0", "0"


def img_sha_a_11(t, ep):
    t.file(f"{ep}/usr/share/sha/a.txt", "a\n")
    return "app-misc/sha-a-1.1", "0"


def img_sha_b(t, ep):
    t.file(f"{ep}/usr/share/sha/shared.txt", "shared, B's version\n")
    t.file(f"{ep}/usr/share/sha/b.txt", "b\n")
    return "app-misc/sha-b-1.0", "0"


def img_sl_10(t, ep):
    t.file(f"{ep}/usr/share/sl/common.txt", "common\n")
    t.file(f"{ep}/usr/share/sl/one.txt", "one\n")
    return "app-misc/sl-1.0", "1"


def img_sl_20(t, ep):
    t.file(f"{ep}/usr/share/sl/common.txt", "common\n")
    t.file(f"{ep}/usr/share/sl/two.txt", "two\n")
    return "app-misc/sl-2.0", "2"


def img_sl_21(t, ep):
    t.file(f"{ep}/usr/share/sl/two.txt", "two, 2.1\n")
    return "app-misc/sl-2.1", "2/2.1"


# A file of the old instance that the admin hard-linked to the path the
# new instance installs (same content): the new instance leaves its path in
# place (identical), so the old path shares the new path's inode.
def hli(t, ep, v):
    S = f"{ep}/usr/share/hli"
    t.file(f"{S}/{'old' if v == '1.0' else 'new'}.txt", "the same content\n")
    t.file(f"{S}/plain.txt", "plain\n")
    return f"app-misc/hli-{v}", "0"


def img_hli_10(t, ep):
    return hli(t, ep, "1.0")


def img_hli_11(t, ep):
    return hli(t, ep, "1.1")


# ------------------------------------------------------- unmerge edge cases
def img_edge(t, ep):
    E = f"{ep}/usr/share/edge"
    for name in ("modified", "unmodified", "touched", "content-only"):
        t.file(f"{ep}/etc/edge/{name}.conf", f"# {name}.conf\n")
    t.file(f"{ep}/etc/env.d/50edge", "EDGE=1\n")  # CONFIG_PROTECT_MASK
    t.file(f"{E}/pristine.txt", "pristine\n")
    t.file(f"{E}/touched.txt", "touched by the admin\n")
    t.file(f"{E}/edited.txt", "edited by the admin\n")
    t.file(f"{E}/content-only.txt", "content edited, mtime restored\n")
    t.file(f"{E}/deleted.txt", "deleted by the admin\n")
    t.file(f"{E}/dir-with-unowned/own.txt", "own\n")
    # a symlink to a directory whose only files are the package's (removed;
    # the files go first: entries are processed in reverse path order)
    t.file(f"{E}/realdir3/own3.txt", "own3\n")
    t.symlink(f"{E}/dirlink3", "realdir3")
    t.symlink(f"{E}/file-link", "pristine.txt")
    t.symlink(f"{E}/retargeted-link", "pristine.txt")  # the admin re-points it
    t.fifo(f"{E}/fifo", 0o600)
    t.chardev(f"{E}/null", 1, 3, 0o666)
    t.file(f"{ep}/lib/modules/edge/edge.ko", "kernel module\n")  # UNINSTALL_IGNORE
    t.file(f"{ep}/usr/share/info/edge.info", "info\n")
    t.file(f"{E}/info/edge2.info", "info in a directory named info\n")
    t.file(f"{E}/setuid", "#!/bin/sh\n", 0o4755)
    return "app-misc/edge-1.0", "0"


def img_other(t, ep):
    # Another package in app-misc (so that the category stays).
    t.file(f"{ep}/usr/share/other/other.txt", "other\n")
    return "app-misc/other-1.0", "0"


# Symlinks to directories (bug 326685), unmerged while (a) app-misc/through
# owns a file installed through dirlink2, or (b) nothing is installed
# through any of them.
def img_dsym(t, ep):
    S = f"{ep}/usr/share/dsym"
    t.file(f"{S}/plain.txt", "plain\n")
    # the admin adds realdir/admin.txt
    t.file(f"{S}/realdir/own.txt", "own\n")
    t.symlink(f"{S}/dirlink", "realdir")
    # app-misc/through installs dirlink2/through.txt
    t.file(f"{S}/realdir2/own2.txt", "own2\n")
    t.symlink(f"{S}/dirlink2", "realdir2")
    # to a directory the package does not own (the admin fills it)
    t.symlink(f"{S}/link-to-foreign", "../dsym-foreign")
    return "app-misc/dsym-1.0", "0"


def img_through(t, ep):
    # Merged after dsym-1.0: through its dirlink2 symlink (CONTENTS
    # records `dir /usr/share/dsym/dirlink2`).
    t.file(f"{ep}/usr/share/dsym/dirlink2/through.txt", "installed through dirlink2\n")
    return "app-misc/through-1.0", "0"


# A symlink to a directory whose child is a directory of the package: not
# all children are regular files, so the symlink is protected (`!empty`);
# when the directory itself is then removed, Portage removes the symlink
# pointing to it (bug 640058).
def img_nest(t, ep):
    S = f"{ep}/usr/share/nest"
    t.file(f"{S}/nestdir/sub/f.txt", "nested\n")
    t.symlink(f"{S}/nestlink", "nestdir")
    t.file(f"{S}/plain.txt", "plain\n")
    return "app-misc/nest-1.0", "0"


# CONTENTS as an old or hand-edited VDB may have it (see vdb_quirks).
def img_quirk(t, ep):
    for name in ("upper.conf", "double.conf", "neg.conf", "rel.conf", "dotdot.conf",
                 "trailing.conf", "garbage.conf", "spaces.conf"):
        t.file(f"{ep}/etc/quirk/{name}", f"# {name}\n")
    t.file(f"{ep}/usr/share/quirk/sub/file.txt", "x\n")
    return "app-misc/quirk-1.0", "0"


def img_prehistoric(t, ep):
    # Portage records these mtimes as -5 and -1 (floor), which its own
    # CONTENTS parser (`\\d+`) cannot read back.
    S = f"{ep}/usr/share/old"
    t.file(f"{S}/minus-5s", "1969\n", mtime_ns=-5 * 10**9)
    t.file(f"{S}/minus-half-s", "1969\n", mtime_ns=-500000000)
    t.symlink(f"{S}/link-minus-5s", "minus-5s", mtime_ns=-5 * 10**9)
    t.file(f"{S}/epoch", "1970\n", mtime_ns=0)
    return "app-misc/old-1.0", "0"


def img_esc(t, ep):
    t.file(f"{ep}/usr/share/esc/f.txt", "a package file\n")
    t.file(f"{ep}/usr/share/esc/g.txt", "another\n")
    t.file(f"{ep}/usr/share/esc-stay/h.txt", "h\n")
    return "app-misc/esc-1.0", "0"


def img_libsym(t, ep):
    # The image has lib -> usr/lib itself: CONTENTS `sym /lib -> usr/lib`.
    t.symlink(f"{ep}/lib", "usr/lib")
    t.file(f"{ep}/usr/lib/libsym.so.1", "libsym\n", 0o755)
    t.symlink(f"{ep}/usr/lib/libsym.so", "libsym.so.1")
    t.symlink(f"{ep}/usr/local/lib", "../lib")
    t.file(f"{ep}/usr/local/share/libsym.txt", "x\n")
    return "sys-libs/libsym-1.0", "0"


def img_libsym_user(t, ep):
    # Installs through the /lib symlink of libsym.
    t.file(f"{ep}/lib/libuser.so.1", "libuser\n", 0o755)
    return "sys-libs/libuser-1.0", "0"


IMAGES = {
    "upg-1.0": img_upg_10,
    "upg-1.1": img_upg_11,
    "upg-etc-1.0": img_upg_etc_10,
    "upg-etc-1.1": img_upg_etc_11,
    "upg-etcadm-1.0": img_upg_etcadm_10,
    "upg-etcadm-1.1": img_upg_etcadm_11,
    "sd-1.0": img_sd_10,
    "sd-1.1": img_sd_11,
    "dy-1.0": img_dy_10,
    "dy-1.1": img_dy_11,
    "sha-a-1.0": img_sha_a_10,
    "sha-a-1.1": img_sha_a_11,
    "sha-b": img_sha_b,
    "sl-1.0": img_sl_10,
    "sl-2.0": img_sl_20,
    "sl-2.1": img_sl_21,
    "hli-1.0": img_hli_10,
    "hli-1.1": img_hli_11,
    "dlk-1.0": img_dlk_10,
    "dlk-1.1": img_dlk_11,
    "edge": img_edge,
    "quirk": img_quirk,
    "esc": img_esc,
    "prehistoric": img_prehistoric,
    "other": img_other,
    "dsym": img_dsym,
    "through": img_through,
    "nest": img_nest,
    "libsym": img_libsym,
    "libsym-user": img_libsym_user,
}


# ------------------------------------------------- live states, admin actions
def p(t, rel):
    return t.p(rel)


def edit(t, rel, data, mtime_ns=ADMIN_NS):
    """Rewrite an existing file in place (same inode, mode and owner)."""
    path = p(t, rel)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def touch(t, rel, mtime_ns=ADMIN_NS):
    os.utime(p(t, rel), ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def rm(t, rel):
    os.unlink(p(t, rel))


def live_lib_symlink(t, ep):
    t.dir(f"{ep}/usr/lib")
    t.file(f"{ep}/usr/lib/preexisting.so", "already here\n")
    t.symlink(f"{ep}/lib", "usr/lib")


def live_eprefix_dir(t, ep):
    t.dir(ep or "/")


def admin_upg(t, ep):
    """After installing upg-1.0: the admin edits, touches and deletes files
    and adds unowned ones."""
    S = f"{ep}/usr/share/upg"
    edit(t, f"{S}/admin-edited.txt", "edited by the admin\n")
    edit(t, f"{S}/admin-edited-gone.txt", "edited by the admin\n")
    touch(t, f"{S}/mtime-only.txt")
    # content changed, mtime kept: only a look at the content tells
    # (FEATURES=merge-use-vdb / --trust-vdb trust the recorded md5)
    edit(t, f"{S}/content-only.txt", "edited, mtime restored\n", mtime_ns=MTIME_NS)
    touch(t, f"{S}/mtime-only-gone.txt")
    rm(t, f"{S}/admin-deleted.txt")
    rm(t, f"{S}/admin-deleted-gone.txt")
    t.file(f"{S}/unowned.txt", "the admin's own file\n", mtime_ns=ADMIN_NS)
    t.file(f"{S}/admin-dir/unowned.txt", "the admin's own file\n", mtime_ns=ADMIN_NS)
    # in a directory that is gone in 1.1 and back in 1.0
    t.file(f"{S}/z/unowned.txt", "the admin's file in z/\n", mtime_ns=ADMIN_NS)
    # a package file replaced by a directory, another by a symlink to one
    rm(t, f"{S}/admin-made-dir")
    t.file(f"{S}/admin-made-dir/inside.txt", "the admin's\n", mtime_ns=ADMIN_NS)
    rm(t, f"{S}/admin-made-dirlink-gone")
    t.symlink(f"{S}/admin-made-dirlink-gone", "empty-dir", mtime_ns=ADMIN_NS)


def admin_upg_etc(t, ep):
    admin_upg(t, ep)
    edit(t, f"{ep}/etc/upg/gone-modified.conf", "# edited by the admin\n")


def admin_upg_etcadm(t, ep):
    admin_upg_etc(t, ep)
    edit(t, f"{ep}/etc/upg/admin.conf", "# admin.conf edited by the admin\n")
    rm(t, f"{ep}/etc/upg/admin-deleted.conf")
    edit(t, f"{ep}/etc/upg/admin-identical.conf", "# admin-identical.conf of 1.1\n")
    edit(t, f"{ep}/etc/env.d/50upg", "UPG_VERSION=admin\n")
    rm(t, f"{ep}/etc/upg/admin-link")
    t.symlink(f"{ep}/etc/upg/admin-link", "gone.conf", mtime_ns=ADMIN_NS)


def admin_upg_etc_cleanup(t, ep):
    """The admin removes the kept (modified, no longer owned) config before
    downgrading to 1.0, which installs it again."""
    rm(t, f"{ep}/etc/upg/gone-modified.conf")


def admin_edge(t, ep):
    E = f"{ep}/usr/share/edge"
    edit(t, f"{ep}/etc/edge/modified.conf", "# modified by the admin\n")
    touch(t, f"{ep}/etc/edge/touched.conf")
    edit(t, f"{ep}/etc/edge/content-only.conf", "# content edited, mtime kept\n",
         mtime_ns=MTIME_NS)
    edit(t, f"{ep}/etc/env.d/50edge", "EDGE=2\n")
    touch(t, f"{E}/touched.txt")
    edit(t, f"{E}/edited.txt", "the admin was here\n")
    edit(t, f"{E}/content-only.txt", "content edited, mtime restored!\n", mtime_ns=MTIME_NS)
    rm(t, f"{E}/deleted.txt")
    t.file(f"{E}/dir-with-unowned/unowned.txt", "admin\n", mtime_ns=ADMIN_NS)
    rm(t, f"{E}/retargeted-link")
    t.symlink(f"{E}/retargeted-link", "touched.txt", mtime_ns=MTIME_NS)
    # install-info's index in info directories
    t.file(f"{ep}/usr/share/info/dir", "info index\n", mtime_ns=ADMIN_NS)
    t.file(f"{ep}/usr/share/info/dir.old", "old info index\n", mtime_ns=ADMIN_NS)
    t.file(f"{E}/info/dir", "info index\n", mtime_ns=ADMIN_NS)
    # another module in the kernel's tree
    t.file(f"{ep}/lib/modules/edge/other.ko", "not the package's\n", mtime_ns=ADMIN_NS)


def admin_dsym(t, ep):
    S = f"{ep}/usr/share/dsym"
    t.file(f"{S}/realdir/admin.txt", "admin\n", mtime_ns=ADMIN_NS)
    t.file(f"{ep}/usr/share/dsym-foreign/foreign.txt", "not a package's\n", mtime_ns=ADMIN_NS)


def vdb_quirks(t, ep):
    """Rewrite app-misc/quirk-1.0's CONTENTS (in place, line by line, so the
    same in both roots whatever their line order): an upper-case md5 (old
    Portage), `//` in a path, a negative mtime (Portage's parser drops the
    line), a relative path, a `..` component, a trailing slash on a
    directory, a line that is no CONTENTS entry, a path with trailing
    spaces."""
    path = t.p(f"{ep}/var/db/pkg/app-misc/quirk-1.0/CONTENTS")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        kind, rest = line.split(" ", 1)
        if kind == "obj":
            p, md5, mtime = rest.rsplit(" ", 2)
            name = os.path.basename(p)
            if name == "upper.conf":
                md5 = md5.upper()
            elif name == "double.conf":
                p = p.replace("/etc/quirk/", "/etc//quirk/")
            elif name == "neg.conf":
                mtime = "-5"
            elif name == "rel.conf":
                p = p.lstrip("/")
            elif name == "dotdot.conf":
                p = p.replace("/etc/quirk/", "/etc/quirk/../quirk/")
            elif name == "garbage.conf":
                out.append("this is no CONTENTS entry")
            elif name == "spaces.conf":
                p = p + "  "
            line = f"obj {p} {md5} {mtime}"
        elif kind == "dir" and rest.endswith("/usr/share/quirk/sub"):
            line = f"dir {rest}/"
        out.append(line)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def admin_hli(t, ep):
    S = f"{ep}/usr/share/hli"
    os.link(t.p(f"{S}/old.txt"), t.p(f"{S}/new.txt"))


def admin_escape(t, ep):
    """The admin moves esc-1.0's directory out of ROOT, to
    ROOT/../outside-NAME-esc (NAME = ROOT's basename, so two roots in one
    work directory do not share it), and leaves an absolute symlink to it
    (resolved inside ROOT, as in a chroot, it dangles)."""
    root = t.top.rstrip("/")
    out = os.path.join(os.path.dirname(root), f"outside-{os.path.basename(root)}-esc")
    src = t.p(f"{ep}/usr/share/esc")
    shutil.move(src, out)
    os.symlink(out, src)


LIVE = {
    "lib-symlink": live_lib_symlink,
    "eprefix-dir": live_eprefix_dir,
    "admin-upg": admin_upg,
    "admin-upg-etc": admin_upg_etc,
    "admin-upg-etcadm": admin_upg_etcadm,
    "admin-upg-etc-cleanup": admin_upg_etc_cleanup,
    "admin-edge": admin_edge,
    "admin-dsym": admin_dsym,
    "vdb-quirks": vdb_quirks,
    "admin-hli": admin_hli,
    "admin-escape": admin_escape,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("image")
    a.add_argument("name", choices=sorted(IMAGES))
    a.add_argument("out")
    a.add_argument("--for", dest="tool", choices=("portage", "vartree"), default="portage")
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
        cpv, slot = IMAGES[args.name](t, eprefix)
        t.finish()
        build_info(os.path.join(out, "build-info"), cpv, slot)
        print(cpv)
    else:
        root = os.path.abspath(args.root)
        if not os.path.isdir(root):
            raise SystemExit(f"no such root: {root}")
        t = Tree(root)
        LIVE[args.name](t, eprefix)
        t.finish()


if __name__ == "__main__":
    main()

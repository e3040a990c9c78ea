//! `vartree install` on hostile binary packages, through the real binary.
//!
//! Every package is built here byte by byte (see `common/`), in gpkg form
//! (with a correct Manifest, so that the hostile property itself is what
//! gets refused) and in xpak form where the format allows it. Each is
//! installed into a ROOT that already holds an installed package and a few
//! other files, with a canary directory beside ROOT (outside it) that
//! hostile names aim at. A refused package must exit with status 2, name
//! the package file, the offending member/path and what to do, and leave
//! ROOT (files, VDB, no staging leftovers) and the canary exactly as they
//! were: type, mode, owner, size, content, link target, inode, link count,
//! mtime and ctime of every path (nothing is ignored, not even a lock file).
//! The same holds with `--pretend`, and when the hostile package is one of
//! several on the command line.
//!
//! Cases that are not refused (FIFOs, devices with `--allow-devices`, a
//! symlink already in ROOT that points outside it, bytes after the NUL of a
//! header field) have their own tests.
#![allow(clippy::print_stderr)] // the observed error of each case is shown with --nocapture

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// The documented exit status for errors (README, `vartree --help`).
const EXIT_ERROR: i32 = 2;

/// Hints (the "what to do" part of each error).
const HOSTILE: &str = "the image is malformed or hostile: do not install it";
const DAMAGED: &str = "the package is damaged or incomplete: download or build it again";
const BOMB: &str = "the package may be a decompression bomb";
const TAMPERED: &str = "the package is corrupt or was tampered with: download or build it again";
const CONTAINER: &str = "the container is not a valid gpkg-1 package";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> PathBuf {
    let p = repo().join("../shared/corpora/binpkgs");
    assert!(
        p.is_dir(),
        "{} is missing: shared/ must sit beside the repository",
        p.display()
    );
    p
}

fn is_root() -> bool {
    // The owner of a file we create is our effective uid.
    let t = tempfile::NamedTempFile::new().unwrap();
    t.as_file().metadata().unwrap().uid() == 0
}

// ---------------------------------------------------------------------------
// The world: ROOT with an installed package, a canary beside it.

struct World {
    t: tempfile::TempDir,
    root: PathBuf,
    canary: PathBuf,
    cases: std::cell::Cell<usize>,
}

#[derive(PartialEq, Debug)]
struct State {
    root: Snapshot,
    canary: Snapshot,
    /// The names beside ROOT (nothing may appear next to it).
    siblings: Vec<String>,
}

/// The installed package every ROOT starts with.
fn base_package(dir: &Path) -> PathBuf {
    let p = "image";
    let mut t = Tar::new();
    t.dir(p)
        .dir(format!("{p}/etc"))
        .file(format!("{p}/etc/base.conf"), b"setting = 1\n")
        .dir(format!("{p}/usr"))
        .dir(format!("{p}/usr/bin"))
        .file_mode(
            format!("{p}/usr/bin/base"),
            b"#!/bin/sh\necho base\n",
            0o755,
        )
        .symlink(format!("{p}/usr/bin/base-alias"), "base")
        .hardlink(
            format!("{p}/usr/bin/base-hard"),
            format!("{p}/usr/bin/base"),
        )
        .dir(format!("{p}/usr/share"))
        .dir(format!("{p}/usr/share/base"))
        .dir(format!("{p}/usr/share/base/empty"))
        .file(format!("{p}/usr/share/base/data"), &[0x5a; 3000]);
    Gpkg::new(
        "base-1",
        &metadata("app-misc", "base-1", 3000 + 12 + 20),
        zstd(&t.finish()),
    )
    .write(dir)
}

impl World {
    fn new() -> World {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let canary = t.path().join("canary");
        for d in ["etc", "home/user", "var/log"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("etc/hostname"), "host\n").unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(root.join("home/user/notes"), "private\n").unwrap();
        fs::set_permissions(
            root.join("home/user/notes"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if is_root() {
            std::os::unix::fs::chown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
        }
        fs::create_dir_all(canary.join("sub")).unwrap();
        fs::write(canary.join("secret"), "canary secret\n").unwrap();
        fs::set_permissions(canary.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(canary.join("sub/file"), "canary file\n").unwrap();
        std::os::unix::fs::symlink("secret", canary.join("link")).unwrap();
        let w = World {
            t,
            root,
            canary,
            cases: std::cell::Cell::new(0),
        };
        let base = base_package(&w.dir());
        let o = w.install(&base, &[]);
        assert!(o.status.success(), "base package: {}", text(&o.stderr));
        w
    }

    /// A fresh directory for one package (beside ROOT, not in it).
    fn dir(&self) -> PathBuf {
        let n = self.cases.get();
        self.cases.set(n + 1);
        let d = self.t.path().join("pkgs").join(n.to_string());
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn vartree<I, S>(&self, args: I, env: &[(&str, &str)]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("ROOT")
            .env_remove("EPREFIX")
            .env_remove("VARTREE_NO_OPENAT2");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn install(&self, pkg: &Path, extra: &[&str]) -> Output {
        self.install_env(pkg, extra, &[])
    }

    fn install_env(&self, pkg: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args: Vec<&OsStr> = vec!["install".as_ref(), "--sync".as_ref(), "never".as_ref()];
        args.extend(extra.iter().map(|s| OsStr::new(*s)));
        args.push(pkg.as_os_str());
        self.vartree(args, env)
    }

    fn state(&self) -> State {
        let mut siblings: Vec<String> = fs::read_dir(self.t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        siblings.sort();
        State {
            root: snapshot(&self.root),
            canary: snapshot(&self.canary),
            siblings,
        }
    }

    /// Problems with `now` against `before`: ROOT, the VDB, staging
    /// leftovers, the canary, new names beside ROOT.
    fn untouched(&self, before: &State, now: &State) -> Vec<String> {
        let mut bad = Vec::new();
        let vdb = |s: &Snapshot| -> Snapshot {
            s.iter()
                .filter(|(p, _)| p.starts_with("var/db/pkg"))
                .map(|(p, n)| (p.clone(), n.clone()))
                .collect()
        };
        let d = diff(&vdb(&before.root), &vdb(&now.root));
        if !d.is_empty() {
            bad.push(format!("VDB changed:\n  {}", d.join("\n  ")));
        }
        let d = diff(&before.root, &now.root);
        if !d.is_empty() {
            bad.push(format!("ROOT changed:\n  {}", d.join("\n  ")));
        }
        let staging: Vec<_> = now
            .root
            .keys()
            .filter(|p| {
                p.starts_with("var/db/.vartree")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("unpack-"))
            })
            .collect();
        if !staging.is_empty() {
            bad.push(format!("staging leftovers: {staging:?}"));
        }
        let d = diff(&before.canary, &now.canary);
        if !d.is_empty() {
            bad.push(format!(
                "CANARY (outside ROOT) changed:\n  {}",
                d.join("\n  ")
            ));
        }
        if before.siblings != now.siblings {
            bad.push(format!(
                "names beside ROOT changed: {:?} -> {:?}",
                before.siblings, now.siblings
            ));
        }
        bad
    }

    fn canary_str(&self) -> String {
        self.canary.to_str().unwrap().to_owned()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// Cases

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fmt {
    Gpkg,
    Xpak,
}

/// What a case's image builder gets: the format's prefix (`image` or `.`)
/// and the canary's absolute path.
struct Ctx {
    fmt: Fmt,
    canary: String,
}

impl Ctx {
    /// The archive name of an image path.
    fn n(&self, rel: &str) -> String {
        match self.fmt {
            Fmt::Gpkg => format!("image/{rel}"),
            Fmt::Xpak => format!("./{rel}"),
        }
    }

    /// The image root entry's name.
    fn p(&self) -> &'static str {
        match self.fmt {
            Fmt::Gpkg => "image",
            Fmt::Xpak => ".",
        }
    }

    /// A tar that starts with the image root directory.
    fn tar(&self) -> Tar {
        let mut t = Tar::new();
        t.dir(self.p());
        t
    }
}

/// A hostile image, built for each format.
struct ImageCase {
    name: &'static str,
    /// The image stream as stored (compressed).
    image: fn(&Ctx) -> Vec<u8>,
    /// Substrings stderr must contain (besides the package path and member).
    expect: &'static [&'static str],
    gpkg_only: bool,
}

fn img(
    name: &'static str,
    expect: &'static [&'static str],
    image: fn(&Ctx) -> Vec<u8>,
) -> ImageCase {
    ImageCase {
        name,
        image,
        expect,
        gpkg_only: false,
    }
}

/// The metadata of every hostile package.
fn hostile_meta() -> Meta {
    metadata("app-misc", "hostile-1", 1000)
}

fn image_cases() -> Vec<ImageCase> {
    let mut v = vec![
        // ---- absolute names
        img(
            "absolute name",
            &["absolute path", "canary/pwned", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(format!("{}/pwned", c.canary), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "absolute name in a GNU long name",
            &["absolute path", "/pwned", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(format!("{}/{}pwned", c.canary, "d/".repeat(60)), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "absolute name in a PAX path",
            &["absolute path", "canary/pwned", HOSTILE],
            |c| {
                let mut t = c.tar();
                let p = format!("{}/pwned", c.canary);
                t.pax(&[("path", p.as_bytes())]).file(c.n("innocent"), b"x");
                zstd(&t.finish())
            },
        ),
        // ---- '..'
        img(
            "'..' escaping ROOT",
            &["'..' path component", "../canary/pwned", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("../canary/pwned"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "'..' escaping the staging directory",
            &["'..' path component", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n(&format!("{}canary/pwned", "../".repeat(6))), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "'..' below a directory",
            &["'..' path component", "usr/../../canary/pwned", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.dir(c.n("usr")).file(c.n("usr/../../canary/pwned"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "'..' hidden in the USTAR prefix field",
            &["'..' path component", HOSTILE],
            |c| {
                let mut t = c.tar();
                let h = Hdr {
                    size: 1,
                    prefix: c.n("..").into_bytes(),
                    ..Hdr::new("canary/pwned", b'0', 0o644)
                };
                t.entry(h, b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "'..' in a PAX path",
            &["'..' path component", "../canary/pwned", HOSTILE],
            |c| {
                let mut t = c.tar();
                let p = c.n("../canary/pwned");
                t.pax(&[("path", p.as_bytes())]).file(c.n("innocent"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "'..' in a GNU long name",
            &["'..' path component", HOSTILE],
            |c| {
                let mut t = c.tar();
                let deep = "d/".repeat(60);
                t.file(
                    c.n(&format!("{deep}{}canary/pwned", "../".repeat(62))),
                    b"x",
                );
                zstd(&t.finish())
            },
        ),
        // ---- duplicates
        img(
            "duplicate member",
            &["duplicate path", "etc/dup", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.dir(c.n("etc"))
                    .file(c.n("etc/dup"), b"first")
                    .file(c.n("etc/dup"), b"second");
                zstd(&t.finish())
            },
        ),
        img(
            "duplicate member spelled differently (.//)",
            &["duplicate path", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("dup"), b"first").file(c.n(".//dup"), b"second");
                zstd(&t.finish())
            },
        ),
        img(
            "file duplicating a directory",
            &["duplicate path", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.dir(c.n("d")).file(c.n("d"), b"x");
                zstd(&t.finish())
            },
        ),
        // ---- hard links
        img(
            "hard link to a member not yet seen",
            &["hard link to", "which is not an earlier entry", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.hardlink(c.n("a"), c.n("b")).file(c.n("b"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "hard link to a member that never appears",
            &[
                "hard link to",
                "ghost",
                "which is not an earlier entry",
                HOSTILE,
            ],
            |c| {
                let mut t = c.tar();
                t.hardlink(c.n("a"), c.n("ghost"));
                zstd(&t.finish())
            },
        ),
        img(
            "hard link outside the image ('..')",
            &[
                "hard link to",
                "canary/secret",
                "outside the image",
                HOSTILE,
            ],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a"), b"x")
                    .hardlink(c.n("b"), c.n("../canary/secret"));
                zstd(&t.finish())
            },
        ),
        img(
            "hard link outside the image (absolute)",
            &[
                "hard link to",
                "canary/secret",
                "outside the image",
                HOSTILE,
            ],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a"), b"x")
                    .hardlink(c.n("b"), format!("{}/secret", c.canary));
                zstd(&t.finish())
            },
        ),
        img(
            "hard link to a directory",
            &["hard link to the directory", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.dir(c.n("d")).hardlink(c.n("h"), c.n("d"));
                zstd(&t.finish())
            },
        ),
        img(
            "hard link whose target goes through a symlink",
            &["hard link to", "which is not an earlier entry", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.symlink(c.n("a"), &c.canary)
                    .hardlink(c.n("h"), c.n("a/secret"));
                zstd(&t.finish())
            },
        ),
        // ---- writes through symlinks of the archive
        img(
            "file through a symlink to an absolute path outside",
            &["would be written through the symlink", "a/pwned", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.symlink(c.n("a"), &c.canary).file(c.n("a/pwned"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "file through a relative symlink climbing out",
            &["would be written through the symlink", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.symlink(c.n("a"), "../../canary")
                    .file(c.n("a/pwned"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "directory through a symlink",
            &["would be written through the symlink", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.symlink(c.n("a"), &c.canary).dir(c.n("a/sub2"));
                zstd(&t.finish())
            },
        ),
        img(
            "hard link through a symlink",
            &["would be written through the symlink", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("f"), b"x")
                    .symlink(c.n("a"), &c.canary)
                    .hardlink(c.n("a/pwned"), c.n("f"));
                zstd(&t.finish())
            },
        ),
        img(
            "file through a chain of symlinks",
            &["would be written through the symlink", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.symlink(c.n("end"), &c.canary)
                    .symlink(c.n("mid"), "end")
                    .file(c.n("mid/pwned"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "file replacing a symlink of the archive",
            &["duplicate path", "link", HOSTILE],
            |c| {
                let mut t = c.tar();
                let s = format!("{}/secret", c.canary);
                t.symlink(c.n("link"), s).file(c.n("link"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "symlink replacing a directory already used",
            &[
                "replaces a directory that earlier entries were placed in",
                HOSTILE,
            ],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a/b"), b"x").symlink(c.n("a"), &c.canary);
                zstd(&t.finish())
            },
        ),
        img(
            "file below a file",
            &["parent \"f\" is not a directory", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("f"), b"x").file(c.n("f/x"), b"y");
                zstd(&t.finish())
            },
        ),
        img(
            "image root is a symlink",
            &["the image root is not a directory", HOSTILE],
            |c| {
                let mut t = Tar::new();
                t.symlink(c.p(), &c.canary);
                zstd(&t.finish())
            },
        ),
        // ---- sizes that lie
        img(
            "header size larger than the data (stream cut short)",
            &["truncated", DAMAGED],
            |c| {
                let mut t = c.tar();
                let h = Hdr {
                    size: 1000,
                    ..Hdr::new(c.n("a"), b'0', 0o644)
                };
                t.entry(h, &[7u8; 100]);
                // No padding to 1000, no end marker: the stream just ends.
                let mut s = t.unfinished();
                s.truncate(512 * 2 + 100);
                zstd(&s)
            },
        ),
        img(
            "header size smaller than the data (the rest parses as a header)",
            &["malformed tar archive", DAMAGED],
            |c| {
                let mut t = c.tar();
                let h = Hdr {
                    size: 10,
                    ..Hdr::new(c.n("a"), b'0', 0o644)
                };
                t.entry(h, &[0x41u8; 10]).raw(&[0x41u8; 600]);
                zstd(&t.finish())
            },
        ),
        img(
            "declared size beyond every limit (1 TiB header, no data)",
            &[
                "refused: more file content than the package's SIZE (1000 bytes) allows",
                BOMB,
            ],
            |c| {
                let mut t = c.tar();
                let h = Hdr {
                    size: 1 << 40,
                    ..Hdr::new(c.n("big"), b'0', 0o644)
                };
                t.entry(h, &[]);
                zstd(&t.finish())
            },
        ),
        // ---- decompression bombs
        img(
            "decompression bomb: 100 MiB of zeros in a few KiB",
            &[
                "refused: more file content than the package's SIZE (1000 bytes) allows",
                BOMB,
            ],
            |c| {
                let mut t = c.tar();
                let h = Hdr {
                    size: 100 << 20,
                    ..Hdr::new(c.n("zeros"), b'0', 0o644)
                };
                t.entry(h, &[]);
                Zstd::new()
                    .raw(&t.unfinished())
                    .rle(0, (100 << 20) + 1024)
                    .finish()
            },
        ),
        img(
            "decompression bomb: 300 MiB of zeros after the end-of-archive marker",
            &[
                "refused: expands more than 1000 times its compressed size",
                BOMB,
            ],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a"), b"x");
                Zstd::new().raw(&t.finish()).rle(0, 300 << 20).finish()
            },
        ),
        // ---- CR, LF, NUL
        img(
            "CR in a name",
            &["NUL, CR or LF in the name or link target", "a\\rb", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a\rb"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "LF in a name",
            &["NUL, CR or LF in the name or link target", "a\\nb", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a\nb"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "LF in a directory name",
            &["NUL, CR or LF in the name or link target", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.dir(c.n("d\n")).file(c.n("d\n/x"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "CR in a symlink target",
            &["NUL, CR or LF in the name or link target", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.symlink(c.n("l"), "target\r");
                zstd(&t.finish())
            },
        ),
        img(
            "LF in a hard-link target",
            &["NUL, CR or LF in the name or link target", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a"), b"x").hardlink(c.n("b"), c.n("a\n"));
                zstd(&t.finish())
            },
        ),
        img(
            "NUL inside a PAX path",
            &["NUL, CR or LF in the name or link target", HOSTILE],
            |c| {
                let mut t = c.tar();
                let p = c.n("a\0/../../canary/pwned");
                t.pax(&[("path", p.as_bytes())]).file(c.n("innocent"), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "NUL inside a GNU long name (tar readers would stop at it)",
            &["NUL, CR or LF in the name or link target", HOSTILE],
            |c| {
                let mut t = c.tar();
                let deep = "d/".repeat(60);
                t.file(c.n(&format!("{deep}ok\0/../../canary/pwned")), b"x");
                zstd(&t.finish())
            },
        ),
        img(
            "LF inside a PAX linkpath",
            &["NUL, CR or LF in the name or link target", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.pax(&[("linkpath", b"target\nline")])
                    .symlink(c.n("l"), "target");
                zstd(&t.finish())
            },
        ),
        // ---- devices
        img(
            "character device",
            &["device node", "dev/null", "--allow-devices"],
            |c| {
                let mut t = c.tar();
                t.dir(c.n("dev")).device(c.n("dev/null"), false, 1, 3);
                zstd(&t.finish())
            },
        ),
        img(
            "block device",
            &["device node", "dev/sda", "--allow-devices"],
            |c| {
                let mut t = c.tar();
                t.dir(c.n("dev")).device(c.n("dev/sda"), true, 8, 0);
                zstd(&t.finish())
            },
        ),
        // ---- other things tar readers disagree on
        img(
            "data after the end-of-archive marker",
            &["data after the end-of-archive marker", DAMAGED],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a"), b"x");
                let mut s = t.finish();
                let mut junk = Tar::new();
                junk.file(c.n("smuggled"), b"x");
                s.extend_from_slice(&junk.finish());
                zstd(&s)
            },
        ),
        img(
            "GNU sparse entry",
            &["unsupported tar entry type 'S'"],
            |c| {
                let mut t = c.tar();
                t.entry(Hdr::new(c.n("s"), b'S', 0o644), &[]);
                zstd(&t.finish())
            },
        ),
    ];
    v.push(ImageCase {
        gpkg_only: true,
        ..img(
            "hard link to a path outside image/ (gpkg)",
            &["hard link to", "outside the image", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file(c.n("a"), b"x").hardlink(c.n("b"), "etc/passwd");
                zstd(&t.finish())
            },
        )
    });
    v.push(ImageCase {
        gpkg_only: true,
        ..img(
            "entry outside image/ (gpkg)",
            &["outside the image/ directory", HOSTILE],
            |c| {
                let mut t = c.tar();
                t.file("etc/passwd", b"x");
                zstd(&t.finish())
            },
        )
    });
    v
}

fn write_pkg(dir: &Path, fmt: Fmt, image_stored: Vec<u8>, meta: &Meta) -> PathBuf {
    let pf = std::str::from_utf8(&meta.iter().find(|(k, _)| k == "PF").unwrap().1)
        .unwrap()
        .trim()
        .to_owned();
    match fmt {
        Fmt::Gpkg => Gpkg::new(&pf, meta, image_stored).write(dir),
        Fmt::Xpak => {
            let p = dir.join(format!("{pf}-1.xpak"));
            fs::write(&p, xpak_bytes(&image_stored, &xpak_block(meta))).unwrap();
            p
        }
    }
}

/// One refused install to check.
struct Refused {
    name: String,
    pkg: PathBuf,
    /// The member the error must name.
    member: Option<&'static str>,
    expect: Vec<&'static str>,
    args: Vec<String>,
}

/// Install `r` (then again with `--pretend`); return what is wrong.
fn check_refused(w: &World, before: &State, r: &Refused) -> Vec<String> {
    let mut bad = Vec::new();
    for pretend in [false, true] {
        let mut args: Vec<&str> = r.args.iter().map(String::as_str).collect();
        if pretend {
            args.push("--pretend");
        }
        let o = w.install(&r.pkg, &args);
        let err = text(&o.stderr);
        let label = format!("{}{}", r.name, if pretend { " (--pretend)" } else { "" });
        if !pretend {
            eprintln!("[{}] {}", r.name, err.trim_end());
        }
        if o.status.code() != Some(EXIT_ERROR) {
            bad.push(format!(
                "{label}: exit status {:?}, expected {EXIT_ERROR}\n{err}",
                o.status.code()
            ));
        }
        let mut want: Vec<String> =
            vec!["vartree: error: ".to_owned(), r.pkg.display().to_string()];
        if let Some(m) = r.member {
            want.push(format!(": {m}: "));
        }
        want.extend(r.expect.iter().map(|s| (*s).to_owned()));
        for s in want {
            if !err.contains(&s) {
                bad.push(format!("{label}: stderr lacks {s:?}:\n{err}"));
            }
        }
        if err.contains("panicked") || err.lines().count() != 1 {
            bad.push(format!("{label}: expected one error line:\n{err}"));
        }
        if !o.stdout.is_empty() {
            bad.push(format!("{label}: stdout: {}", text(&o.stdout)));
        }
        let now = w.state();
        for p in w.untouched(before, &now) {
            bad.push(format!("{label}: {p}"));
        }
    }
    bad
}

fn member_of(fmt: Fmt) -> &'static str {
    match fmt {
        Fmt::Gpkg => "image.tar.zst",
        Fmt::Xpak => "image tar",
    }
}

#[test]
fn hostile_images_are_refused_and_nothing_is_touched() {
    let w = World::new();
    let before = w.state();
    let mut bad = Vec::new();
    let mut ran = 0;
    for fmt in [Fmt::Gpkg, Fmt::Xpak] {
        let ctx = Ctx {
            fmt,
            canary: w.canary_str(),
        };
        for c in image_cases() {
            if c.gpkg_only && fmt == Fmt::Xpak {
                continue;
            }
            let pkg = write_pkg(&w.dir(), fmt, (c.image)(&ctx), &hostile_meta());
            let r = Refused {
                name: format!("{fmt:?}: {}", c.name),
                pkg,
                member: Some(member_of(fmt)),
                expect: c.expect.to_vec(),
                args: Vec::new(),
            };
            bad.extend(check_refused(&w, &before, &r));
            ran += 1;
        }
    }
    assert!(ran > 80, "{ran}");
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

/// Damaged containers, Manifests and XPAK blocks.
#[test]
fn damaged_packages_are_refused_and_nothing_is_touched() {
    let w = World::new();
    let before = w.state();
    let meta = hostile_meta();
    let image = {
        let ctx = Ctx {
            fmt: Fmt::Gpkg,
            canary: w.canary_str(),
        };
        let mut t = ctx.tar();
        t.dir(ctx.n("etc")).file(ctx.n("etc/ok"), &[b'o'; 900]);
        zstd(&t.finish())
    };
    let good = Gpkg::new("hostile-1", &meta, image.clone());
    let ximage = {
        let ctx = Ctx {
            fmt: Fmt::Xpak,
            canary: w.canary_str(),
        };
        let mut t = ctx.tar();
        t.dir(ctx.n("etc")).file(ctx.n("etc/ok"), &[b'o'; 900]);
        zstd(&t.finish())
    };
    let block = xpak_block(&meta);
    let xgood = xpak_bytes(&ximage, &block);

    let cases = std::cell::RefCell::new(Vec::<Refused>::new());
    let gpkg = |name: &str,
                member: Option<&'static str>,
                expect: &[&'static str],
                f: &dyn Fn(&mut Gpkg) -> Vec<u8>| {
        let dir = w.dir();
        let mut g = good.clone();
        let bytes = f(&mut g);
        let p = dir.join("hostile-1.gpkg.tar");
        fs::write(&p, bytes).unwrap();
        cases.borrow_mut().push(Refused {
            name: format!("Gpkg: {name}"),
            pkg: p,
            member,
            expect: expect.to_vec(),
            args: Vec::new(),
        });
    };
    let set_args = |args: Vec<String>| cases.borrow_mut().last_mut().unwrap().args = args;
    gpkg(
        "truncated package file (cut inside the image member)",
        Some("image.tar.zst"),
        &["truncated", DAMAGED],
        &|g| {
            let b = g.bytes();
            let image_at = 512 * 4 + g.members[1].1.len().div_ceil(512) * 512;
            b[..image_at + 100].to_vec()
        },
    );
    gpkg(
        "truncated package file (cut before the Manifest)",
        None,
        &["no Manifest member", CONTAINER],
        &|g| {
            let b = g.bytes();
            let manifest = g.members.last().unwrap().1.len().div_ceil(512) * 512;
            b[..b.len() - 1024 - manifest - 512].to_vec()
        },
    );
    gpkg(
        "corrupted Manifest hash (SHA512 of the image)",
        Some("image.tar.zst"),
        &["SHA512 hash mismatch", TAMPERED],
        &|g| {
            let m = g.member_mut("Manifest");
            let s = String::from_utf8(m.clone()).unwrap();
            let line = s.lines().find(|l| l.contains("image.tar.zst")).unwrap();
            let h = sha512_hex(b"not the image");
            let fixed = line
                .split(' ')
                .enumerate()
                .map(|(i, f)| if i == 4 { h.clone() } else { f.to_owned() })
                .collect::<Vec<_>>()
                .join(" ");
            *m = s.replace(line, &fixed).into_bytes();
            g.bytes()
        },
    );
    gpkg(
        "corrupted Manifest hash (BLAKE2B of the metadata)",
        Some("metadata.tar.zst"),
        &["BLAKE2B hash mismatch", TAMPERED],
        &|g| {
            let m = g.member_mut("Manifest");
            let s = String::from_utf8(m.clone()).unwrap();
            let line = s.lines().find(|l| l.contains("metadata.tar.zst")).unwrap();
            let h = blake2b_hex(b"not the metadata");
            let fixed = line
                .split(' ')
                .enumerate()
                .map(|(i, f)| if i == 6 { h.clone() } else { f.to_owned() })
                .collect::<Vec<_>>()
                .join(" ");
            *m = s.replace(line, &fixed).into_bytes();
            g.bytes()
        },
    );
    gpkg(
        "image changed after the Manifest was made",
        Some("image.tar.zst"),
        &["hash mismatch", TAMPERED],
        &|g| {
            let img = g.member_mut("image.tar.zst");
            let last = img.len() - 10;
            img[last] ^= 0x20;
            g.bytes()
        },
    );
    gpkg(
        "Manifest size that lies",
        Some("image.tar.zst"),
        &["differs from the Manifest", TAMPERED],
        &|g| {
            let len = g.member_mut("image.tar.zst").len();
            let m = g.member_mut("Manifest");
            let s = String::from_utf8(m.clone()).unwrap();
            *m = s
                .replace(
                    &format!("image.tar.zst {len} "),
                    &format!("image.tar.zst {} ", len + 1),
                )
                .into_bytes();
            g.bytes()
        },
    );
    gpkg(
        "duplicate container member",
        None,
        &["duplicate member", CONTAINER],
        &|g| {
            let dup = g.members[2].clone();
            g.members.insert(3, dup);
            g.remanifest(None);
            g.bytes()
        },
    );
    gpkg(
        "container member with '..'",
        None,
        &["hostile-1/../gpkg-1", CONTAINER],
        &|g| {
            g.members[0].0 = "hostile-1/../gpkg-1".into();
            g.remanifest(None);
            g.bytes()
        },
    );
    gpkg(
        "absolute container member name",
        None,
        &["/hostile-1/gpkg-1", CONTAINER],
        &|g| {
            g.members[0].0 = "/hostile-1/gpkg-1".into();
            g.remanifest(None);
            g.bytes()
        },
    );
    gpkg(
        "unsigned package when signatures are required (no keyring)",
        Some("Manifest"),
        &["signature missing", "binpkg-request-signature"],
        &|g| g.bytes(),
    );
    set_args(vec!["--signature".into(), "required".into()]);
    gpkg(
        "unsigned package when signatures are required (with a keyring)",
        Some("Manifest"),
        &["signature missing", "binpkg-request-signature"],
        &|g| g.bytes(),
    );
    set_args(vec![
        "--signature".into(),
        "required".into(),
        "--keyring".into(),
        corpus()
            .join("test-keys/trusted-pub.asc")
            .to_str()
            .unwrap()
            .into(),
    ]);

    let xpak =
        |name: &str, member: Option<&'static str>, expect: &[&'static str], bytes: Vec<u8>| {
            let p = w.dir().join("hostile-1-1.xpak");
            fs::write(&p, bytes).unwrap();
            cases.borrow_mut().push(Refused {
                name: format!("Xpak: {name}"),
                pkg: p,
                member,
                expect: expect.to_vec(),
                args: Vec::new(),
            });
        };
    xpak(
        "truncated package file (the trailer cut off)",
        Some("XPAK block"),
        &["malformed XPAK", DAMAGED],
        xgood[..xgood.len() - 5].to_vec(),
    );
    xpak(
        "truncated tar part (trailer intact)",
        Some("image tar"),
        &["cannot decompress (zstd)", "download or build it again"],
        {
            let mut cut = ximage[..ximage.len() / 2].to_vec();
            cut.truncate(ximage.len() / 2);
            xpak_bytes(&cut, &block)
        },
    );
    xpak(
        "index offset pointing past the data segment",
        Some("XPAK block"),
        &["lies outside the", DAMAGED],
        {
            let mut b = block.clone();
            // The first record's offset (after its 4-byte name length and name).
            let name_len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
            let at = 20 + name_len;
            b[at..at + 4].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
            xpak_bytes(&ximage, &b)
        },
    );
    xpak(
        "index length that does not fill the block",
        Some("XPAK block"),
        &["do not fill", DAMAGED],
        {
            let mut b = block.clone();
            let il = u32::from_be_bytes(b[8..12].try_into().unwrap());
            b[8..12].copy_from_slice(&(il + 40).to_be_bytes());
            xpak_bytes(&ximage, &b)
        },
    );
    xpak(
        "trailer length larger than the file",
        Some("XPAK block"),
        &["exceeds the file size", DAMAGED],
        {
            let mut x = xgood.clone();
            let n = x.len();
            x[n - 8..n - 4].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
            x
        },
    );
    xpak(
        "trailer length pointing inside the tar part",
        Some("XPAK block"),
        &["malformed XPAK", DAMAGED],
        {
            let mut x = xgood.clone();
            let n = x.len();
            x[n - 8..n - 4].copy_from_slice(&((block.len() + 64) as u32).to_be_bytes());
            x
        },
    );
    xpak(
        "xpak when signatures are required",
        None,
        &["xpak packages cannot be signed"],
        xgood.clone(),
    );
    set_args(vec!["--signature".into(), "required".into()]);

    let mut bad = Vec::new();
    for r in cases.borrow().iter() {
        bad.extend(check_refused(&w, &before, r));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

/// Signed packages with signatures that must not be accepted.
#[test]
fn bad_signatures_are_refused_and_nothing_is_touched() {
    let w = World::new();
    let before = w.state();
    let keys = corpus().join("test-keys");
    let key = TestKey::generate("vartree install_hostile <test@example.org>");
    let keyring = w.t.path().join("pkgs/test-key.asc");
    fs::create_dir_all(keyring.parent().unwrap()).unwrap();
    fs::write(&keyring, key.public_armored()).unwrap();
    let keyring = keyring.to_str().unwrap().to_owned();
    let meta = hostile_meta();
    let image = {
        let ctx = Ctx {
            fmt: Fmt::Gpkg,
            canary: w.canary_str(),
        };
        let mut t = ctx.tar();
        t.file(ctx.n("signed"), b"signed content\n");
        zstd(&t.finish())
    };
    let mut signed = Gpkg::new("hostile-1", &meta, image);
    signed.sign(&key);
    let required = |k: &str| {
        vec![
            "--signature".to_owned(),
            "required".to_owned(),
            "--keyring".to_owned(),
            k.to_owned(),
        ]
    };
    let mut cases = Vec::new();

    // Portage's signed corpus package, with only the untrusted key.
    let dir = w.dir();
    let corpus_signed = dir.join("refpkg-1.0-r1.gpkg.tar");
    fs::copy(
        corpus().join("portage-generated/refpkg-1.0-r1-zstd-signed.gpkg.tar"),
        &corpus_signed,
    )
    .unwrap();
    let untrusted = keys.join("untrusted-pub.asc").to_str().unwrap().to_owned();
    cases.push(Refused {
        name: "signed by a key not in the keyring (required)".into(),
        pkg: corpus_signed.clone(),
        member: Some("Manifest"),
        expect: vec!["signature not trusted", "keyring"],
        args: required(&untrusted),
    });
    cases.push(Refused {
        name: "signed by a key not in the keyring (if-present)".into(),
        pkg: corpus_signed.clone(),
        member: Some("Manifest"),
        expect: vec!["signature not trusted", "keyring"],
        args: vec!["--keyring".into(), untrusted.clone()],
    });
    cases.push(Refused {
        name: "signed, no keyring given (if-present)".into(),
        pkg: corpus_signed,
        member: Some("Manifest"),
        expect: vec!["no trusted keyring", "keyring"],
        args: Vec::new(),
    });

    // The image's detached signature is a good signature of other data.
    let mut g = signed.clone();
    let meta_bytes = g.member_mut("metadata.tar.zst").clone();
    *g.member_mut("image.tar.zst.sig") = key.detach_sign(&meta_bytes);
    g.remanifest(Some(&key));
    cases.push(Refused {
        name: "image signature made over other data (required)".into(),
        pkg: g.write(&w.dir()),
        member: Some("image.tar.zst.sig"),
        expect: vec![
            "bad signature",
            "does not match the signed data",
            "do not install it",
        ],
        args: required(&keyring),
    });

    // The Manifest's text changed after signing.
    let mut g = signed.clone();
    let m = g.member_mut("Manifest");
    let s = String::from_utf8(m.clone()).unwrap();
    *m = s
        .replacen("DATA gpkg-1 0", "DATA gpkg-1 0 ", 1)
        .into_bytes();
    cases.push(Refused {
        name: "Manifest edited after it was clear-signed (required)".into(),
        pkg: g.write(&w.dir()),
        member: Some("Manifest"),
        expect: vec![
            "bad signature",
            "does not match the signed data",
            "do not install it",
        ],
        args: required(&keyring),
    });

    // Signed with our key, verified against Portage's trusted test key only.
    let trusted = keys.join("trusted-pub.asc").to_str().unwrap().to_owned();
    cases.push(Refused {
        name: "signed by a key the keyring does not hold (required)".into(),
        pkg: signed.write(&w.dir()),
        member: Some("Manifest"),
        expect: vec!["signature not trusted", "keyring"],
        args: required(&trusted),
    });

    // A detached signature missing while the Manifest is signed.
    let mut g = signed.clone();
    g.members.retain(|(n, _)| !n.ends_with("image.tar.zst.sig"));
    g.remanifest(Some(&key));
    cases.push(Refused {
        name: "image signature missing (required)".into(),
        pkg: g.write(&w.dir()),
        member: None,
        expect: vec!["signature missing", "image.tar.zst"],
        args: required(&keyring),
    });

    let mut bad = Vec::new();
    for r in &cases {
        bad.extend(check_refused(&w, &before, r));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));

    // The control: the same signed package is accepted with its key.
    let pkg = signed.write(&w.dir());
    let o = w.install(
        &pkg,
        &required(&keyring)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        fs::read(w.root.join("signed")).unwrap(),
        b"signed content\n"
    );
    let now = w.state();
    assert_eq!(diff(&before.canary, &now.canary), Vec::<String>::new());
    assert_eq!(before.siblings, now.siblings);
}

// ---------------------------------------------------------------------------
// What is not refused

/// ROOT's changes from `before` to `now`: (path, "added" | "changed" |
/// "removed"). The canary and the names beside ROOT must not change.
fn root_changes(before: &State, now: &State) -> Vec<(PathBuf, &'static str)> {
    let d = diff(&before.canary, &now.canary);
    assert!(
        d.is_empty(),
        "CANARY (outside ROOT) changed:\n{}",
        d.join("\n")
    );
    assert_eq!(before.siblings, now.siblings, "names beside ROOT changed");
    let mut out = Vec::new();
    for (p, a) in &before.root {
        match now.root.get(p) {
            None => out.push((p.clone(), "removed")),
            Some(b) if a != b => out.push((p.clone(), "changed")),
            Some(_) => {}
        }
    }
    for p in now.root.keys().filter(|p| !before.root.contains_key(*p)) {
        out.push((p.clone(), "added"));
    }
    out
}

/// The changes an install of `cpv` may make besides its own files: its VDB
/// entry, the global counter, and the mtime/ctime of the directories it adds
/// entries to.
fn check_changes(
    w: &World,
    before: &State,
    cpv: &str,
    files: &[&str],
) -> Vec<(PathBuf, &'static str)> {
    let now = w.state();
    let changes = root_changes(before, &now);
    let vdb = Path::new("var/db/pkg").join(cpv);
    for (p, what) in &changes {
        let ok = match *what {
            "added" => {
                p.starts_with(&vdb)
                    || Some(p.as_path()) == vdb.parent()
                    || files.iter().any(|f| Path::new(f) == p)
            }
            "changed" if p == Path::new("var/cache/edb/counter") => true,
            "changed" => {
                // Only a directory's times may change (an entry was added).
                let (a, b) = (&before.root[p], &now.root[p]);
                a.kind == "dir"
                    && Node {
                        mtime: b.mtime,
                        ctime: b.ctime,
                        size: b.size,
                        nlink: b.nlink,
                        ..a.clone()
                    } == *b
            }
            _ => false,
        };
        assert!(
            ok,
            "unexpected: {what} /{}\nall changes: {changes:?}",
            p.display()
        );
    }
    for f in files {
        assert!(
            changes
                .iter()
                .any(|(p, w)| p == Path::new(f) && *w == "added"),
            "{f} not installed: {changes:?}"
        );
    }
    changes
}

fn contents(w: &World, cpv: &str) -> String {
    fs::read_to_string(w.root.join("var/db/pkg").join(cpv).join("CONTENTS")).unwrap()
}

#[test]
fn fifos_install_and_are_recorded_in_contents() {
    let w = World::new();
    for fmt in [Fmt::Gpkg, Fmt::Xpak] {
        let ctx = Ctx {
            fmt,
            canary: w.canary_str(),
        };
        let name = format!("fifo-{}", if fmt == Fmt::Gpkg { "g" } else { "x" });
        let pf = format!("{name}-1");
        let mut t = ctx.tar();
        t.dir(ctx.n("run"))
            .fifo(ctx.n(&format!("run/{name}.pipe")), 0o640)
            .file(ctx.n(&format!("run/{name}.txt")), b"beside the fifo\n");
        let pkg = write_pkg(
            &w.dir(),
            fmt,
            zstd(&t.finish()),
            &metadata("app-misc", &pf, 16),
        );
        // --pretend on a valid package touches nothing either.
        let before = w.state();
        let o = w.install(&pkg, &["--pretend"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(&format!("would install app-misc/{pf}")),
            "{}",
            text(&o.stderr)
        );
        assert_eq!(w.untouched(&before, &w.state()), Vec::<String>::new());

        let o = w.install(&pkg, &[]);
        assert!(o.status.success(), "{fmt:?}: {}", text(&o.stderr));
        let fifo = format!("run/{name}.pipe");
        let txt = format!("run/{name}.txt");
        let mut expect = vec![fifo.as_str(), txt.as_str()];
        if fmt == Fmt::Gpkg {
            expect.push("run");
        }
        check_changes(&w, &before, &format!("app-misc/{pf}"), &expect);
        let m = fs::symlink_metadata(w.root.join(&fifo)).unwrap();
        assert!(m.file_type().is_fifo(), "{fmt:?}");
        assert_eq!(m.mode() & 0o7777, 0o640);
        let c = contents(&w, &format!("app-misc/{pf}"));
        assert!(
            c.lines().any(|l| l == format!("fif /{fifo}")),
            "{fmt:?}:\n{c}"
        );
        eprintln!("[{fmt:?}: FIFO] installed; CONTENTS:\n{c}");
    }
}

#[test]
fn devices_install_only_with_allow_devices() {
    let w = World::new();
    for fmt in [Fmt::Gpkg, Fmt::Xpak] {
        let ctx = Ctx {
            fmt,
            canary: w.canary_str(),
        };
        let name = if fmt == Fmt::Gpkg { "g" } else { "x" };
        let pf = format!("dev-{name}-1");
        let mut t = ctx.tar();
        t.dir(ctx.n("dev"))
            .device(ctx.n(&format!("dev/{name}-null")), false, 1, 3)
            .device(ctx.n(&format!("dev/{name}-loop")), true, 7, 200);
        let pkg = write_pkg(
            &w.dir(),
            fmt,
            zstd(&t.finish()),
            &metadata("app-misc", &pf, 0),
        );
        let before = w.state();
        let r = Refused {
            name: format!("{fmt:?}: devices without --allow-devices"),
            pkg: pkg.clone(),
            member: Some(member_of(fmt)),
            expect: vec!["device node", "--allow-devices"],
            args: Vec::new(),
        };
        let bad = check_refused(&w, &before, &r);
        assert!(bad.is_empty(), "{}", bad.join("\n\n"));
        let o = w.install(&pkg, &["--allow-devices"]);
        if !is_root() {
            // mknod needs CAP_MKNOD: refused while unpacking, nothing merged.
            assert_eq!(o.status.code(), Some(EXIT_ERROR), "{}", text(&o.stderr));
            assert!(text(&o.stderr).contains("mknod"), "{}", text(&o.stderr));
            assert_eq!(w.untouched(&before, &w.state()), Vec::<String>::new());
            eprintln!("SKIPPED: not root, device nodes cannot be made");
            continue;
        }
        assert!(o.status.success(), "{fmt:?}: {}", text(&o.stderr));
        let (null, lp) = (format!("dev/{name}-null"), format!("dev/{name}-loop"));
        let mut expect = vec![null.as_str(), lp.as_str()];
        if fmt == Fmt::Gpkg {
            expect.push("dev"); // the first install makes /dev
        }
        check_changes(&w, &before, &format!("app-misc/{pf}"), &expect);
        let m = fs::symlink_metadata(w.root.join(&null)).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), makedev(1, 3));
        let m = fs::symlink_metadata(w.root.join(&lp)).unwrap();
        assert!(m.file_type().is_block_device());
        assert_eq!(m.rdev(), makedev(7, 200));
        let c = contents(&w, &format!("app-misc/{pf}"));
        assert!(c.lines().any(|l| l == format!("dev /{null}")), "{c}");
        assert!(c.lines().any(|l| l == format!("dev /{lp}")), "{c}");
        eprintln!("[{fmt:?}: devices with --allow-devices] installed; CONTENTS:\n{c}");
    }
}

fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

/// Symlinks already in ROOT that point outside it: an absolute one
/// (`/opt -> <canary>`), a relative one climbing out (`/srv -> ../canary`)
/// and one climbing far (`/mnt -> ../../../..<canary>`). A package writing
/// below them is merged with every lookup confined to ROOT (as in a
/// chroot), with `openat2(RESOLVE_IN_ROOT)` and with the component walk.
#[test]
fn symlinks_in_root_pointing_outside_are_confined() {
    for no_openat2 in ["0", "1"] {
        let w = World::new();
        let canary = w.canary_str();
        std::os::unix::fs::symlink(&canary, w.root.join("opt")).unwrap();
        std::os::unix::fs::symlink("../canary", w.root.join("srv")).unwrap();
        let far = format!("{}{}", "../".repeat(12), canary.trim_start_matches('/'));
        std::os::unix::fs::symlink(&far, w.root.join("mnt")).unwrap();
        // Resolved inside ROOT, `../canary/sub` is ROOT/canary/sub, a real
        // directory there (a decoy); outside it would be the canary's sub/.
        fs::create_dir_all(w.root.join("canary/sub")).unwrap();
        std::os::unix::fs::symlink("../canary/sub", w.root.join("data")).unwrap();
        let ctx = Ctx {
            fmt: Fmt::Gpkg,
            canary: canary.clone(),
        };
        let mut t = ctx.tar();
        t.dir(ctx.n("opt"))
            .file(ctx.n("opt/pwned"), b"opt\n")
            .dir(ctx.n("srv"))
            .file(ctx.n("srv/pwned"), b"srv\n")
            .dir(ctx.n("mnt"))
            .file(ctx.n("mnt/pwned"), b"mnt\n")
            .dir(ctx.n("data"))
            .file(ctx.n("data/pwned"), b"data\n");
        let pkg = write_pkg(
            &w.dir(),
            Fmt::Gpkg,
            zstd(&t.finish()),
            &metadata("app-misc", "through-1", 12),
        );
        let before = w.state();
        let o = w.install_env(&pkg, &[], &[("VARTREE_NO_OPENAT2", no_openat2)]);
        let err = text(&o.stderr);
        eprintln!("[ROOT symlinks pointing outside, VARTREE_NO_OPENAT2={no_openat2}]\n{err}");
        assert!(o.status.success(), "{err}");
        // The canary is untouched (checked by root_changes).
        let changes = root_changes(&before, &w.state());
        let r = &w.root;
        // /opt and /mnt resolve, inside ROOT, to nothing: dangling symlinks
        // blocking a directory are kept aside as Portage does, and real
        // directories take their place.
        for (name, target) in [("opt", canary.as_str()), ("mnt", far.as_str())] {
            assert!(err.contains(&format!(
                "installation of a directory is blocked by a file: /{name} will be renamed to {name}.backup.0000"
            )), "{err}");
            assert!(
                fs::symlink_metadata(r.join(name)).unwrap().is_dir(),
                "{name}"
            );
            assert_eq!(
                fs::read_link(r.join(format!("{name}.backup.0000"))).unwrap(),
                Path::new(target)
            );
            assert_eq!(
                fs::read_to_string(r.join(name).join("pwned")).unwrap(),
                format!("{name}\n")
            );
        }
        // /srv and /data resolve, inside ROOT, to directories there: they are
        // followed (like /lib -> usr/lib) and stay symlinks.
        assert_eq!(
            fs::read_link(r.join("srv")).unwrap(),
            Path::new("../canary")
        );
        assert_eq!(
            fs::read_link(r.join("data")).unwrap(),
            Path::new("../canary/sub")
        );
        assert_eq!(fs::read_to_string(r.join("canary/pwned")).unwrap(), "srv\n");
        assert_eq!(
            fs::read_to_string(r.join("canary/sub/pwned")).unwrap(),
            "data\n"
        );
        let c = contents(&w, "app-misc/through-1");
        for p in ["/opt/pwned", "/srv/pwned", "/mnt/pwned", "/data/pwned"] {
            assert!(
                c.lines().any(|l| l.starts_with(&format!("obj {p} "))),
                "{p}:\n{c}"
            );
        }
        let added: Vec<_> = changes
            .iter()
            .filter(|(p, w)| *w == "added" && !p.starts_with("var/db/pkg"))
            .map(|(p, _)| p.to_str().unwrap())
            .collect();
        assert_eq!(
            added,
            [
                "canary/pwned",
                "canary/sub/pwned",
                "mnt/pwned",
                "mnt.backup.0000",
                "opt/pwned",
                "opt.backup.0000"
            ]
        );
    }
}

/// Several packages on one command line, one of them hostile: every package
/// is verified before any is merged, so nothing is installed.
#[test]
fn one_hostile_package_among_several_installs_nothing() {
    let w = World::new();
    let before = w.state();
    let ctx = Ctx {
        fmt: Fmt::Gpkg,
        canary: w.canary_str(),
    };
    let mut t = ctx.tar();
    t.file(ctx.n("good"), b"good\n");
    let good = write_pkg(
        &w.dir(),
        Fmt::Gpkg,
        zstd(&t.finish()),
        &metadata("app-misc", "good-1", 5),
    );
    let picked = [
        "absolute name",
        "hard link to a member not yet seen",
        "decompression bomb: 100 MiB of zeros in a few KiB",
    ];
    let cases = image_cases();
    let cases: Vec<&ImageCase> = cases.iter().filter(|c| picked.contains(&c.name)).collect();
    assert_eq!(cases.len(), picked.len());
    for c in cases {
        let hostile = write_pkg(&w.dir(), Fmt::Gpkg, (c.image)(&ctx), &hostile_meta());
        for order in [[&good, &hostile], [&hostile, &good]] {
            let mut args: Vec<&OsStr> =
                vec!["install".as_ref(), "--sync".as_ref(), "never".as_ref()];
            args.extend(order.iter().map(|p| p.as_os_str()));
            let o = w.vartree(args, &[]);
            let err = text(&o.stderr);
            eprintln!(
                "[several packages, one hostile: {}] {}",
                c.name,
                err.trim_end()
            );
            assert_eq!(o.status.code(), Some(EXIT_ERROR), "{err}");
            assert!(err.contains(&hostile.display().to_string()), "{err}");
            assert_eq!(
                w.untouched(&before, &w.state()),
                Vec::<String>::new(),
                "{}",
                c.name
            );
        }
    }
}

/// Bytes after the NUL that ends a USTAR name or link-name field are not
/// part of the name for any tar reader (GNU tar, Python's tarfile, the tar
/// crate): `image/ok\0/../../canary/pwned` is `image/ok`. Accepted, and
/// only the part before the NUL is used. (A NUL *inside* a PAX path or a
/// GNU long name is refused: see the hostile cases.)
#[test]
fn bytes_after_the_nul_of_a_header_field_are_not_part_of_the_name() {
    let w = World::new();
    for fmt in [Fmt::Gpkg, Fmt::Xpak] {
        let ctx = Ctx {
            fmt,
            canary: w.canary_str(),
        };
        let x = if fmt == Fmt::Gpkg { "g" } else { "x" };
        let pf = format!("nul-{x}-1");
        let mut t = ctx.tar();
        let name = format!("{}\0/../../canary/pwned", ctx.n(&format!("ok-{x}")));
        t.entry(
            Hdr {
                size: 3,
                ..Hdr::new(&name, b'0', 0o644)
            },
            b"ok\n",
        );
        t.entry(
            Hdr {
                link: format!("ok-{x}\0/../../canary/secret").into_bytes(),
                ..Hdr::new(ctx.n(&format!("l-{x}")), b'2', 0o777)
            },
            &[],
        );
        let pkg = write_pkg(
            &w.dir(),
            fmt,
            zstd(&t.finish()),
            &metadata("app-misc", &pf, 3),
        );
        let before = w.state();
        let o = w.install(&pkg, &[]);
        assert!(o.status.success(), "{fmt:?}: {}", text(&o.stderr));
        let (ok, l) = (format!("ok-{x}"), format!("l-{x}"));
        check_changes(&w, &before, &format!("app-misc/{pf}"), &[&ok, &l]);
        assert_eq!(fs::read_to_string(w.root.join(&ok)).unwrap(), "ok\n");
        assert_eq!(fs::read_link(w.root.join(&l)).unwrap(), Path::new(&ok));
        let c = contents(&w, &format!("app-misc/{pf}"));
        assert!(
            c.lines()
                .any(|line| line.starts_with(&format!("obj /{ok} "))),
            "{c}"
        );
        assert!(
            c.lines()
                .any(|line| line.starts_with(&format!("sym /{l} -> {ok} "))),
            "{c}"
        );
    }
}

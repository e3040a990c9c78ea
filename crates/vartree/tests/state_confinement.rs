//! The package manager's own state (`EROOT/var/db/pkg`, the VDB lock, the
//! journal and install staging in `var/db/.vartree`, the counter in
//! `var/cache/edb`, the config memory in `var/lib/portage`, the default
//! PKGDIR `var/cache/binpkgs`) is confined to ROOT like the merged files:
//! every state path is resolved inside ROOT, a symlink followed as if ROOT
//! were `/` (as under chroot).
//!
//! For each state directory, with and without `--eprefix`, with and
//! without `openat2`, the directory is replaced by a symlink in four forms:
//!
//! * `HostileAbs`: an absolute symlink to a canary directory beside ROOT
//!   that holds the real state (what a host-path implementation would read
//!   and write);
//! * `HostileRel`: the same through `../..`;
//! * `InsideRel`: a relative symlink to a directory of ROOT (`var ->
//!   data/var`), a layout real systems have;
//! * `AbsMirrored`: the absolute symlink of `HostileAbs`, with a copy of
//!   the state at the same path inside ROOT, where it resolves under chroot.
//!
//! Then every mutating command (`merge`, `install`, `unmerge`, `recover`,
//! `quickpkg` with the default PKGDIR, `package`) runs on a fresh copy of a
//! root holding an installed package, a config memory, a counter, an
//! interrupted vartree transaction, a stale install staging directory and a
//! Portage `-MERGING-` leftover. The canary must stay byte for byte as it
//! was (type, mode, owner, size, content, link target, inode, link count,
//! mtime and ctime of every path). Each command either works, entirely
//! inside ROOT (its effect checked where the state resolves inside ROOT,
//! and a `recover` afterwards still works with the layout), or fails with
//! status 2 and an error naming the symlink and saying what to do, ROOT
//! untouched; or (reading commands and `unmerge` when the package is only
//! visible through the hostile symlink) finds no package, with a warning
//! naming the symlink.
#![allow(clippy::print_stderr)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{diff, snapshot};

const PREFIX: &str = "/prefix";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    HostileAbs,
    HostileRel,
    InsideRel,
    AbsMirrored,
}

const FORMS: [Form; 4] = [
    Form::HostileAbs,
    Form::HostileRel,
    Form::InsideRel,
    Form::AbsMirrored,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Merge,
    Install,
    Unmerge,
    Recover,
    Quickpkg,
    Package,
}

const CMDS: [Cmd; 6] = [
    Cmd::Merge,
    Cmd::Install,
    Cmd::Unmerge,
    Cmd::Recover,
    Cmd::Quickpkg,
    Cmd::Package,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Exit 0, the effect is where the state resolves inside ROOT.
    Works,
    /// Exit 2 before anything is touched: an error naming the symlink.
    Refused,
    /// Exit 1: the package is not visible inside ROOT; a warning names the
    /// symlink.
    NoMatch,
}

/// What a command does when `dir` is a symlink that does not resolve
/// inside ROOT (both hostile forms: under chroot they dangle). Commands
/// that change the VDB need every state directory (as Portage, which
/// creates them all when it starts); `quickpkg` and `package` only the
/// VDB lock's directory and PKGDIR.
fn expect_hostile(dir: &str, cmd: Cmd) -> Expect {
    use Cmd::*;
    use Expect::*;
    match (dir, cmd) {
        ("var", _) => Refused,
        (_, Merge | Install) => Refused,
        ("var/db/pkg/app-misc", Unmerge | Quickpkg) => NoMatch,
        ("var/db/pkg/app-misc", Recover) => Works,
        (_, Unmerge | Recover) => Refused,
        ("var/db" | "var/db/pkg", Quickpkg) => NoMatch,
        _ => Works,
    }
}

fn vartree() -> &'static str {
    env!("CARGO_BIN_EXE_vartree")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An image and build-info of `app-misc/PF` with `/etc/foo.conf` (config
/// protected) and `/usr/bin/foo`, under EPREFIX.
fn image(at: &Path, pf: &str, conf: &str, eprefix: &str) -> (PathBuf, PathBuf) {
    let img = at.join(format!("img-{pf}"));
    let info = at.join(format!("bi-{pf}"));
    let ed = img.join(eprefix.trim_start_matches('/'));
    fs::create_dir_all(ed.join("etc")).unwrap();
    fs::create_dir_all(ed.join("usr/bin")).unwrap();
    fs::create_dir_all(&info).unwrap();
    fs::write(ed.join("etc/foo.conf"), conf).unwrap();
    fs::write(ed.join("usr/bin/foo"), format!("#!/bin/sh\necho {pf}\n")).unwrap();
    for (k, v) in [
        ("CATEGORY", "app-misc"),
        ("PF", pf),
        ("SLOT", "0"),
        ("EAPI", "8"),
        ("repository", "gentoo"),
        ("BUILD_TIME", "1700000000"),
    ] {
        fs::write(info.join(k), format!("{v}\n")).unwrap();
    }
    (img, info)
}

fn run(root: &Path, eprefix: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(vartree());
    c.env_remove("ROOT")
        .env_remove("EPREFIX")
        .envs(env.iter().copied())
        .arg("--root")
        .arg(root);
    if !eprefix.is_empty() {
        c.args(["--eprefix", eprefix]);
    }
    c.args(args).output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", show(o));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A root with the state every command acts on, and the image of the next
/// version. Built once per EPREFIX.
struct Template {
    dir: tempfile::TempDir,
}

impl Template {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `app-misc/foo-3`: the image `merge` and `package` use.
    fn next(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("img-foo-3"),
            self.dir.path().join("bi-foo-3"),
        )
    }
}

fn template(eprefix: &'static str) -> &'static Template {
    static PLAIN: OnceLock<Template> = OnceLock::new();
    static PREFIXED: OnceLock<Template> = OnceLock::new();
    let cell = if eprefix.is_empty() {
        &PLAIN
    } else {
        &PREFIXED
    };
    cell.get_or_init(|| build_template(eprefix))
}

fn build_template(eprefix: &str) -> Template {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let eroot = root.join(eprefix.trim_start_matches('/'));
    fs::create_dir_all(&eroot).unwrap();
    let merge = |pf: &str, conf: &str| {
        let (img, info) = image(dir.path(), pf, conf, eprefix);
        let o = run(
            &root,
            eprefix,
            &[],
            &[
                "merge",
                "--sync",
                "never",
                "--image",
                img.to_str().unwrap(),
                "--build-info",
                info.to_str().unwrap(),
            ],
        );
        ok(&o, "template merge");
    };
    // foo-1, an edit by the administrator, foo-2: `._cfg0000_foo.conf` and
    // a config memory entry.
    merge("foo-1", "one\n");
    fs::write(eroot.join("etc/foo.conf"), "edited\n").unwrap();
    merge("foo-2", "two\n");
    image(dir.path(), "foo-3", "three\n", eprefix);
    assert!(eroot.join("var/lib/portage/config").is_file());
    assert!(eroot.join("var/cache/edb/counter").is_file());
    // What an interrupted Portage merge leaves.
    let m = eroot.join("var/db/pkg/app-misc/-MERGING-bar-1");
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("SLOT"), "0\n").unwrap();
    fs::write(m.join("CONTENTS"), "").unwrap();
    // An interrupted vartree transaction (its owner gone: no lock), with a
    // staged file, and a stale install staging directory.
    let j = eroot.join("var/db/.vartree");
    fs::create_dir_all(j.join("unpack-999999-1/image/usr")).unwrap();
    fs::write(j.join("unpack-999999-1.lock"), "").unwrap();
    let bin = format!("{eprefix}/usr/bin");
    fs::write(eroot.join("usr/bin/.vartree.999999.baz"), "staged").unwrap();
    fs::write(
        j.join("tx-999999-1.journal"),
        format!(
            "BEGIN merge app-misc/baz-1\nTEMP {} {}\n",
            hex(bin.as_bytes()),
            hex(b".vartree.999999.baz")
        ),
    )
    .unwrap();
    Template { dir }
}

/// Copy a tree (symlinks as symlinks).
fn copy_tree(from: &Path, to: &Path) {
    let m = fs::symlink_metadata(from).unwrap();
    if m.file_type().is_symlink() {
        symlink(fs::read_link(from).unwrap(), to).unwrap();
    } else if m.is_dir() {
        fs::create_dir_all(to).unwrap();
        fs::set_permissions(to, m.permissions()).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap();
    }
}

/// One root with one state directory replaced by a symlink.
struct Case {
    _t: tempfile::TempDir,
    root: PathBuf,
    eroot: PathBuf,
    eprefix: &'static str,
    canary: PathBuf,
    link: PathBuf,
    dir: &'static str,
    form: Form,
    /// Where the state directory's content is, seen from the host, when it
    /// resolves inside ROOT.
    real: PathBuf,
}

impl Case {
    fn new(dir: &'static str, form: Form, eprefix: &'static str) -> Case {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        copy_tree(&template(eprefix).root(), &root);
        let eroot = root.join(eprefix.trim_start_matches('/'));
        let canary = t.path().join("canary");
        let link = eroot.join(dir);
        assert!(link.is_dir(), "{} exists in the template", link.display());
        let depth = dir.split('/').count() + eprefix.split('/').filter(|c| !c.is_empty()).count();
        let real = match form {
            Form::HostileAbs | Form::HostileRel => {
                fs::rename(&link, &canary).unwrap();
                let target = match form {
                    Form::HostileAbs => canary.clone(),
                    _ => PathBuf::from(format!("{}canary", "../".repeat(depth))),
                };
                symlink(&target, &link).unwrap();
                assert!(
                    link.join(".").canonicalize().unwrap() == canary.canonicalize().unwrap(),
                    "on the host, {} leads to the canary",
                    link.display()
                );
                link.clone()
            }
            Form::InsideRel => {
                let data = eroot.join("data").join(dir);
                fs::create_dir_all(data.parent().unwrap()).unwrap();
                fs::rename(&link, &data).unwrap();
                copy_tree(&data, &canary);
                let up = "../".repeat(dir.split('/').count() - 1);
                symlink(format!("{up}data/{dir}"), &link).unwrap();
                data
            }
            Form::AbsMirrored => {
                let mirror = root.join(canary.strip_prefix("/").unwrap());
                fs::create_dir_all(mirror.parent().unwrap()).unwrap();
                fs::rename(&link, &mirror).unwrap();
                copy_tree(&mirror, &canary);
                symlink(&canary, &link).unwrap();
                mirror
            }
        };
        Case {
            _t: t,
            root,
            eroot,
            eprefix,
            canary,
            link,
            dir,
            form,
            real,
        }
    }

    /// A path under EROOT, where it is when resolved inside ROOT.
    fn state(&self, rel: &str) -> PathBuf {
        match rel.strip_prefix(self.dir) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                self.real.join(rest.trim_start_matches('/'))
            }
            _ => self.eroot.join(rel),
        }
    }

    fn hostile(&self) -> bool {
        matches!(self.form, Form::HostileAbs | Form::HostileRel)
    }

    fn args(&self, cmd: Cmd) -> Vec<String> {
        let (img, info) = template(self.eprefix).next();
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match cmd {
            Cmd::Merge => {
                let mut a = v(&["merge", "--sync", "never", "--image"]);
                a.extend([s(&img), "--build-info".into(), s(&info)]);
                a
            }
            Cmd::Install => {
                let mut a = v(&["install", "--sync", "never"]);
                a.push(s(&repo().join("examples/hello-1.0.gpkg.tar")));
                a
            }
            Cmd::Unmerge => v(&["unmerge", "app-misc/foo"]),
            Cmd::Recover => v(&["recover"]),
            Cmd::Quickpkg => v(&["quickpkg", "app-misc/foo"]),
            Cmd::Package => {
                let mut a = v(&["package", "--image"]);
                a.extend([s(&img), "--build-info".into(), s(&info)]);
                a
            }
        }
    }

    /// Whether a path under EROOT exists inside ROOT. Under a hostile
    /// symlink nothing does (on the host, the path leads to the canary).
    fn exists(&self, rel: &str) -> bool {
        let under = rel
            .strip_prefix(self.dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        !(self.hostile() && under) && fs::symlink_metadata(self.state(rel)).is_ok()
    }

    fn check_effect(&self, label: &str, cmd: Cmd, o: &Output) {
        let exists = |rel: &str| self.exists(rel);
        let journal = "var/db/.vartree/tx-999999-1.journal";
        let staged = self.eroot.join("usr/bin/.vartree.999999.baz");
        let what = format!("{label}: {}", show(o));
        match cmd {
            Cmd::Merge => {
                assert!(exists("var/db/pkg/app-misc/foo-3/CONTENTS"), "{what}");
                assert!(!exists("var/db/pkg/app-misc/foo-2"), "{what}");
                let mem = fs::read_to_string(self.state("var/lib/portage/config")).unwrap();
                assert!(
                    mem.contains("etc/foo.conf "),
                    "{what}\nconfig memory: {mem}"
                );
                assert!(!exists(journal), "{what}");
                assert!(!staged.exists(), "{what}");
            }
            Cmd::Install => {
                assert!(exists("var/db/pkg/app-misc/hello-1.0/CONTENTS"), "{what}");
                assert!(!exists(journal), "{what}");
            }
            Cmd::Unmerge => {
                assert!(!exists("var/db/pkg/app-misc/foo-2"), "{what}");
                assert!(!exists(journal), "{what}");
            }
            Cmd::Recover => {
                assert!(!exists(journal), "{what}");
                assert!(!exists("var/db/.vartree/unpack-999999-1"), "{what}");
                assert!(!exists("var/db/pkg/app-misc/-MERGING-bar-1"), "{what}");
                assert!(!staged.exists(), "{what}");
            }
            // FEATURES=binpkg-multi-instance (the default): CAT/PN/PF-N.
            Cmd::Quickpkg => {
                assert!(
                    exists("var/cache/binpkgs/app-misc/foo/foo-2-1.gpkg.tar"),
                    "{what}"
                );
            }
            Cmd::Package => {
                assert!(
                    exists("var/cache/binpkgs/app-misc/foo/foo-3-1.gpkg.tar"),
                    "{what}"
                );
            }
        }
    }
}

fn one(dir: &'static str, form: Form, eprefix: &'static str, env: &[(&str, &str)], cmd: Cmd) {
    let case = Case::new(dir, form, eprefix);
    let canary_before = snapshot(&case.canary);
    let root_before = snapshot(&case.root);
    let args = case.args(cmd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&case.root, eprefix, env, &args);
    let label = format!(
        "{dir} as {form:?}, EPREFIX {eprefix:?}, {env:?}: {cmd:?} (link {})",
        case.link.display()
    );
    let changed = diff(&canary_before, &snapshot(&case.canary));
    assert!(
        changed.is_empty(),
        "{label}: the canary outside ROOT changed:\n{}\n{}",
        changed.join("\n"),
        show(&o)
    );
    let expect = if case.hostile() {
        expect_hostile(dir, cmd)
    } else {
        Expect::Works
    };
    let stderr = String::from_utf8_lossy(&o.stderr);
    let names_link = stderr.contains(&case.link.display().to_string());
    match expect {
        Expect::Works => {
            ok(&o, &label);
            case.check_effect(&label, cmd, &o);
            if !case.hostile() {
                // The layout still works for the next command.
                let again = run(&case.root, eprefix, env, &["recover"]);
                ok(&again, &format!("{label}, then recover"));
            }
        }
        Expect::Refused => {
            assert_eq!(o.status.code(), Some(2), "{label}: {}", show(&o));
            assert!(
                names_link && stderr.contains("inside ROOT"),
                "{label}: the error names the symlink and what to do: {}",
                show(&o)
            );
            let changed = diff(&root_before, &snapshot(&case.root));
            assert!(
                changed.is_empty(),
                "{label}: a refused command touched ROOT:\n{}",
                changed.join("\n")
            );
        }
        Expect::NoMatch => {
            assert_eq!(o.status.code(), Some(1), "{label}: {}", show(&o));
            assert!(
                names_link,
                "{label}: a warning names the symlink: {}",
                show(&o)
            );
        }
    }
    let changed = diff(&canary_before, &snapshot(&case.canary));
    assert!(changed.is_empty(), "{label}: {}", changed.join("\n"));
}

fn all_for(dir: &'static str, env: &[(&str, &str)]) {
    for eprefix in ["", PREFIX] {
        for form in FORMS {
            for cmd in CMDS {
                one(dir, form, eprefix, env, cmd);
            }
        }
    }
}

const NO_OPENAT2: &[(&str, &str)] = &[("VARTREE_NO_OPENAT2", "1")];

#[test]
fn var() {
    all_for("var", &[]);
}
#[test]
fn var_no_openat2() {
    all_for("var", NO_OPENAT2);
}
#[test]
fn var_db() {
    all_for("var/db", &[]);
}
#[test]
fn var_db_no_openat2() {
    all_for("var/db", NO_OPENAT2);
}
#[test]
fn var_db_pkg() {
    all_for("var/db/pkg", &[]);
}
#[test]
fn var_db_pkg_no_openat2() {
    all_for("var/db/pkg", NO_OPENAT2);
}
#[test]
fn var_db_pkg_category() {
    all_for("var/db/pkg/app-misc", &[]);
}
#[test]
fn var_db_pkg_category_no_openat2() {
    all_for("var/db/pkg/app-misc", NO_OPENAT2);
}
#[test]
fn var_cache_edb() {
    all_for("var/cache/edb", &[]);
}
#[test]
fn var_cache_edb_no_openat2() {
    all_for("var/cache/edb", NO_OPENAT2);
}
#[test]
fn var_lib_portage() {
    all_for("var/lib/portage", &[]);
}
#[test]
fn var_lib_portage_no_openat2() {
    all_for("var/lib/portage", NO_OPENAT2);
}
#[test]
fn var_db_vartree() {
    all_for("var/db/.vartree", &[]);
}
#[test]
fn var_db_vartree_no_openat2() {
    all_for("var/db/.vartree", NO_OPENAT2);
}

/// A state directory that is a symlink to a file, or a symlink loop, is
/// refused with the path named; the canary (beside ROOT) is untouched.
#[test]
fn unusable_state_paths_are_refused() {
    for (what, make) in [("loop", 0), ("file", 1), ("link to a file inside ROOT", 2)] {
        let case = Case::new("var/db/pkg", Form::InsideRel, "");
        fs::remove_file(&case.link).unwrap();
        match make {
            0 => symlink("pkg", &case.link).unwrap(),
            1 => fs::write(&case.link, "").unwrap(),
            _ => symlink("/etc/foo.conf", &case.link).unwrap(),
        }
        let canary_before = snapshot(&case.canary);
        let root_before = snapshot(&case.root);
        let args = case.args(Cmd::Merge);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&case.root, "", &[], &args);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&case.link.display().to_string()),
            "{what}: {}",
            show(&o)
        );
        assert!(
            diff(&root_before, &snapshot(&case.root)).is_empty(),
            "{what}"
        );
        assert!(
            diff(&canary_before, &snapshot(&case.canary)).is_empty(),
            "{what}"
        );
    }
}

/// The journal lives in ROOT, so its names are not trusted: a forged
/// `CONFNEW` record naming `../../../../canary/victim` as the staged config
/// memory neither removes (rolled back) nor renames (completed) anything
/// outside `var/lib/portage`.
#[test]
fn forged_journal_names_stay_inside_root() {
    for committed in [false, true] {
        let case = Case::new("var/db/pkg", Form::InsideRel, "");
        fs::write(case.canary.join("victim"), "keep").unwrap();
        let j = case.eroot.join("var/db/.vartree");
        let name = hex(b"../../../../canary/victim");
        let body = if committed {
            format!(
                "BEGIN merge app-misc/baz-1\nCONFNEW {name} 0 ?\nCONFNEW {name} 0 {}\nCOMMIT\n",
                "d41d8cd98f00b204e9800998ecf8427e"
            )
        } else {
            format!("BEGIN merge app-misc/baz-1\nCONFNEW {name} 0 ?\n")
        };
        fs::write(j.join("tx-999998-1.journal"), body).unwrap();
        let canary_before = snapshot(&case.canary);
        let o = run(&case.root, "", &[], &["recover"]);
        let changed = diff(&canary_before, &snapshot(&case.canary));
        assert!(
            changed.is_empty(),
            "committed {committed}: {}\n{}",
            changed.join("\n"),
            show(&o)
        );
        if committed {
            assert_eq!(o.status.code(), Some(2), "{}", show(&o));
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("not a name vartree stages"),
                "{}",
                show(&o)
            );
        } else {
            ok(&o, "recover of a forged, uncommitted journal");
        }
    }
}

/// A forged, uncommitted journal that claims a file of ROOT was moved out
/// of an "image" outside ROOT: the rollback does not move it there (no
/// marker of this transaction proves that directory), with or without a
/// forged IMAGE record naming a file that is not a genuine marker.
#[test]
fn forged_moved_records_do_not_move_files_out_of_root() {
    for image_record in [false, true] {
        let case = Case::new("var/db/pkg", Form::InsideRel, "");
        fs::write(case.canary.join("existing"), "x").unwrap();
        fs::create_dir_all(case.root.join("usr/share")).unwrap();
        fs::write(case.root.join("usr/share/secret"), "secret").unwrap();
        let j = case.eroot.join("var/db/.vartree");
        let canary = case.canary.as_os_str().as_encoded_bytes().to_vec();
        let mut body = String::from("BEGIN merge app-misc/baz-1\n");
        if image_record {
            body.push_str(&format!("IMAGE {} {}\n", hex(&canary), hex(b"existing")));
            body.push_str(&format!(
                "IMAGE {} {}\n",
                hex(&canary),
                hex(b".vartree-image-1-2")
            ));
        }
        body.push_str(&format!(
            "MOVED {} {} {} {}\n",
            hex(b"/usr/share"),
            hex(b"secret"),
            hex(&canary),
            hex(b"stolen")
        ));
        fs::write(j.join("tx-999997-1.journal"), body).unwrap();
        let canary_before = snapshot(&case.canary);
        let o = run(&case.root, "", &[], &["recover", "-v"]);
        ok(&o, "recover of a forged MOVED record");
        let changed = diff(&canary_before, &snapshot(&case.canary));
        assert!(changed.is_empty(), "{}\n{}", changed.join("\n"), show(&o));
        assert_eq!(
            fs::read_to_string(case.root.join("usr/share/secret")).unwrap(),
            "secret"
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("not proven")
                || String::from_utf8_lossy(&o.stderr).contains("not proven"),
            "{}",
            show(&o)
        );
    }
}

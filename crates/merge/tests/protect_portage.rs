//! Differential tests of config protection and path masks against the real
//! Portage 3.0.83: `portage.util.ConfigProtect.isprotected`,
//! `new_protect_filename`, `grabdict`/`writedict` (confmem),
//! `portage.util.install_mask.InstallMask.match`, `fnmatch.fnmatch` and
//! `shlex.split` (the matchers behind COLLISION_IGNORE/UNINSTALL_IGNORE).
//!
//! Each test builds its inputs (and real directory trees where Portage
//! probes the filesystem), sends one batch to ONE Python subprocess
//! (`tests/portage/protect_oracle.py`), and compares. Python:
//! `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`; without it
//! the tests print a skip notice and pass, unless `VARTREE_REQUIRE_PORTAGE=1`.
//! `VARTREE_PROPTEST_SEED` replays or varies the generated cases.

mod protect_common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use merge::mask::{fnmatch, shlex_split, InstallMask};
use merge::protect::{
    decide, md5_hex, new_protect_filename_at, ConfigProtect, Confmem, ConfmemUpdate, DestState,
    InstalledEntry, ProtectInput, SrcObject,
};
use protect_common::{portage_python, py_error, report, report_all, run_oracle, Rng};
use serde_json::{json, Value};

/// A scratch directory whose path is all lowercase (so that the
/// case-insensitive mode is meaningful), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("vartree-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

// ---------------------------------------------------------------------------
// ConfigProtect.isprotected
// ---------------------------------------------------------------------------

fn build_protect_tree(root: &Path) {
    for d in [
        "etc/foo",
        "etc/env.d",
        "etc/Foo",
        "usr/share/config",
        "opt",
        "etc/foobaz.d",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in [
        "etc/foo/bar",
        "etc/foobaz",
        "etc/env.d/00basic",
        "etc/file.conf",
        "etc/Foo/x",
    ] {
        fs::write(root.join(f), "x").unwrap();
    }
    symlink("foo", root.join("etc/link-to-dir")).unwrap();
    symlink("nowhere", root.join("etc/dangling")).unwrap();
    symlink("file.conf", root.join("etc/link-to-file")).unwrap();
}

const PROTECT_POOL: &[&str] = &[
    "/etc",
    "/etc/",
    "/etc/foo",
    "/etc/foo/",
    "/etc/foo/bar",
    "/etc/foobaz",
    "/etc/foobaz.d",
    "/etc/env.d",
    "/etc/Foo",
    "/ETC",
    "/etc/file.conf",
    "/etc/link-to-dir",
    "/etc/dangling",
    "/etc/link-to-file",
    "/etc/missing",
    "/etc/missing/sub",
    "/usr/share/config",
    "/opt",
    "/",
    "",
    "etc",
    "/etc/../opt",
    "/etc/./foo",
    "//etc//foo",
    "/etc/foo/../foobaz",
    "/nonexistent",
    "/etc/foo/bar/baz",
    "-/etc",
];

const OBJ_POOL: &[&str] = &[
    "",
    "etc",
    "etc/",
    "etc/foo",
    "etc/foo/bar",
    "etc/foo/bar/baz",
    "etc/foo/new.conf",
    "etc/foobaz",
    "etc/foobaz/x",
    "etc/foobaz.d/x",
    "etc/env.d",
    "etc/env.d/00basic",
    "etc/Foo/x",
    "etc/FOO/x",
    "etc/file.conf",
    "etc/file.confx",
    "etc/link-to-dir",
    "etc/link-to-dir/x",
    "etc/link-to-file",
    "etc/dangling",
    "etc/missing",
    "etc/missing/sub",
    "etc/missing/sub/x",
    "usr/share/config/kde",
    "usr/share/configs",
    "opt",
    "opt/x",
    "etcx/y",
];

#[test]
fn is_protected_matches_portage() {
    let Some(py) = portage_python() else { return };
    let scratch = Scratch::new("protect");
    let (mut rng, seed) = Rng::from_env(0x5eed_0001);
    // Two roots: one all-lowercase, one with an upper-case component (where
    // case-insensitive mode can never match, as in Portage).
    let roots: Vec<PathBuf> = ["lower", "Upper"]
        .iter()
        .map(|r| scratch.path().join(r))
        .collect();
    for r in &roots {
        build_protect_tree(r);
    }
    let mut cases = Vec::new();
    let mut ops = Vec::new();
    for i in 0..1500 {
        let root = &roots[usize::from(i % 7 == 0)];
        let eroot = if rng.chance(50) {
            format!("{}/", s(root))
        } else {
            s(root)
        };
        let n_p = rng.below(5);
        let n_m = rng.below(4);
        let protect: Vec<String> = (0..n_p)
            .map(|_| (*rng.pick(PROTECT_POOL)).to_owned())
            .collect();
        let mask: Vec<String> = (0..n_m)
            .map(|_| (*rng.pick(PROTECT_POOL)).to_owned())
            .collect();
        let ci = rng.chance(25);
        let objs: Vec<String> = OBJ_POOL
            .iter()
            .map(|o| format!("{}/{o}", s(root)))
            .collect();
        ops.push(json!({"op": "is_protected", "eroot": eroot, "protect": protect, "mask": mask, "ci": ci, "objs": objs}));
        cases.push((eroot, protect, mask, ci, objs));
    }
    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    let mut protected_count = 0;
    for ((eroot, protect, mask, ci, objs), res) in cases.iter().zip(&results) {
        let Some(expected) = res.as_array() else {
            bad.push(format!(
                "python error {res} for protect={protect:?} mask={mask:?}"
            ));
            continue;
        };
        let cp = ConfigProtect::new(eroot, protect, mask, *ci);
        for (obj, exp) in objs.iter().zip(expected) {
            let ours = cp.is_protected(obj);
            protected_count += usize::from(ours);
            if Some(ours) != exp.as_bool() {
                bad.push(format!(
                    "eroot={eroot} protect={protect:?} mask={mask:?} ci={ci} obj={obj}: ours={ours} portage={exp}"
                ));
            }
        }
    }
    report("ConfigProtect.isprotected", seed, &bad);
    assert!(
        protected_count > 1000,
        "the generated cases should protect something"
    );
}

// ---------------------------------------------------------------------------
// dblink._protect
// ---------------------------------------------------------------------------

/// Every combination of a small domain, against `dblink._protect` itself
/// (on a stub dblink whose installed instance owns `/etc/x.conf` as given).
#[test]
fn protect_decision_matches_dblink() {
    let Some(py) = portage_python() else { return };
    let t1 = md5_hex(b"t1");
    let srcs = [
        SrcObject::File { md5: "aaaa" },
        SrcObject::File { md5: "bbbb" },
        SrcObject::Symlink { target: "t1" },
        SrcObject::Symlink { target: "t2" },
    ];
    let dests = [
        DestState::Missing,
        DestState::Other,
        DestState::File { md5: "aaaa" },
        DestState::File { md5: "bbbb" },
        DestState::File { md5: "cccc" },
        DestState::Symlink { target: "t1" },
        DestState::Symlink { target: "t2" },
    ];
    // (has an installed instance, its CONTENTS entry for the path)
    let installed: [(bool, Option<InstalledEntry<'_>>); 8] = [
        (false, None),
        (true, None),
        (true, Some(InstalledEntry::Other)),
        (true, Some(InstalledEntry::Obj { md5: "aaaa" })),
        (true, Some(InstalledEntry::Obj { md5: "cccc" })),
        (true, Some(InstalledEntry::Obj { md5: &t1 })),
        (true, Some(InstalledEntry::Sym { target: "t1" })),
        (true, Some(InstalledEntry::Sym { target: "t2" })),
    ];
    let remembered = [None, Some("aaaa"), Some("bbbb"), Some(t1.as_str())];
    let mut cases = Vec::new();
    let mut ops = Vec::new();
    for src in srcs {
        for dest in dests {
            for (has_instance, inst) in installed {
                for pim_feature in [false, true] {
                    for rem in remembered {
                        for ignore in [false, true] {
                            let input = ProtectInput {
                                src,
                                dest,
                                installed: inst,
                                protect_if_modified: pim_feature && has_instance,
                                remembered: rem,
                                ignore_confmem: ignore,
                            };
                            let (src_md5, src_link) = match src {
                                SrcObject::File { md5 } => (md5.to_owned(), None),
                                SrcObject::Symlink { target } => {
                                    (md5_hex(target.as_bytes()), Some(target))
                                }
                            };
                            let (mode, dest_md5, dest_link) = match dest {
                                DestState::Missing => (None, None, None),
                                DestState::Other => (Some("dir"), None, None),
                                DestState::File { md5 } => {
                                    (Some("file"), Some(md5.to_owned()), None)
                                }
                                DestState::Symlink { target } => {
                                    (Some("link"), Some(md5_hex(target.as_bytes())), Some(target))
                                }
                            };
                            let inst_json = match inst {
                                None => Value::Null,
                                Some(InstalledEntry::Other) => json!(["dir"]),
                                Some(InstalledEntry::Obj { md5 }) => json!(["obj", md5]),
                                Some(InstalledEntry::Sym { target }) => json!(["sym", target]),
                            };
                            let confmem = match rem {
                                Some(m) => json!({"/etc/x.conf": m, "/etc/other": "ffff"}),
                                None => json!({"/etc/other": "ffff"}),
                            };
                            ops.push(json!({
                                "op": "protect_decide",
                                "installed": inst_json,
                                "has_instance": has_instance,
                                "protect_if_modified": pim_feature && has_instance,
                                "src_md5": src_md5,
                                "src_link": src_link,
                                "dest_mode": mode,
                                "dest_md5": dest_md5,
                                "dest_link": dest_link,
                                "confmem": confmem,
                                "ignore": ignore,
                            }));
                            cases.push(input);
                        }
                    }
                }
            }
        }
    }
    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    for (input, res) in cases.iter().zip(&results) {
        if let Some(e) = py_error(res) {
            bad.push(format!("{input:?}: python error {e}"));
            continue;
        }
        let d = decide(input);
        // What the confmem entry for the path is afterwards.
        let mut after = input.remembered.map(str::to_owned);
        match &d.confmem_update {
            Some(ConfmemUpdate::Remember(m)) => after = Some(m.clone()),
            Some(ConfmemUpdate::Forget) => after = None,
            None => {}
        }
        let ours = json!({
            "dest": match &d.cfg_name {
                Some(req) => json!(["CFG", req.reuse_key, req.force]),
                None => json!("/root/etc/x.conf"),
            },
            "protected": d.protected,
            "moveme": d.moveme,
            "confmem": match after {
                Some(m) => json!({"/etc/x.conf": [m], "/etc/other": ["ffff"]}),
                None => json!({"/etc/other": ["ffff"]}),
            },
        });
        if ours != *res {
            bad.push(format!(
                "{input:?}:\n    ours    ={ours}\n    portage ={res}"
            ));
        }
    }
    report_all("dblink._protect", &bad);
    assert_eq!(cases.len(), 4 * 7 * 8 * 2 * 4 * 2);
}

// ---------------------------------------------------------------------------
// new_protect_filename
// ---------------------------------------------------------------------------

const NEW_CONTENT: &str = "new content\n";

fn cfg_names(b: &str) -> Vec<String> {
    [
        "._cfg0000_{b}",
        "._cfg0001_{b}",
        "._cfg0007_{b}",
        "._cfg0042_{b}",
        "._cfg9999_{b}",
        "._cfg10000_{b}",
        "._cfg 012_{b}",
        "._cfg12  _{b}",
        "._cfg\t  8_{b}",
        "._cfg+003_{b}",
        "._cfg-001_{b}",
        "._cfg1_23X{b}",
        "._cfg1__2_{b}",
        "._cfgabcd_{b}",
        "._cfg0002_{b}.bak",
        "._cfg0003_{b}x",
        "._cfg0004{b}",
        "._cfg0005_",
        "._cfg00\u{e9}0_{b}",
        "._cfg0006_{b}",
        "._cfg0001_{b}~",
    ]
    .iter()
    .map(|t| t.replace("{b}", b))
    .collect()
}

#[test]
fn new_protect_filename_matches_portage() {
    let Some(py) = portage_python() else { return };
    let scratch = Scratch::new("cfgname");
    let (mut rng, seed) = Rng::from_env(0x5eed_0002);
    let new_md5 = md5_hex(NEW_CONTENT.as_bytes());
    let mut cases = Vec::new();
    let mut ops = Vec::new();
    for i in 0..600 {
        let dir = scratch.path().join(format!("c{i}"));
        fs::create_dir_all(&dir).unwrap();
        let base = *rng.pick(&["foo", "f\u{e9}", "a b", "x.conf"]);
        let dest = dir.join(base);
        match rng.below(4) {
            0 => {}
            1 => symlink("nowhere", &dest).unwrap(),
            _ => fs::write(&dest, "live\n").unwrap(),
        }
        let names = cfg_names(base);
        for _ in 0..rng.below(6) {
            let name = rng.pick(&names);
            let p = dir.join(name);
            if fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            match rng.below(6) {
                0 | 1 => fs::write(&p, NEW_CONTENT).unwrap(),
                2 => fs::write(&p, "other\n").unwrap(),
                3 => symlink("target-x", &p).unwrap(),
                4 => symlink("other-target", &p).unwrap(),
                _ => symlink(&new_md5, &p).unwrap(),
            }
        }
        let key: Option<String> = match rng.below(4) {
            0 => None,
            1 => Some("target-x".to_owned()),
            _ => Some(new_md5.clone()),
        };
        let force = rng.chance(50);
        ops.push(json!({"op": "new_protect", "dest": s(&dest), "newmd5": key, "force": force}));
        cases.push((dest, key, force));
    }
    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    let mut kinds = [0usize; 3];
    for ((dest, key, force), res) in cases.iter().zip(&results) {
        let Some(expected) = res.as_str() else {
            bad.push(format!("python error {res} for {}", dest.display()));
            continue;
        };
        let ours =
            new_protect_filename_at(dest, key.as_deref(), *force).expect("new_protect_filename_at");
        let ours = s(&ours);
        kinds[if ours == s(dest) {
            0
        } else if fs::symlink_metadata(&ours).is_ok() {
            1
        } else {
            2
        }] += 1;
        if ours != expected {
            let listing: Vec<String> = fs::read_dir(dest.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            bad.push(format!(
                "dest={} key={key:?} force={force} listing={listing:?}: ours={ours} portage={expected}",
                dest.display()
            ));
        }
    }
    report("new_protect_filename", seed, &bad);
    assert!(
        kinds.iter().all(|&k| k > 20),
        "dest/reuse/new all exercised: {kinds:?}"
    );
}

// ---------------------------------------------------------------------------
// confmem: grabdict / writedict
// ---------------------------------------------------------------------------

fn random_confmem(rng: &mut Rng) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "/etc/a.conf",
        "/etc/b.conf",
        "/etc/c d",
        "d6366d85da4b7507763c1e88b24beceb",
        "0123456789abcdef0123456789abcdef",
        "#c",
        "x#y",
        "IGNORE",
        "/etc/\u{e9}",
        "/etc/a.conf",
    ];
    const SEPS: &[&str] = &[
        " ", "  ", "\t", "\u{b}", "\u{c}", "\u{1c}", "\u{a0}", "\u{2003}", "\u{85}",
    ];
    const ENDS: &[&str] = &["\n", "\n", "\n", "\r\n", "\r", "\u{2028}"];
    let mut out = Vec::new();
    for _ in 0..rng.below(12) {
        if rng.chance(10) {
            out.extend_from_slice(b"# comment line\n");
            continue;
        }
        if rng.chance(15) {
            out.extend_from_slice(rng.pick(SEPS).as_bytes());
        }
        for w in 0..rng.below(5) {
            if w > 0 {
                out.extend_from_slice(rng.pick(SEPS).as_bytes());
            }
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            if rng.chance(3) {
                out.push(0xff); // not UTF-8: becomes U+FFFD
            }
        }
        out.extend_from_slice(rng.pick(ENDS).as_bytes());
    }
    if rng.chance(30) {
        out.extend_from_slice(b"/etc/last.conf 0123456789abcdef0123456789abcdef");
    }
    out
}

#[test]
fn confmem_round_trip_matches_portage() {
    let Some(py) = portage_python() else { return };
    let scratch = Scratch::new("confmem");
    let (mut rng, seed) = Rng::from_env(0x5eed_0003);
    let mut cases = Vec::new();
    let mut ops = Vec::new();
    for i in 0..500 {
        let src = scratch.path().join(format!("in{i}"));
        let dst = scratch.path().join(format!("out{i}"));
        let bytes = random_confmem(&mut rng);
        fs::write(&src, &bytes).unwrap();
        let mut edits: Vec<(bool, String, String)> = Vec::new();
        for _ in 0..rng.below(4) {
            let key = (*rng.pick(&["/etc/a.conf", "/etc/new.conf", "/etc/b.conf", "/etc/\u{e9}"]))
                .to_owned();
            edits.push((rng.chance(70), key, md5_hex(&[rng.below(255) as u8])));
        }
        let edit_json: Vec<Value> = edits
            .iter()
            .map(|(set, k, v)| {
                if *set {
                    json!(["set", k, v])
                } else {
                    json!(["del", k])
                }
            })
            .collect();
        ops.push(json!({"op": "confmem", "src": s(&src), "dst": s(&dst), "ops": edit_json}));
        cases.push((bytes, dst, edits));
    }
    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    for ((bytes, dst, edits), res) in cases.iter().zip(&results) {
        if let Some(e) = py_error(res) {
            bad.push(format!(
                "python error {e} for {:?}",
                String::from_utf8_lossy(bytes)
            ));
            continue;
        }
        let mut cm = Confmem::parse(bytes);
        let ours: Vec<Value> = cm.iter().map(|(k, v)| json!([k, v])).collect();
        if Value::Array(ours.clone()) != res["items"] {
            bad.push(format!(
                "parse {:?}: ours={ours:?} portage={}",
                String::from_utf8_lossy(bytes),
                res["items"]
            ));
            continue;
        }
        for (set, k, v) in edits {
            if *set {
                cm.remember(k, v);
            } else {
                cm.forget(k);
            }
        }
        let (out, skipped) = cm.serialize();
        let expected = fs::read(dst).unwrap();
        if out != expected || !skipped.is_empty() {
            bad.push(format!(
                "write {:?} edits={edits:?}: ours={:?} portage={:?} skipped={skipped:?}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected)
            ));
        }
    }
    report("confmem grabdict/writedict", seed, &bad);
}

// ---------------------------------------------------------------------------
// INSTALL_MASK
// ---------------------------------------------------------------------------

const MASK_POOL: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/doc/",
    "-/usr/share/doc/keep",
    "*.la",
    "-*.la",
    "/usr/lib*/x",
    "/usr/lib?4/x",
    "/usr/*/x",
    "/usr",
    "/",
    "-/",
    "*",
    "-*",
    "/etc/foo/",
    "/etc/[fb]oo",
    "foo",
    "-foo",
    ".keep*",
    "/usr/share/doc/*/html",
    "-/usr/share/doc/*/html/keep",
    "/usr//share",
    "//usr/share/doc/keep//",
    "-",
    "[!a]*",
    "/usr/share/doc/pkg*",
    "-/usr/share/doc/pkg/README",
];

const MASK_PATHS: &[&str] = &[
    "usr",
    "usr/",
    "usr/share/doc",
    "usr/share/doc/",
    "usr/share/doc/pkg/README",
    "usr/share/doc/pkg/",
    "usr/share/doc/keep",
    "usr/share/doc/keep/",
    "usr/share/doc/keep/x",
    "usr/share/doc/pkg/html/index.html",
    "usr/share/doc/pkg/html/keep",
    "usr/share/doc/pkg-1/html/keep",
    "usr/lib/libfoo.la",
    "usr/lib64/x",
    "usr/lib?4/x",
    "usr/a/b/x",
    "etc/foo",
    "etc/foo/",
    "etc/foo/bar",
    "etc/boo",
    "etc/[fb]oo",
    "foo",
    "a/foo",
    "a/foo/",
    ".keep_x",
    "usr/share/docs",
    "",
    "usr//share/doc",
    "/usr/share/doc",
];

#[test]
fn install_mask_matches_portage() {
    let Some(py) = portage_python() else { return };
    let (mut rng, seed) = Rng::from_env(0x5eed_0004);
    let mut cases = Vec::new();
    let mut ops = Vec::new();
    for _ in 0..2000 {
        let n = 1 + rng.below(5);
        let mask: Vec<&str> = (0..n).map(|_| *rng.pick(MASK_POOL)).collect();
        let mask = mask.join(*rng.pick(&[" ", "\n", "\t "]));
        ops.push(json!({"op": "install_mask", "mask": mask, "paths": MASK_PATHS}));
        cases.push(mask);
    }
    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    let mut hits = 0;
    for (mask, res) in cases.iter().zip(&results) {
        let m = InstallMask::new(mask);
        let Some(expected) = res.as_array() else {
            bad.push(format!("python error {res} for {mask:?}"));
            continue;
        };
        for (path, exp) in MASK_PATHS.iter().zip(expected) {
            let ours = m.matches(path);
            hits += usize::from(ours);
            if Some(ours) != exp.as_bool() {
                bad.push(format!(
                    "mask={mask:?} path={path:?}: ours={ours} portage={exp}"
                ));
            }
        }
    }
    report("InstallMask.match", seed, &bad);
    assert!(
        hits > 5000,
        "the generated masks should mask something ({hits})"
    );
}

// ---------------------------------------------------------------------------
// fnmatch and shlex.split (COLLISION_IGNORE / UNINSTALL_IGNORE)
// ---------------------------------------------------------------------------

#[test]
fn fnmatch_matches_python() {
    let Some(py) = portage_python() else { return };
    let (mut rng, seed) = Rng::from_env(0x5eed_0005);
    const PAT: &[&str] = &[
        "a", "b", "z", "-", "!", "^", "[", "]", "*", "?", "\\", "/", "&", "~", "|", "\u{e9}", "[!",
        "a-z", "]", "z-a", "b-a", "-]",
    ];
    const NAME: &[&str] = &[
        "a", "b", "z", "-", "!", "^", "[", "]", "\\", "/", "&", "\u{e9}", "\n", "c", "y",
    ];
    let mut cases = Vec::new();
    let mut ops = Vec::new();
    for _ in 0..3000 {
        let pattern = rng.string_from(PAT, 8);
        let names: Vec<String> = (0..12).map(|_| rng.string_from(NAME, 6)).collect();
        ops.push(json!({"op": "fnmatch", "pattern": pattern, "names": names}));
        cases.push((pattern, names));
    }
    // The defaults and typical values, against typical paths.
    let fixed_names: Vec<String> = [
        "a",
        "b",
        "z",
        "-",
        "]",
        "^",
        "/lib/modules/6.1.0/kernel/x.ko",
        "/lib/modules",
        "/usr/lib/python3.12/site-packages/a.pyc",
        "/usr/lib/python3.12/site-packages/a.pyo",
        "/usr/lib/python3.12/site-packages/a.py",
        "/usr/share/jython/Foo$py.class",
        "/usr/lib/debug/.tarball/x.tar.xz",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for p in [
        "/lib/modules/*",
        "*.py[co]",
        "*$py.class",
        "/usr/lib/debug/.tarball/*",
        "/lib/modules",
        "[z-a]",
        "[!z-a]",
        "[a-z-a]",
        "[b-a-z]",
        "[z-a-b]",
        "[!b-a]*",
        "[--a]",
        "[a--]",
        "[!--]",
        "[]-a]",
        "[!]-a]",
    ] {
        ops.push(json!({"op": "fnmatch", "pattern": p, "names": fixed_names}));
        cases.push((p.to_owned(), fixed_names.clone()));
    }
    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    let mut compared = 0;
    for ((pattern, names), res) in cases.iter().zip(&results) {
        let expected = res.as_array().expect("fnmatch results");
        for (name, exp) in names.iter().zip(expected) {
            let Some(exp) = exp.as_bool() else { continue }; // Python raised
            compared += 1;
            let ours = fnmatch(name, pattern);
            if ours != exp {
                bad.push(format!(
                    "pattern={pattern:?} name={name:?}: ours={ours} python={exp}"
                ));
            }
        }
    }
    report("fnmatch", seed, &bad);
    assert!(compared > 30_000);
}

#[test]
fn shlex_split_matches_python() {
    let Some(py) = portage_python() else { return };
    let (mut rng, seed) = Rng::from_env(0x5eed_0006);
    const ALPHA: &[&str] = &[
        "a", "b", " ", "\t", "\n", "\"", "'", "\\", "#", "\u{e9}", "*", "$",
    ];
    let mut inputs: Vec<String> = (0..3000).map(|_| rng.string_from(ALPHA, 12)).collect();
    inputs.push("/lib/modules/* *.py[co] *$py.class".to_owned());
    let ops: Vec<Value> = inputs
        .iter()
        .map(|s| json!({"op": "shlex_split", "s": s}))
        .collect();
    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    for (input, res) in inputs.iter().zip(&results) {
        let ours = shlex_split(input);
        let agree = match (&ours, py_error(res)) {
            (Err(_), Some(_)) => true,
            (Ok(words), None) => json!(words) == *res,
            _ => false,
        };
        if !agree {
            bad.push(format!("{input:?}: ours={ours:?} python={res}"));
        }
    }
    report("shlex.split", seed, &bad);
}

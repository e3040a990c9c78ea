//! Differential tests of the settings loader against the real Portage 3.0.83:
//! the make.conf parser against `portage.util.getconfig` (tolerant, with
//! sourcing and expansion; strict for env.d files), and the whole loader
//! ([`merge::config::MergeSettings::load`]) against `portage.config` after
//! Portage's own `env_update` regenerated `profile.env` from `etc/env.d`.
//!
//! Python: `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`;
//! without it the tests print a skip notice and pass, unless
//! `VARTREE_REQUIRE_PORTAGE=1`. `VARTREE_PROPTEST_SEED` varies the cases.

mod protect_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use merge::config::{
    parse_config, read_config_path, ConfigWarning, Location, MergeSettings, Overrides,
    ParseFailure, ParseOptions, VarMap,
};
use merge::mask::shlex_split;
use protect_common::{portage_python, py_error, report, run_oracle, Rng};
use serde_json::{json, Value};

fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("vartree-{tag}-"))
        .tempdir()
        .expect("temp dir")
}

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

fn as_map(v: &Value) -> Option<VarMap> {
    v.as_object().map(|o| {
        o.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("<non-string>").to_owned()))
            .collect()
    })
}

// ---------------------------------------------------------------------------
// getconfig
// ---------------------------------------------------------------------------

const FRAGMENTS: &[&str] = &[
    "A",
    "B",
    "C_1",
    "FEATURES",
    "=",
    " = ",
    "=",
    "\"",
    "\"",
    "'",
    "$",
    "${A}",
    "$B",
    "${",
    "}",
    "\\",
    "\n",
    "\n",
    " ",
    "\t",
    "#",
    "export ",
    "x",
    "y z",
    "\u{e9}",
    "\\\n",
    "\\$",
    "\\\\",
    "1A",
    "-",
    "/",
    "*",
    "(",
    "source inc.conf\n",
    "source missing.conf\n",
    "$'",
    "${EPREFIX}",
    "\\\"",
    "\r\n",
];

const VALUES: &[&str] = &[
    "plain",
    "two words",
    "$A",
    "${A}/x",
    "$NOPE",
    "a$ b",
    "${A",
    "\\$A",
    "it's",
    "a\\\nb",
    "\\\\$A",
    "${EPREFIX}/etc",
    "# not a comment",
    "x#y",
    "",
    "\u{e9}t\u{e9}",
    "multi\nline",
    "$",
    "tail\\",
];

fn random_conf(rng: &mut Rng) -> String {
    let mut out = String::new();
    for _ in 0..rng.below(8) {
        if rng.chance(30) {
            for _ in 0..rng.below(6) {
                let piece = rng.pick_str(FRAGMENTS);
                out.push_str(piece);
            }
        } else {
            if rng.chance(15) {
                out.push_str("export ");
            }
            let piece = rng.pick_str(&["A", "B", "C_1", "FEATURES", "__LOCAL"]);
            out.push_str(piece);
            let piece = rng.pick_str(&["=", "=", " = "]);
            out.push_str(piece);
            let v = *rng.pick(VALUES);
            match rng.below(3) {
                0 => out.push_str(&format!("\"{v}\"")),
                1 => out.push_str(&format!("'{v}'")),
                _ => out.push_str(v),
            }
            if rng.chance(10) {
                out.push_str(" # trailing comment");
            }
            out.push('\n');
        }
    }
    if rng.chance(20) {
        out.pop();
    }
    out
}

#[test]
fn getconfig_matches_portage() {
    let Some(py) = portage_python() else { return };
    let dir = scratch("getconfig");
    let (mut rng, seed) = Rng::from_env(0x5eed_0101);
    fs::write(dir.path().join("inc.conf"), "B=\"from-inc $A\"\nA=inc\n").unwrap();
    let initial: VarMap = [("EPREFIX", "/p"), ("A", "init-a")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut cases: Vec<(PathBuf, bool)> = Vec::new();
    let mut ops = Vec::new();
    let mut texts = vec![
        // Fixed cases: the make.globals line, sourcing, odd spacing.
        "COLLISION_IGNORE=\"/lib/modules/* *.py[co] *\\$py.class\"\n".to_owned(),
        "A=1\nsource inc.conf\nC=\"$A $B\"\n".to_owned(),
        "A = 1\nexport B=\"$A\"\n".to_owned(),
        "FEATURES=\"a\nb\"\n".to_owned(),
        "A=\"x\" B='y'C=z\n".to_owned(),
        // Literal quotes left in a value steer varexpand's quoting.
        "A='say \"it'\"'\"'s\" $A'\nB=\"a'b $A\"\nC='x\"y'\"$A\"\n".to_owned(),
        "source inc.conf".to_owned(),
        "A=$\nB=${A}\n".to_owned(),
    ];
    texts.extend((0..1200).map(|_| random_conf(&mut rng)));
    for (i, text) in texts.iter().enumerate() {
        let path = dir.path().join(format!("make{i}.conf"));
        fs::write(&path, text).unwrap();
        for strict in [false, true] {
            ops.push(json!({
                "op": "getconfig",
                "path": s(&path),
                "tolerant": !strict,
                "sourcing": !strict,
                "expand": if strict { Value::Null } else { json!(initial) },
                "recursive": false,
            }));
            cases.push((path.clone(), strict));
        }
    }
    // A make.conf directory: sorted, depth-first, hidden/backup/VCS skipped.
    let mcdir = dir.path().join("make.conf.d");
    for (name, body) in [
        ("10-b", "B=\"b $A\"\n"),
        ("00-a", "A=a\n"),
        (".hidden", "A=hidden\n"),
        ("20~", "A=backup\n"),
        ("sub/05-c", "C_1=\"$B\"\n"),
        (".git/x", "A=git\n"),
        ("CVS/x", "A=cvs\n"),
    ] {
        let p = mcdir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    ops.push(
        json!({"op": "getconfig", "path": s(&mcdir), "tolerant": true, "sourcing": true,
                    "expand": json!(initial), "recursive": true}),
    );
    cases.push((mcdir.clone(), false));

    let results = run_oracle(&py, &ops, None);
    let mut bad = Vec::new();
    let mut compared = 0;
    for ((path, strict), res) in cases.iter().zip(&results) {
        let opts = if *strict {
            ParseOptions::ENV_D
        } else {
            ParseOptions::MAKE_CONF
        };
        let mut map = if *strict {
            VarMap::new()
        } else {
            initial.clone()
        };
        let mut warnings: Vec<ConfigWarning> = Vec::new();
        let recursive = path.is_dir();
        let ours = if *strict {
            let text = merge::config::read_text(path).unwrap();
            let mut no_source = |_: &Path| -> std::io::Result<String> { Ok(String::new()) };
            parse_config(&text, path, opts, &mut map, &mut no_source, &mut warnings).map(Some)
        } else {
            read_config_path(path, opts, recursive, &mut map, &mut warnings)
        };
        let text = fs::read_to_string(path).unwrap_or_default();
        match (py_error(res), ours) {
            (Some(_), Err(ParseFailure::Syntax(_))) => compared += 1,
            (Some(e), Ok(v)) => {
                // Portage raises where vartree warns and keeps what it read.
                if *strict || warnings.is_empty() {
                    bad.push(format!(
                        "{text:?} strict={strict}: portage raised {e}, ours={v:?} warnings={warnings:?}"
                    ));
                }
            }
            (None, Ok(v)) => {
                compared += 1;
                let expected = as_map(res);
                if v.clone() != expected {
                    bad.push(format!(
                        "{text:?} strict={strict}: ours={v:?} portage={res}"
                    ));
                }
            }
            (None, Err(e)) => bad.push(format!(
                "{text:?} strict={strict}: ours failed ({e}), portage={res}"
            )),
            (Some(_), Err(e)) => bad.push(format!("{text:?}: unexpected failure {e}")),
        }
    }
    report("getconfig", seed, &bad);
    assert!(compared > 2000, "{compared}");
}

// ---------------------------------------------------------------------------
// The whole loader against portage.config + env_update
// ---------------------------------------------------------------------------

const ENV_D_POOL: &[(&str, &str)] = &[
    (
        "00basic",
        "CONFIG_PROTECT_MASK=\"/etc/gentoo-release\"\nPATH=\"/usr/bin\"\n",
    ),
    ("10x", "CONFIG_PROTECT=\"/usr/share/config /var/lib/x\"\n"),
    (
        "20y",
        "CONFIG_PROTECT=\"/var/lib/x /opt/y\"\nCONFIG_PROTECT_MASK=\"/etc/y\"\n",
    ),
    ("30minus", "CONFIG_PROTECT=\"-/etc /z\"\n"),
    ("40broken", "CONFIG_PROTECT /nope\n"),
    (
        "50space",
        "SPACE_SEPARATED=\"FOO\"\nFOO=\"a\"\nCONFIG_PROTECT=\"/fifty\"\n",
    ),
    ("60star", "CONFIG_PROTECT_MASK=\"-*\"\n"),
    ("x-notnumbered", "CONFIG_PROTECT=\"/ignored\"\n"),
    ("70foo~", "CONFIG_PROTECT=\"/ignored-backup\"\n"),
    ("80bar.bak", "CONFIG_PROTECT=\"/ignored-bak\"\n"),
    (
        "98other",
        "INSTALL_MASK=\"/from-98\"\nCONFIG_PROTECT_MASK=\"/etc/98\"\n",
    ),
    (
        "99last",
        "export CONFIG_PROTECT='/last'\nINSTALL_MASK=\"/from-env-d\"\n",
    ),
];

const MAKE_CONF_POOL: &[&str] = &[
    "CONFIG_PROTECT=\"${CONFIG_PROTECT} /opt/mc\"",
    "CONFIG_PROTECT=\"-* /only\"",
    "CONFIG_PROTECT_MASK=\"/etc/mc-mask\"",
    "CONFIG_PROTECT_MASK=\"-/etc/env.d\"",
    "FEATURES=\"-merge-sync xattr\"",
    "FEATURES=\"${FEATURES} collision-protect -protect-owned\"",
    "FEATURES=\"-* merge-sync\"",
    "COLLISION_IGNORE=\"${COLLISION_IGNORE} /opt/'a b'\"",
    "UNINSTALL_IGNORE=\"/opt/keep/*\"",
    "INSTALL_MASK=\"/usr/share/doc -/usr/share/doc/keep\"",
    "NOCONFMEM=\"\"",
    "PKGDIR=\"${ROOT}pkgs\"",
    "PKGDIR=\"${EROOT}var/cache/b\"",
    "__LOCAL=\"x\"",
    "CONFIG_PROTECT=\"+/plus\"",
    "source extra.conf",
    "CONFIG_PROTECT=\"$CONFIG_PROTECT_MASK\"",
];

const ENV_POOL: &[(&str, &str)] = &[
    ("CONFIG_PROTECT", "/from-env"),
    ("FEATURES", "buildpkg -merge-sync"),
    ("FEATURES", "-* unmerge-orphans"),
    ("COLLISION_IGNORE", "/e"),
    ("NOCONFMEM", "1"),
    ("INSTALL_MASK", "*.la"),
    ("CONFIG_PROTECT_MASK", "-/etc/env.d"),
    ("UNINSTALL_IGNORE", ""),
    ("CONFIG_PROTECT", "/usr/share/config /var/lib/x"),
];

struct Case {
    root: PathBuf,
    env: BTreeMap<String, String>,
    description: String,
}

fn build_case(rng: &mut Rng, root: &Path) -> Case {
    let mut description = String::new();
    fs::create_dir_all(root.join("var/lib/portage")).unwrap();
    if rng.chance(80) {
        fs::create_dir_all(root.join("etc/env.d")).unwrap();
        for (name, body) in ENV_D_POOL {
            if rng.chance(40) {
                fs::write(root.join("etc/env.d").join(name), body).unwrap();
                description.push_str(&format!("env.d/{name} "));
            }
        }
    }
    if rng.chance(85) {
        let mut text = String::new();
        for _ in 0..rng.below(5) {
            let piece = rng.pick_str(MAKE_CONF_POOL);
            text.push_str(piece);
            text.push('\n');
        }
        let as_dir = rng.chance(25);
        let path = if as_dir {
            fs::create_dir_all(root.join("etc/portage/make.conf")).unwrap();
            fs::write(
                root.join("etc/portage/make.conf/00-first"),
                "FEATURES=\"${FEATURES} xattr\"\n",
            )
            .unwrap();
            root.join("etc/portage/make.conf/10-second")
        } else {
            fs::create_dir_all(root.join("etc/portage")).unwrap();
            root.join("etc/portage/make.conf")
        };
        fs::write(&path, &text).unwrap();
        fs::write(
            path.parent().unwrap().join("extra.conf"),
            "UNINSTALL_IGNORE=\"/from/extra\"\n",
        )
        .unwrap();
        description.push_str(&format!("make.conf(dir={as_dir})={text:?} "));
        if rng.chance(15) {
            fs::write(root.join("etc/make.conf"), "CONFIG_PROTECT=\"/legacy\"\n").unwrap();
            description.push_str("etc/make.conf ");
        }
    }
    let mut env = BTreeMap::new();
    for (k, v) in ENV_POOL {
        if rng.chance(15) {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    description.push_str(&format!("env={env:?}"));
    Case {
        root: root.to_path_buf(),
        env,
        description,
    }
}

fn words(v: &Value) -> Vec<String> {
    let mut w: Vec<String> = v
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    w.sort();
    w.dedup();
    w
}

#[test]
fn settings_load_matches_portage_config() {
    let Some(py) = portage_python() else { return };
    let dir = scratch("config");
    let (mut rng, seed) = Rng::from_env(0x5eed_0102);
    let mut cases = Vec::new();
    for i in 0..40 {
        cases.push(build_case(&mut rng, &dir.path().join(format!("r{i}"))));
    }
    // Fixed: an environment value equal to env.d's is ignored, so make.conf's
    // `-*` really clears.
    let root = dir.path().join("fixed-env-dup");
    fs::create_dir_all(root.join("etc/env.d")).unwrap();
    fs::create_dir_all(root.join("etc/portage")).unwrap();
    fs::create_dir_all(root.join("var/lib/portage")).unwrap();
    fs::write(
        root.join("etc/env.d/10x"),
        "CONFIG_PROTECT=\"/usr/share/config /var/lib/x\"\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/portage/make.conf"),
        "CONFIG_PROTECT=\"-* /only\"\n",
    )
    .unwrap();
    cases.push(Case {
        root: root.clone(),
        env: [(
            "CONFIG_PROTECT".to_owned(),
            "/usr/share/config /var/lib/x".to_owned(),
        )]
        .into(),
        description: "fixed env duplicate of env.d".to_owned(),
    });

    // Load ours first: Portage's env_update writes files into the roots.
    let ours: Vec<_> = cases
        .iter()
        .map(|c| {
            let env = c.env.clone();
            MergeSettings::load(&Location::new(&c.root), &Overrides::default(), move |k| {
                env.get(k).cloned()
            })
            .expect("load")
        })
        .collect();
    let ops: Vec<Value> = cases
        .iter()
        .map(|c| json!({"op": "config", "root": format!("{}/", s(&c.root)), "env": c.env}))
        .collect();
    let prefix = dir.path().join("host-prefix");
    let results = run_oracle(&py, &ops, Some(&prefix));

    let mut bad = Vec::new();
    for ((case, loaded), res) in cases.iter().zip(&ours).zip(&results) {
        if let Some(e) = py_error(res) {
            bad.push(format!("{}: portage raised {e}", case.description));
            continue;
        }
        let st = &loaded.settings;
        let mut diffs = Vec::new();
        let mut cmp = |what: &str, ours: Vec<String>, theirs: Vec<String>| {
            if ours != theirs {
                diffs.push(format!("{what}: ours={ours:?} portage={theirs:?}"));
            }
        };
        cmp(
            "CONFIG_PROTECT",
            st.config_protect.clone(),
            words(&res["CONFIG_PROTECT"]),
        );
        cmp(
            "CONFIG_PROTECT_MASK",
            st.config_protect_mask.clone(),
            words(&res["CONFIG_PROTECT_MASK"]),
        );
        cmp(
            "FEATURES",
            st.features.iter().map(str::to_owned).collect(),
            words(&res["FEATURES"]),
        );
        let split = |v: &Value| {
            shlex_split(v.as_str().unwrap_or("")).unwrap_or_else(|_| vec!["<bad>".into()])
        };
        cmp(
            "COLLISION_IGNORE",
            st.collision_ignore.clone(),
            split(&res["COLLISION_IGNORE"]),
        );
        cmp(
            "UNINSTALL_IGNORE",
            st.uninstall_ignore.clone(),
            split(&res["UNINSTALL_IGNORE"]),
        );
        cmp(
            "INSTALL_MASK",
            vec![st.install_mask.clone()],
            vec![res["INSTALL_MASK"].as_str().unwrap_or("").to_owned()],
        );
        cmp(
            "PKGDIR",
            vec![st.var("PKGDIR").unwrap_or("").to_owned()],
            vec![res["PKGDIR"].as_str().unwrap_or("").to_owned()],
        );
        cmp(
            "NOCONFMEM",
            vec![st.noconfmem.to_string()],
            vec![res["NOCONFMEM"].as_bool().unwrap_or(false).to_string()],
        );
        if !diffs.is_empty() {
            bad.push(format!(
                "{}:\n    {}",
                case.description,
                diffs.join("\n    ")
            ));
        }
    }
    report("MergeSettings::load vs portage.config", seed, &bad);
}

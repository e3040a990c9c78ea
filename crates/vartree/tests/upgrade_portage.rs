//! Differential test of upgrade / reinstall / downgrade / unmerge sequences:
//! `vartree merge` and `vartree unmerge` against the real Portage 3.0.83.
//!
//! Every scenario runs the same sequence of steps on two roots: Portage
//! (`tests/portage/merge_portage.py` → portage-ref's `merge_image.py
//! --no-ebuild --no-env-update`, phases skipped, and
//! `tests/portage/upgrade_unmerge.py` → portage-ref's `unmerge.py --verbose
//! --no-env-update`) on ROOT_P, vartree (`vartree merge --sync never`,
//! `vartree unmerge --json`) on ROOT_V. Both get the very same image copies
//! (built twice by `tests/portage/upgrade_fixtures.py`), the same
//! `--build-info` directory, the same admin actions between steps, and the
//! default settings (CONFIG_PROTECT=/etc, CONFIG_PROTECT_MASK=/etc/env.d,
//! UNINSTALL_IGNORE=/lib/modules/*, FEATURES from make.globals). After
//! **every** merge and unmerge it compares (`tests/portage/upgrade_dump.py`):
//!
//! * the exit status (both succeed or both refuse);
//! * the file trees (as `merge_dump.py`: type, mode, owner, size, sha256,
//!   ns mtime, symlink target, xattrs, hard-link groups, device numbers);
//! * the VDB entries (portage-ref's `vdb_dump.py`: sorted CONTENTS, every
//!   key, COUNTER), the counter file, `-MERGING-` leftovers, the names in
//!   the VDB two levels deep (so that an empty category left behind shows),
//!   the config memory (`var/lib/portage/config`) and what is left in
//!   vartree's journal directory `var/db/.vartree` (which is otherwise,
//!   like Portage's own state directories, not part of the tree);
//! * for unmerges, Portage's per-entry decision (`<<<`, `--- !mtime`, …
//!   from `--verbose`) against vartree's (`--json` items) for every
//!   non-directory entry.
//!
//! Deliberate differences are accepted only where a scenario expects them,
//! exactly: on a refused merge Portage has already taken a COUNTER
//! (`MergeProcess` ticks it before merging), vartree takes one only when
//! publishing (as in `merge_portage.rs`; ROOT_V's counter file is then set
//! to Portage's so that later steps compare COUNTERs again); vartree reads
//! the negative CONTENTS mtimes of pre-1970 files, which Portage's parser
//! drops (`unmerge_pre_epoch_files`, `unmerge_hand_edited_contents`).
//! `#[ignore]`d scenarios document vartree bugs with their exact diff; run
//! them with `-- --ignored`.
//!
//! Run: `cargo test -p vartree --test upgrade_portage` (as root; ~20-30 s).
//!
//! Python: `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`.
//! Without either (or without portage-ref, or not as root) each test prints
//! a notice and passes, unless `VARTREE_REQUIRE_PORTAGE=1`, where it fails.
//! A failing scenario keeps its work directory (`VARTREE_KEEP_DIFF_WORKDIR=1`
//! keeps all). The helpers below the set-up section follow
//! `merge_portage.rs`; they are repeated here rather than shared so that
//! neither test file depends on the other's evolution.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const EPREFIX: &str = "/opt/gentoo";

/// Variables of the caller's environment that would change either tool's
/// settings (portage-ref's RefEnv removes them for Portage).
const SETTINGS_ENV: &[&str] = &[
    "ROOT",
    "EPREFIX",
    "PORTAGE_CONFIGROOT",
    "FEATURES",
    "CONFIG_PROTECT",
    "CONFIG_PROTECT_MASK",
    "COLLISION_IGNORE",
    "UNINSTALL_IGNORE",
    "INSTALL_MASK",
    "PKG_INSTALL_MASK",
    "INFOPATH",
    "INFODIR",
];

// ------------------------------------------------------------------ set-up

fn workspace() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    ws.canonicalize().unwrap_or(ws)
}

fn env_is(name: &str, want: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == want)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The Python with Portage, or `None` (skip).
fn python() -> Option<PathBuf> {
    let ws = workspace();
    let require = env_is("VARTREE_REQUIRE_PORTAGE", "1");
    let python = match std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "VARTREE_PORTAGE_PYTHON={} does not exist",
                p.display()
            );
            Some(p)
        }
        _ => Some(ws.join(".venv").join("bin").join("python")).filter(|p| p.exists()),
    };
    let portage_ref = std::env::var_os("VARTREE_PORTAGE_REF").map_or_else(
        || {
            ws.join("..")
                .join("shared")
                .join("tools")
                .join("portage-ref")
        },
        PathBuf::from,
    );
    let missing = if python.is_none() {
        Some(
            "no Python with Portage: set VARTREE_PORTAGE_PYTHON or run scripts/setup-venv.sh"
                .to_string(),
        )
    } else if !portage_ref.join("unmerge.py").is_file() {
        Some(format!(
            "portage-ref not found at {} (set VARTREE_PORTAGE_REF)",
            portage_ref.display()
        ))
    } else if !is_root() {
        Some("not running as root (owners and device nodes need it)".to_string())
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(!require, "VARTREE_REQUIRE_PORTAGE=1 but {why}");
        eprintln!("SKIPPED upgrade/unmerge differential test against Portage: {why}");
        return None;
    }
    python
}

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim_end();
    if s.is_empty() {
        "(empty)".into()
    } else if s.chars().count() > 2500 {
        let cut: String = s.chars().take(2500).collect();
        format!("{cut}… ({} bytes)", b.len())
    } else {
        s.to_string()
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn strip_ino(e: &Value) -> Value {
    let mut e = e.clone();
    if let Some(o) = e.as_object_mut() {
        o.remove("ino");
    }
    e
}

fn str_field<'a>(e: Option<&'a Value>, k: &str) -> &'a str {
    e.and_then(|e| e.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A minimal line diff (LCS), `-` first, `+` second, with 2 lines of context.
fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if a[i] == b[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || l[i][j + 1] >= l[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|o| o.0 != ' ')
    };
    let mut out = String::new();
    let mut gap = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if *c != ' ' || near(k) {
            if gap {
                out.push_str("  …\n");
                gap = false;
            }
            out.push_str(&format!("  {c} {line}\n"));
        } else {
            gap = true;
        }
    }
    out
}

// ------------------------------------------------------------------ harness

/// One image built twice (for Portage, for vartree).
struct Img {
    cpv: String,
    p: PathBuf,
    v: PathBuf,
}

/// The result of one command of one tool.
struct Run {
    ok: bool,
    code: i32,
    /// stdout + stderr, shortened.
    text: String,
    /// Unmerge decisions per ROOT-relative path (the last one for a path):
    /// `"<<<"`, `"--- !mtime"`, … (Portage's `!obj`, `!sym`, `!dir`, `!fif`
    /// are reported by vartree as `!type`), with the entry type.
    decisions: BTreeMap<String, (String, String)>,
}

/// The dumps of both roots after a step.
struct Dumps {
    p: Value,
    v: Value,
}

impl Dumps {
    fn tree(&self, which: char) -> &Map<String, Value> {
        let d = if which == 'p' { &self.p } else { &self.v };
        d["tree"].as_object().expect("tree is an object")
    }
    fn entry(&self, which: char, path: &str) -> Option<&Value> {
        self.tree(which).get(path)
    }
    fn vdb(&self, which: char) -> &str {
        let d = if which == 'p' { &self.p } else { &self.v };
        d["vdb"].as_str().unwrap_or("")
    }
}

struct Seq {
    name: &'static str,
    py: PathBuf,
    tests: PathBuf,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    root_p: PathBuf,
    root_v: PathBuf,
    eprefix: String,
    failures: Vec<String>,
    compared_entries: usize,
    compared_vdb_lines: usize,
    compared_decisions: usize,
    checks: usize,
    steps: usize,
    /// Images built so far (names their directories).
    images: usize,
    /// The counter file before the last step that both tools refused (the
    /// accepted COUNTER difference, see the module documentation).
    refused_counter_before: Option<Value>,
    /// Portage's VDB dump after the last step (for the CONTENTS of a
    /// package about to be unmerged).
    last_vdb_p: String,
    /// Set by `compare` after the accepted COUNTER difference: the value
    /// to write into ROOT_V's counter file so that both roots go on with
    /// the same COUNTERs.
    resync_counter: Option<String>,
    /// Options every merge of the scenario gets: [Portage, vartree].
    merge_extra: [Vec<String>; 2],
    /// Deliberate decision differences: (path, Portage's, vartree's, times
    /// seen).
    accepted_decisions: Vec<(String, String, String, usize)>,
}

impl Seq {
    fn new(name: &'static str, eprefix: &str) -> Option<Seq> {
        let py = python()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("vartree-upgrade-portage-{name}-"))
            .tempdir()
            .expect("tempdir");
        let path = dir.path().canonicalize().expect("canonicalize tempdir");
        let root_p = path.join("root-portage");
        let root_v = path.join("root-vartree");
        std::fs::create_dir(&root_p).expect("mkdir ROOT_P");
        std::fs::create_dir(&root_v).expect("mkdir ROOT_V");
        let mut s = Seq {
            name,
            py,
            tests: workspace().join("tests").join("portage"),
            dir: Some(dir),
            path,
            root_p,
            root_v,
            eprefix: eprefix.to_string(),
            failures: Vec::new(),
            compared_entries: 0,
            compared_vdb_lines: 0,
            compared_decisions: 0,
            checks: 0,
            steps: 0,
            images: 0,
            refused_counter_before: None,
            last_vdb_p: String::new(),
            resync_counter: None,
            merge_extra: [Vec::new(), Vec::new()],
            accepted_decisions: Vec::new(),
        };
        if !eprefix.is_empty() {
            s.live("eprefix-dir");
        }
        Some(s)
    }

    fn python(&self, script: &str) -> Command {
        let mut c = Command::new(&self.py);
        c.arg(self.tests.join(script));
        c.env("PYTHONUTF8", "1").env("PYTHONDONTWRITEBYTECODE", "1");
        c.stdin(Stdio::null());
        c
    }

    fn vartree(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
        for k in SETTINGS_ENV {
            c.env_remove(k);
        }
        c.stdin(Stdio::null());
        c.arg("--root").arg(&self.root_v);
        if !self.eprefix.is_empty() {
            c.args(["--eprefix", &self.eprefix]);
        }
        c
    }

    fn must(&self, what: &str, c: &mut Command) -> Output {
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("[{}] {what}: cannot run: {e}", self.name));
        assert!(
            out.status.success(),
            "[{}] {what} failed ({})\n  stderr: {}\n  stdout: {}",
            self.name,
            out.status,
            snippet(&out.stderr),
            snippet(&out.stdout)
        );
        out
    }

    fn fail(&mut self, msg: impl Into<String>) {
        self.failures
            .push(format!("[{}] {}", self.name, msg.into()));
    }

    fn check(&mut self, cond: bool, msg: impl Into<String>) {
        self.checks += 1;
        if !cond {
            self.fail(msg);
        }
    }

    /// A live state or admin action, applied to both roots.
    fn live(&mut self, name: &str) {
        for root in [self.root_p.clone(), self.root_v.clone()] {
            let mut c = self.python("upgrade_fixtures.py");
            c.args(["live", name]).arg(&root);
            if !self.eprefix.is_empty() {
                c.args(["--eprefix", &self.eprefix]);
            }
            self.must(&format!("live/admin {name}"), &mut c);
        }
    }

    /// Image `name`, built anew (twice: for Portage, for vartree) for every
    /// merge, so that no merge sees what an earlier one did to an image.
    fn image(&mut self, name: &str) -> Img {
        self.images += 1;
        let n = self.images;
        let base = self.path.join(format!("img{n}-{name}"));
        let mut cpv = String::new();
        let mut dirs = Vec::new();
        for tool in ["portage", "vartree"] {
            let out = base.join(tool);
            let mut c = self.python("upgrade_fixtures.py");
            c.args(["image", name]).arg(&out).args(["--for", tool]);
            if !self.eprefix.is_empty() {
                c.args(["--eprefix", &self.eprefix]);
            }
            let o = self.must(&format!("image {name}"), &mut c);
            cpv = String::from_utf8_lossy(&o.stdout).trim().to_string();
            dirs.push(out);
        }
        Img {
            cpv,
            v: dirs.pop().expect("vartree image"),
            p: dirs.pop().expect("portage image"),
        }
    }

    fn counter_file(&self, root: &Path) -> Value {
        let eroot = root.join(self.eprefix.trim_start_matches('/'));
        std::fs::read_to_string(eroot.join("var/cache/edb/counter"))
            .map_or(Value::Null, Value::from)
    }

    fn run(&self, c: &mut Command, what: &str) -> Run {
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("[{}] {what}: cannot run: {e}", self.name));
        let mut text = snippet(&out.stdout);
        let err = snippet(&out.stderr);
        if err != "(empty)" {
            text = format!("{text}\n  stderr: {err}");
        }
        Run {
            ok: out.status.success(),
            code: out.status.code().unwrap_or(-1),
            text,
            decisions: BTreeMap::new(),
        }
    }

    /// Compare the exit status of a step; remember the counter file when
    /// both refused.
    fn exit_status(
        &mut self,
        step: &str,
        p: &Run,
        v: &Run,
        expect_ok: bool,
        before: (Value, Value),
    ) {
        self.refused_counter_before = (!p.ok && !v.ok && before.0 == before.1).then_some(before.0);
        let what = |ok| if ok { "succeeded" } else { "failed" };
        self.checks += 1;
        if p.ok != v.ok {
            self.fail(format!(
                "{step}: exit status differs: Portage {} (exit {}), vartree {} (exit {})\n  Portage: {}\n  vartree: {}",
                what(p.ok), p.code, what(v.ok), v.code, p.text, v.text
            ));
        } else if p.ok != expect_ok {
            self.fail(format!(
                "{step}: both {}, but the scenario expects them to have {}\n  Portage: {}\n  vartree: {}",
                what(p.ok),
                what(expect_ok),
                p.text,
                v.text
            ));
        }
    }

    /// Merge image `name` with both tools, then compare.
    fn merge(&mut self, label: &str, name: &str, expect_ok: bool) -> Dumps {
        self.merge_with(label, name, expect_ok, &[], &[])
    }

    /// `merge` with extra options for merge_portage.py and `vartree merge`
    /// (after the scenario-wide `merge_extra`).
    fn merge_with(
        &mut self,
        label: &str,
        name: &str,
        expect_ok: bool,
        portage_extra: &[&str],
        vartree_extra: &[&str],
    ) -> Dumps {
        self.steps += 1;
        let step = format!("step {} ({label})", self.steps);
        let img = self.image(name);
        let before = (
            self.counter_file(&self.root_p),
            self.counter_file(&self.root_v),
        );
        let mut c = self.python("merge_portage.py");
        if !self.eprefix.is_empty() {
            c.args(["--eprefix", &self.eprefix]);
        }
        c.arg("--root").arg(&self.root_p);
        c.arg("--image").arg(img.p.join("image"));
        c.args(["--cpv", &img.cpv]);
        c.arg("--build-info").arg(img.p.join("build-info"));
        c.args(["--no-ebuild", "--no-env-update", "--phases", "skip"]);
        c.args(&self.merge_extra[0]).args(portage_extra);
        let p = self.run(&mut c, "merge_portage.py");
        let mut c = self.vartree();
        c.arg("merge");
        c.arg("--image").arg(img.v.join("image"));
        c.arg("--build-info").arg(img.p.join("build-info"));
        c.args(["--sync", "never"]);
        c.args(&self.merge_extra[1]).args(vartree_extra);
        let v = self.run(&mut c, "vartree merge");
        self.exit_status(&step, &p, &v, expect_ok, before);
        let d = self.dumps();
        self.compare(&step, &d, None);
        if let Some(n) = self.resync_counter.take() {
            let eroot = self.root_v.join(self.eprefix.trim_start_matches('/'));
            std::fs::write(eroot.join("var/cache/edb/counter"), n).expect("write counter file");
        }
        d
    }

    /// Unmerge `=cpv` with both tools, then compare (trees, VDB, and the
    /// per-entry decisions).
    fn unmerge(
        &mut self,
        label: &str,
        cpv: &str,
        portage_extra: &[&str],
        vartree_extra: &[&str],
        expect_ok: bool,
    ) -> (Dumps, Run, Run) {
        self.steps += 1;
        let step = format!("step {} ({label})", self.steps);
        let contents = contents_paths(&self.last_vdb_p, cpv);
        let before = (
            self.counter_file(&self.root_p),
            self.counter_file(&self.root_v),
        );
        let (d, p, v) = self.unmerge_run(cpv, portage_extra, vartree_extra);
        self.exit_status(&step, &p, &v, expect_ok, before);
        self.compare(&step, &d, Some((&p, &v)));
        if p.ok && v.ok {
            self.compare_decisions(&step, &contents, &p, &v);
        }
        (d, p, v)
    }

    /// Unmerge `=cpv` with both tools and dump; no comparison (for
    /// scenarios that assert a deliberate difference first).
    fn unmerge_raw(&mut self, cpv: &str) -> (Dumps, Run, Run) {
        self.unmerge_run(cpv, &[], &[])
    }

    fn unmerge_run(
        &mut self,
        cpv: &str,
        portage_extra: &[&str],
        vartree_extra: &[&str],
    ) -> (Dumps, Run, Run) {
        let mut c = self.python("upgrade_unmerge.py");
        if !self.eprefix.is_empty() {
            c.args(["--eprefix", &self.eprefix]);
        }
        c.arg("--root").arg(&self.root_p);
        c.args([
            "--cpv",
            cpv,
            "--verbose",
            "--no-env-update",
            "--phases",
            "skip",
        ]);
        c.args(portage_extra);
        let out = c.output().expect("run upgrade_unmerge.py");
        let mut p = Run {
            ok: out.status.success(),
            code: out.status.code().unwrap_or(-1),
            text: format!(
                "{}\n  stderr: {}",
                snippet(&out.stdout),
                snippet(&out.stderr)
            ),
            decisions: BTreeMap::new(),
        };
        let root = self.root_p.to_string_lossy().into_owned();
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            if let Some((path, d)) = portage_decision(line, &root) {
                p.decisions.insert(path, d);
            }
        }
        let mut c = self.vartree();
        c.args(["unmerge", "--json"]);
        c.args(vartree_extra);
        c.arg(format!("={cpv}"));
        let out = c.output().expect("run vartree unmerge");
        let mut v = Run {
            ok: out.status.success(),
            code: out.status.code().unwrap_or(-1),
            text: format!(
                "{}\n  stderr: {}",
                snippet(&out.stdout),
                snippet(&out.stderr)
            ),
            decisions: BTreeMap::new(),
        };
        if let Ok(j) = serde_json::from_slice::<Value>(&out.stdout) {
            v.decisions = vartree_decisions(&j);
        }
        let d = self.dumps();
        (d, p, v)
    }

    /// `vartree unmerge --pretend --json =cpv`: must succeed and leave
    /// ROOT_V exactly as it was (files, VDB, counter, confmem). Returns the
    /// decisions it announced.
    fn unmerge_pretend(&mut self, cpv: &str, extra: &[&str]) -> (Run, BTreeSet<String>) {
        let contents = contents_paths(&self.last_vdb_p, cpv);
        self.steps += 1;
        let step = format!("step {} (vartree unmerge --pretend {cpv})", self.steps);
        let before = self.dump_one(&self.root_v.clone());
        let mut c = self.vartree();
        c.args(["unmerge", "--pretend", "--json"]);
        c.args(extra);
        c.arg(format!("={cpv}"));
        let out = c.output().expect("run vartree unmerge --pretend");
        let mut v = Run {
            ok: out.status.success(),
            code: out.status.code().unwrap_or(-1),
            text: format!(
                "{}\n  stderr: {}",
                snippet(&out.stdout),
                snippet(&out.stderr)
            ),
            decisions: BTreeMap::new(),
        };
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(j) => v.decisions = vartree_decisions(&j),
            Err(e) => self.fail(format!(
                "{step}: --json output is not JSON ({e}): {}",
                v.text
            )),
        }
        self.check(
            v.ok,
            format!("{step}: failed (exit {}): {}", v.code, v.text),
        );
        self.check(
            !v.decisions.is_empty(),
            format!("{step}: announced no decisions: {}", v.text),
        );
        let after = self.dump_one(&self.root_v.clone());
        let same = Dumps {
            p: before,
            v: after,
        };
        let n = self.failures.len();
        self.compare_labeled(&step, &same, None, ["before --pretend", "after --pretend"]);
        self.checks += 1;
        if self.failures.len() != n {
            self.fail(format!("{step}: --pretend changed ROOT (see above)"));
        }
        (v, contents)
    }

    fn dump_cmd(&self, roots: &[&Path]) -> Vec<Value> {
        let mut c = self.python("upgrade_dump.py");
        if !self.eprefix.is_empty() {
            c.args(["--eprefix", &self.eprefix]);
        }
        for r in roots {
            c.arg(r);
        }
        let out = self.must("upgrade_dump.py", &mut c);
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(Value::Array(a)) if a.len() == roots.len() => a,
            other => panic!(
                "[{}] upgrade_dump.py output is not a list of {} dumps: {:?}",
                self.name,
                roots.len(),
                other.err()
            ),
        }
    }

    fn dump_one(&self, root: &Path) -> Value {
        self.dump_cmd(&[root]).pop().expect("one dump")
    }

    fn dumps(&self) -> Dumps {
        let mut a = self.dump_cmd(&[&self.root_p, &self.root_v]);
        let v = a.pop().expect("vartree dump");
        let p = a.pop().expect("Portage dump");
        Dumps { p, v }
    }

    fn compare(&mut self, step: &str, d: &Dumps, runs: Option<(&Run, &Run)>) {
        self.compare_labeled(step, d, runs, ["Portage", "vartree"]);
        self.last_vdb_p = d.vdb('p').to_string();
    }

    /// Compare everything of two dumps. With `runs` (an unmerge), a path
    /// that differs is annotated with both tools' decisions for it.
    fn compare_labeled(
        &mut self,
        step: &str,
        d: &Dumps,
        runs: Option<(&Run, &Run)>,
        [lp, lv]: [&str; 2],
    ) {
        let why = |path: &str| -> String {
            let Some((p, v)) = runs else {
                return String::new();
            };
            let rel = path.to_string();
            let show = |r: &Run| {
                r.decisions
                    .get(&rel)
                    .map_or("(no decision)".to_string(), |(a, t)| format!("{a} {t}"))
            };
            format!(" [Portage decided: {}; vartree: {}]", show(p), show(v))
        };
        let tp = d.tree('p').clone();
        let tv = d.tree('v').clone();
        let paths: BTreeSet<&String> = tp.keys().chain(tv.keys()).collect();
        for path in paths {
            match (tp.get(path), tv.get(path)) {
                (Some(a), None) => self.fail(format!(
                    "{step}: tree: only in {lp}'s root: {path} {}{}",
                    compact(&strip_ino(a)),
                    why(path)
                )),
                (None, Some(b)) => self.fail(format!(
                    "{step}: tree: only in {lv}'s root: {path} {}{}",
                    compact(&strip_ino(b)),
                    why(path)
                )),
                (Some(a), Some(b)) => {
                    self.compared_entries += 1;
                    let (a, b) = (strip_ino(a), strip_ino(b));
                    if a != b {
                        let (ao, bo) =
                            (a.as_object().expect("entry"), b.as_object().expect("entry"));
                        let fields: BTreeSet<&String> = ao.keys().chain(bo.keys()).collect();
                        let diffs: Vec<String> = fields
                            .into_iter()
                            .filter(|f| ao.get(*f) != bo.get(*f))
                            .map(|f| {
                                format!(
                                    "{f}: {lp} {}, {lv} {}",
                                    ao.get(f).map_or("(none)".into(), compact),
                                    bo.get(f).map_or("(none)".into(), compact)
                                )
                            })
                            .collect();
                        self.fail(format!(
                            "{step}: tree: {path}: {}{}",
                            diffs.join("; "),
                            why(path)
                        ));
                    }
                }
                (None, None) => {}
            }
        }
        let (vp, vv) = (d.vdb('p').to_string(), d.vdb('v').to_string());
        self.compared_vdb_lines += vp.lines().count();
        if vp != vv {
            self.fail(format!(
                "{step}: vdb entries differ (- {lp}, + {lv}):\n{}",
                line_diff(&vp, &vv)
            ));
        }
        let mut counter_ok = d.p["counter"] == d.v["counter"];
        if !counter_ok {
            if let Some(before) = &self.refused_counter_before {
                let next = before
                    .as_str()
                    .map_or(Some(0), |s| s.parse::<i64>().ok().map(|n| n + 1));
                if next.is_some_and(|n| d.p["counter"].as_str() == Some(n.to_string().as_str()))
                    && &d.v["counter"] == before
                {
                    eprintln!(
                        "[{}] {step}: accepted: Portage consumed COUNTER {} on the refused merge, vartree none; \
                         ROOT_V's counter file set to Portage's for the next steps",
                        self.name,
                        compact(&d.p["counter"]),
                    );
                    counter_ok = true;
                    self.resync_counter = d.p["counter"].as_str().map(str::to_string);
                }
            }
        }
        self.checks += 1;
        if !counter_ok {
            self.fail(format!(
                "{step}: counter file: {lp} {}, {lv} {}",
                compact(&d.p["counter"]),
                compact(&d.v["counter"])
            ));
        }
        for key in ["merging", "vdb_dirs", "confmem", "journal"] {
            self.checks += 1;
            if d.p[key] != d.v[key] {
                self.fail(format!(
                    "{step}: {key}: {lp} {}, {lv} {}",
                    compact(&d.p[key]),
                    compact(&d.v[key])
                ));
            }
        }
    }

    /// Portage's and vartree's decision for every non-directory entry of
    /// the package's CONTENTS (`contents`). Portage also reports the
    /// `dir`/`dir.old` info indexes it deletes, which are no CONTENTS
    /// entries (the tree comparison covers them).
    fn compare_decisions(&mut self, step: &str, contents: &BTreeSet<String>, p: &Run, v: &Run) {
        self.check(
            !contents.is_empty(),
            format!("{step}: no CONTENTS of the package found in the previous dump"),
        );
        let files = |r: &Run| -> BTreeMap<String, (String, String)> {
            r.decisions
                .iter()
                .filter(|(k, (_, t))| t != "dir" && contents.contains(*k))
                .map(|(k, d)| (k.clone(), d.clone()))
                .collect()
        };
        let (fp, fv) = (files(p), files(v));
        self.check(
            !fp.is_empty(),
            format!(
                "{step}: no decisions read from Portage's --verbose output:\n  {}",
                p.text
            ),
        );
        let paths: BTreeSet<&String> = fp.keys().chain(fv.keys()).collect();
        let mut diffs = Vec::new();
        for path in paths {
            self.compared_decisions += 1;
            let a = fp.get(path).map(|(a, t)| format!("{a} {t}"));
            let b = fv.get(path).map(|(a, t)| format!("{a} {t}"));
            if a != b {
                let (a, b) = (
                    a.unwrap_or_else(|| "(none)".into()),
                    b.unwrap_or_else(|| "(none)".into()),
                );
                if let Some(acc) = self
                    .accepted_decisions
                    .iter_mut()
                    .find(|acc| acc.0 == **path && acc.1 == a && acc.2 == b)
                {
                    acc.3 += 1;
                    self.checks += 1;
                    eprintln!(
                        "[{}] {step}: accepted deliberate difference: {path}: Portage {a}, vartree {b}",
                        self.name
                    );
                    continue;
                }
                diffs.push(format!("  {path}: Portage {a}, vartree {b}"));
            }
        }
        if !diffs.is_empty() {
            self.fail(format!(
                "{step}: unmerge decisions differ:\n{}",
                diffs.join("\n")
            ));
        }
    }

    /// Accept one exact decision difference (`"(none)"` for no decision);
    /// `finish` fails if it never occurred.
    fn accept_decision(&mut self, path: &str, portage: &str, vartree: &str) {
        self.accepted_decisions
            .push((path.into(), portage.into(), vartree.into(), 0));
    }

    fn finish(mut self) {
        for (path, a, b, n) in std::mem::take(&mut self.accepted_decisions) {
            self.check(
                n > 0,
                format!("the deliberate decision difference {path}: Portage {a}, vartree {b} did not occur"),
            );
        }
        if self.compared_entries == 0 || self.compared_vdb_lines == 0 || self.checks == 0 {
            self.fail(format!(
                "compared nothing ({} tree entries, {} vdb lines, {} checks)",
                self.compared_entries, self.compared_vdb_lines, self.checks
            ));
        }
        let keep = !self.failures.is_empty() || env_is("VARTREE_KEEP_DIFF_WORKDIR", "1");
        let dir = self.dir.take().expect("dir");
        let where_ = if keep {
            let p = dir.keep();
            format!("work directory kept: {}", p.display())
        } else {
            drop(dir);
            String::new()
        };
        eprintln!(
            "[{}] {} steps: compared {} tree entries, {} vdb lines, {} unmerge decisions, {} checks{}",
            self.name,
            self.steps,
            self.compared_entries,
            self.compared_vdb_lines,
            self.compared_decisions,
            self.checks,
            if where_.is_empty() {
                String::new()
            } else {
                format!("; {where_}")
            }
        );
        assert!(
            self.failures.is_empty(),
            "{} difference(s) between Portage and vartree ({where_}):\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// One line of Portage's `--verbose` unmerge output:
/// `"{zing} {desc:<8} {type} {ROOT}{path}"` → (path, (`"zing desc"`, type)).
/// `!obj`, `!sym`, `!dir`, `!fif` become `!type` (vartree's one label).
fn portage_decision(line: &str, root: &str) -> Option<(String, (String, String))> {
    let zing = line.get(..3)?;
    if !matches!(zing, "<<<" | "---" | "!!!") || line.get(3..4)? != " " {
        return None;
    }
    let desc = line.get(4..12)?.trim();
    let rest = line.get(13..)?;
    let (ty, path) = rest.split_once(' ')?;
    if !matches!(ty, "obj" | "sym" | "dir" | "fif" | "dev") {
        return None;
    }
    let path = path.strip_prefix(root)?;
    let desc = match desc {
        "!obj" | "!sym" | "!dir" | "!fif" => "!type",
        d => d,
    };
    let action = if desc.is_empty() {
        zing.to_string()
    } else {
        format!("{zing} {desc}")
    };
    Some((path.to_string(), (action, ty.to_string())))
}

/// The non-directory paths of `cpv`'s CONTENTS in a `vdb_dump.py` text.
fn contents_paths(vdb: &str, cpv: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(start) = vdb.find(&format!("##### {cpv}\n")) else {
        return out;
    };
    let mut lines = vdb[start..].lines().skip(1);
    for l in lines.by_ref() {
        if l.starts_with("== CONTENTS") {
            break;
        }
    }
    for l in lines {
        if l.starts_with("== ") || l.starts_with("##### ") {
            break;
        }
        let Some((ty, rest)) = l.split_once(' ') else {
            continue;
        };
        let path = match ty {
            "obj" => rest.rsplitn(3, ' ').nth(2),
            "sym" => rest.split_once(" -> ").map(|(p, _)| p),
            "fif" | "dev" => Some(rest),
            _ => None,
        };
        if let Some(p) = path {
            out.insert(normalize(p));
        }
    }
    out
}

/// Portage's `normalize_path` as the CONTENTS parser applies it, forced
/// absolute: `//`, `.` and `..` components resolved lexically.
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// vartree's `unmerge --json` items → (path, (action, type)).
fn vartree_decisions(j: &Value) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for pkg in j.as_array().into_iter().flatten() {
        for it in pkg["items"].as_array().into_iter().flatten() {
            let (Some(path), Some(action), Some(ty)) = (
                it["path"].as_str(),
                it["action"].as_str(),
                it["type"].as_str(),
            ) else {
                continue;
            };
            out.insert(path.to_string(), (action.to_string(), ty.to_string()));
        }
    }
    out
}

// ------------------------------------------------------------- scenarios

/// The upgrade sequence on `s`: install `<pfx>-1.0`, the admin's changes
/// (`admin`), upgrade to 1.1, reinstall 1.1, (`before_downgrade`),
/// downgrade to 1.0, unmerge. `lib_symlink`: ROOT has a live
/// `/lib -> usr/lib` (under EPREFIX).
fn upgrade_sequence(
    s: &mut Seq,
    pfx: &str,
    admin: &str,
    before_downgrade: Option<&str>,
    lib_symlink: bool,
) {
    let ep = s.eprefix.clone();
    let sh = format!("{ep}/usr/share/upg");
    if lib_symlink {
        s.live("lib-symlink");
    }
    let d = s.merge("install upg-1.0", &format!("{pfx}-1.0"), true);
    s.check(
        d.vdb('p').contains(&format!("obj {ep}/lib/upg/plugin.so "))
            && str_field(d.entry('p', &format!("{sh}/x")), "type") == "reg",
        "fixture check: Portage's upg-1.0 lacks /lib/upg/plugin.so or the file x",
    );
    s.live(admin);
    let d = s.merge("upgrade to upg-1.1", &format!("{pfx}-1.1"), true);
    // The scenario had what it is about (Portage's root).
    for (path, ty) in [
        ("x", "dir"),
        ("x/inner.txt", "reg"),
        ("l1", "reg"),
        ("f1", "sym"),
        ("unowned.txt", "reg"),
        ("admin-dir/unowned.txt", "reg"),
        ("admin-deleted.txt", "reg"),
    ] {
        let got = str_field(d.entry('p', &format!("{sh}/{path}")), "type").to_string();
        s.check(
            got == ty,
            format!("fixture check: Portage's root after the upgrade: {sh}/{path} is {got:?}, expected {ty}"),
        );
    }
    for gone in [
        "old-only.txt",
        "admin-edited-gone.txt",
        "mtime-only-gone.txt",
        "gone-tree",
    ] {
        s.check(
            d.entry('p', &format!("{sh}/{gone}")).is_none(),
            format!("fixture check: Portage's root after the upgrade still has {sh}/{gone}"),
        );
    }
    if pfx.contains("etcadm") {
        let e = format!("{ep}/etc/upg");
        for cfg in ["admin.conf", "admin-deleted.conf", "admin-link"] {
            s.check(
                d.entry('p', &format!("{e}/._cfg0000_{cfg}")).is_some(),
                format!("fixture check: Portage did not merge {e}/._cfg0000_{cfg}"),
            );
        }
        s.check(
            d.entry('p', &format!("{e}/._cfg0000_admin-identical.conf")).is_none()
                && d.entry('p', &format!("{ep}/etc/env.d/._cfg0000_50upg")).is_none()
                && d.entry('p', &format!("{e}/admin-deleted.conf")).is_none(),
            "fixture check: Portage protected admin-identical.conf or 50upg, or re-created admin-deleted.conf",
        );
        s.check(
            compact(&d.p["confmem"]).contains(&format!("{e}/admin.conf ")),
            format!(
                "fixture check: Portage's confmem: {}",
                compact(&d.p["confmem"])
            ),
        );
    }
    if lib_symlink {
        s.check(
            str_field(d.entry('p', &format!("{ep}/lib")), "target") == "usr/lib"
                && str_field(d.entry('p', &format!("{ep}/usr/lib/upg/plugin.so")), "type") == "reg"
                && str_field(d.entry('p', &format!("{ep}/usr/lib/libupg.so.1")), "type") == "reg",
            "fixture check: Portage's root lost /lib -> usr/lib or a file 1.1 owns through it",
        );
    }
    s.merge("reinstall upg-1.1", &format!("{pfx}-1.1"), true);
    if let Some(a) = before_downgrade {
        s.live(a);
    }
    s.merge("downgrade to upg-1.0", &format!("{pfx}-1.0"), true);
    let (d, _, _) = s.unmerge("unmerge upg-1.0", "app-misc/upg-1.0", &[], &[], true);
    s.check(
        d.entry('p', &format!("{sh}/unowned.txt")).is_some()
            && !d.vdb('p').contains("##### app-misc/upg-"),
        "fixture check: Portage's root after the unmerge: unowned.txt gone or the entry left",
    );
}

/// Sequence 1 without /etc files: install 1.0; the admin edits a file's
/// content, changes only the mtime of another, deletes one, adds unowned
/// files (also in a directory that disappears in 1.1); upgrade to 1.1
/// (files added and removed, x file→directory, z directory→file, l1
/// symlink→file, f1 file→symlink, a symlink re-pointed, hard links, FIFOs,
/// a device node, files moving between /lib and /usr/lib); reinstall 1.1;
/// downgrade to 1.0 (all of it backwards); unmerge.
#[test]
fn upgrade_reinstall_downgrade_unmerge() {
    let Some(mut s) = Seq::new("upgrade", "") else {
        return;
    };
    upgrade_sequence(&mut s, "upg", "admin-upg", None, false);
    s.finish();
}

/// Sequence 1 with /etc files that need no config protection while
/// merging: unchanged, changed by the package (unmodified by the admin:
/// `config-protect-if-modified` replaces it), removed in 1.1 unmodified
/// (removed), removed in 1.1 after the admin edited it (kept by the
/// unmerge of 1.0, then deleted by the admin before the downgrade).
#[test]
fn upgrade_sequence_with_unmodified_configs() {
    let Some(mut s) = Seq::new("upgrade-etc", "") else {
        return;
    };
    upgrade_sequence(
        &mut s,
        "upg-etc",
        "admin-upg-etc",
        Some("admin-upg-etc-cleanup"),
        false,
    );
    s.finish();
}

/// The complete sequence 1 with config protection at work: a config in
/// /etc the admin modified and the package changes (Portage merges
/// `._cfg0000_admin.conf` and records it in the config memory; the
/// downgrade adds `._cfg0001_admin.conf`), a protected symlink the admin
/// re-pointed (`._cfg0000_admin-link`), a config the admin deleted (merged
/// as `._cfg0000_admin-deleted.conf` only, bug 523684), one the admin made
/// identical to the new version's (replaced, remembered in confmem), an
/// empty `.keep` file, and /etc/env.d/50upg (CONFIG_PROTECT_MASK:
/// overwritten).
#[test]
fn upgrade_sequence_with_modified_config() {
    let Some(mut s) = Seq::new("upgrade-etc-admin", "") else {
        return;
    };
    upgrade_sequence(
        &mut s,
        "upg-etcadm",
        "admin-upg-etcadm",
        Some("admin-upg-etc-cleanup"),
        false,
    );
    s.finish();
}

/// Sequence 2: sequence 1 with a live `/lib -> usr/lib` in ROOT: 1.0
/// installs /lib/upg/*, /lib/libupg.so.1, 1.1 the same names under
/// /usr/lib (the same files through the symlink: the old instance's
/// unmerge must keep them), and /usr/lib/upg-extra.so moves to /lib.
#[test]
fn upgrade_sequence_lib_symlink() {
    let Some(mut s) = Seq::new("upgrade-libsym", "") else {
        return;
    };
    upgrade_sequence(
        &mut s,
        "upg-etc",
        "admin-upg-etc",
        Some("admin-upg-etc-cleanup"),
        true,
    );
    s.finish();
}

/// Sequence 3: sequence 1 (with unmodified configs) with EPREFIX=/opt/gentoo.
#[test]
fn upgrade_sequence_eprefix() {
    let Some(mut s) = Seq::new("upgrade-eprefix", EPREFIX) else {
        return;
    };
    upgrade_sequence(
        &mut s,
        "upg-etc",
        "admin-upg-etc",
        Some("admin-upg-etc-cleanup"),
        false,
    );
    s.finish();
}

/// Sequence 3 with the live `EPREFIX/lib -> usr/lib` as well.
#[test]
fn upgrade_sequence_eprefix_lib_symlink() {
    let Some(mut s) = Seq::new("upgrade-eprefix-libsym", EPREFIX) else {
        return;
    };
    upgrade_sequence(&mut s, "upg", "admin-upg", None, true);
    s.finish();
}

/// Sequence 1 (with config protection) with Portage's
/// FEATURES=merge-use-vdb and `vartree merge --trust-vdb`: a live file
/// whose mtime matches its CONTENTS record is taken to have the recorded
/// md5, so content-only.txt, which the admin edited keeping the mtime, is
/// left as the admin made it on the upgrade (its content is what 1.1
/// ships, by the record).
#[test]
fn upgrade_sequence_trust_vdb() {
    let Some(mut s) = Seq::new("upgrade-trust-vdb", "") else {
        return;
    };
    s.merge_extra = [
        vec!["--features".into(), "merge-use-vdb".into()],
        vec!["--trust-vdb".into()],
    ];
    upgrade_sequence(
        &mut s,
        "upg-etcadm",
        "admin-upg-etcadm",
        Some("admin-upg-etc-cleanup"),
        false,
    );
    s.finish();
}

/// Files owned by more than one package. Portage's unmerge (also of a
/// replaced instance) consults only the instances of the same slot, so:
/// sha-a-1.0 and sha-b-1.0 (merged with protect-owned off) both own
/// shared.txt; reinstalling sha-a-1.0 (protect-owned on) is no collision;
/// upgrading sha-a to 1.1, which dropped it, deletes it
/// although sha-b still lists it (`!found` when sha-b goes). Likewise
/// sl-1.0 (SLOT 1) and sl-2.0 (SLOT 2, merged with protect-owned off) own
/// common.txt; sl-2.1 (SLOT 2/2.1) replaces only sl-2.0 and deletes
/// common.txt; sl-1.0 stays installed.
#[test]
fn upgrade_drops_file_another_package_owns() {
    let Some(mut s) = Seq::new("shared-files", "") else {
        return;
    };
    s.merge("install sha-a-1.0", "sha-a-1.0", true);
    s.merge_with(
        "install sha-b-1.0 (protect-owned off)",
        "sha-b",
        true,
        &["--features", "-protect-owned"],
        &["--no-protect-owned"],
    );
    // With protect-owned on: a path the replaced instance owns is no
    // collision, although sha-b owns it too (`_collision_protect` asks only
    // whether the instances being replaced own it).
    s.merge(
        "reinstall sha-a-1.0 (shared.txt also sha-b's: not a collision)",
        "sha-a-1.0",
        true,
    );
    let d = s.merge("upgrade sha-a to 1.1 (drops shared.txt)", "sha-a-1.1", true);
    s.check(
        d.entry('p', "/usr/share/sha/shared.txt").is_none()
            && d.vdb('p').contains("obj /usr/share/sha/shared.txt "),
        "fixture check: Portage kept shared.txt or sha-b's CONTENTS lost it",
    );
    s.unmerge("unmerge sha-b-1.0", "app-misc/sha-b-1.0", &[], &[], true);
    s.merge("install sl-1.0 (SLOT 1)", "sl-1.0", true);
    s.merge_with(
        "install sl-2.0 (SLOT 2, protect-owned off)",
        "sl-2.0",
        true,
        &["--features", "-protect-owned"],
        &["--no-protect-owned"],
    );
    let d = s.merge(
        "upgrade to sl-2.1 (SLOT 2/2.1, drops common.txt)",
        "sl-2.1",
        true,
    );
    s.check(
        d.vdb('p').contains("##### app-misc/sl-1.0\n")
            && d.vdb('p').contains("##### app-misc/sl-2.1\n")
            && !d.vdb('p').contains("##### app-misc/sl-2.0\n")
            && d.entry('p', "/usr/share/sl/common.txt").is_none(),
        "fixture check: Portage's root after sl-2.1: expected sl-1.0 and sl-2.1, common.txt gone",
    );
    s.unmerge("unmerge sl-1.0", "app-misc/sl-1.0", &[], &[], true);
    s.unmerge("unmerge sl-2.1", "app-misc/sl-2.1", &[], &[], true);
    s.unmerge("unmerge sha-a-1.1", "app-misc/sha-a-1.1", &[], &[], true);
    s.finish();
}

/// The package's own directory symlink: 1.0 installs `real/a.txt`,
/// `real/b.txt` and `link -> real`; 1.1 installs `link/a.txt` (identical)
/// and `link/c.txt` through that live symlink. Upgrade: the old
/// instance's `real/a.txt` is owned by the new one through the symlinked
/// directory (kept), `real/b.txt` goes, `link` stays a symlink (`sym`
/// owned as `dir`: Portage's symlink_orphan case, kept); reinstall;
/// downgrade (1.1's `link/c.txt` goes, `link/a.txt` is 1.0's `real/a.txt`);
/// unmerge.
#[test]
fn upgrade_through_package_directory_symlink() {
    let Some(mut s) = Seq::new("package-dirlink", "") else {
        return;
    };
    let sh = "/usr/share/dlk";
    s.merge("install dlk-1.0", "dlk-1.0", true);
    let d = s.merge("upgrade to dlk-1.1 (through link -> real)", "dlk-1.1", true);
    s.check(
        str_field(d.entry('p', &format!("{sh}/link")), "type") == "sym"
            && str_field(d.entry('p', &format!("{sh}/real/a.txt")), "type") == "reg"
            && str_field(d.entry('p', &format!("{sh}/real/c.txt")), "type") == "reg"
            && d.entry('p', &format!("{sh}/real/b.txt")).is_none()
            && d.vdb('p').contains(&format!("obj {sh}/link/a.txt ")),
        "fixture check: Portage's root after the upgrade: expected link -> real, real/a.txt, real/c.txt, no real/b.txt",
    );
    s.merge("reinstall dlk-1.1", "dlk-1.1", true);
    let d = s.merge("downgrade to dlk-1.0", "dlk-1.0", true);
    s.check(
        str_field(d.entry('p', &format!("{sh}/real/a.txt")), "type") == "reg"
            && d.entry('p', &format!("{sh}/real/c.txt")).is_none(),
        "fixture check: Portage's root after the downgrade: expected real/a.txt and no real/c.txt",
    );
    s.unmerge("unmerge dlk-1.0", "app-misc/dlk-1.0", &[], &[], true);
    s.finish();
}

/// A path of the old instance that shares its inode with a path of the
/// new one: the admin hard-linked hli-1.0's `old.txt` to `new.txt`, which
/// hli-1.1 installs with the same content (left in place). Portage's
/// unmerge of 1.0 knows nothing of inodes: `old.txt` is not 1.1's, so it
/// is removed (after `chmod 0`, which leaves 1.1's `new.txt` mode 0000).
#[test]
fn upgrade_old_path_hard_linked_to_new_path() {
    let Some(mut s) = Seq::new("hardlink-by-admin", "") else {
        return;
    };
    s.merge("install hli-1.0", "hli-1.0", true);
    s.live("admin-hli");
    let d = s.merge("upgrade to hli-1.1", "hli-1.1", true);
    s.check(
        d.entry('p', "/usr/share/hli/old.txt").is_none()
            && str_field(d.entry('p', "/usr/share/hli/new.txt"), "mode") == "0000",
        "fixture check: Portage's root: expected old.txt gone and new.txt mode 0000",
    );
    s.unmerge("unmerge hli-1.1", "app-misc/hli-1.1", &[], &[], true);
    s.finish();
}

/// Symlink ↔ directory: 1.0 has the symlink `b` (to a file), 1.1 the
/// directory `b/`: the upgrade works (the old symlink is moved aside to
/// `b.backup.0000`, which nobody owns afterwards); the downgrade back to
/// 1.0 would put a symlink where ROOT has a directory: both refuse (PMS
/// 13.4) and ROOT stays as it was; then 1.1 is unmerged.
#[test]
fn symlink_directory_transitions() {
    let Some(mut s) = Seq::new("symlink-dir", "") else {
        return;
    };
    s.merge("install sd-1.0", "sd-1.0", true);
    let d = s.merge(
        "upgrade to sd-1.1 (b: symlink -> directory)",
        "sd-1.1",
        true,
    );
    s.check(
        str_field(d.entry('p', "/usr/share/sd/b"), "type") == "dir"
            && str_field(d.entry('p', "/usr/share/sd/b.backup.0000"), "type") == "sym",
        "fixture check: Portage's root: expected b/ and the old symlink as b.backup.0000",
    );
    s.merge(
        "downgrade to sd-1.0 (b: directory -> symlink)",
        "sd-1.0",
        false,
    );
    s.unmerge("unmerge sd-1.1", "app-misc/sd-1.1", &[], &[], true);
    // directory -> symlink on an upgrade, where the directory is the
    // replaced instance's own: refused too.
    s.merge("install dy-1.0", "dy-1.0", true);
    let d = s.merge(
        "upgrade to dy-1.1 (y: directory -> symlink)",
        "dy-1.1",
        false,
    );
    s.check(
        d.vdb('p').contains("##### app-misc/dy-1.0\n")
            && str_field(d.entry('p', "/usr/lib/dy/y"), "type") == "dir",
        "fixture check: Portage's root: dy-1.0 should still be installed with y/",
    );
    s.unmerge("unmerge dy-1.0", "app-misc/dy-1.0", &[], &[], true);
    s.finish();
}

/// The standalone unmerge edge cases (app-misc/edge-1.0, after the admin's
/// changes; app-misc/other-1.0 is installed too):
/// * /etc/edge/modified.conf (edited), touched.conf (mtime only),
///   content-only.conf (content, mtime restored): kept (`!mtime`, `!md5`);
///   unmodified.conf: removed; /etc/env.d/50edge (CONFIG_PROTECT_MASK,
///   edited): removed (unmerge-orphans);
/// * unprotected files whose mtime or content changed: removed
///   (unmerge-orphans); a deleted file: `!found`; a symlink the admin
///   re-pointed (same mtime): removed (Portage never compares targets);
/// * a directory with an unowned file: kept (`!empty`);
/// * a symlink to a directory holding only the package's regular files:
///   removed (the files go first, entries run in reverse path order);
/// * a FIFO and a character device: removed (unmerge-orphans);
/// * /lib/modules/edge/edge.ko (UNINSTALL_IGNORE): kept (`cfgpro`) next to
///   the admin's other.ko;
/// * /usr/share/info with the admin's `dir` and `dir.old`, and
///   /usr/share/edge/info with `dir`: the indexes and the directories go;
/// * a setuid file: removed;
/// * `vartree unmerge --pretend` first: changes nothing, and announces
///   for each CONTENTS file what the real unmerges then do;
/// * then other-1.0 goes, and with it the category directory app-misc.
#[test]
fn unmerge_edge_cases() {
    let Some(mut s) = Seq::new("unmerge-edge", "") else {
        return;
    };
    unmerge_edge(&mut s);
    s.finish();
}

/// The edge cases with EPREFIX=/opt/gentoo (UNINSTALL_IGNORE and the
/// libdir symlinks are matched relative to EROOT).
#[test]
fn unmerge_edge_cases_eprefix() {
    let Some(mut s) = Seq::new("unmerge-edge-eprefix", EPREFIX) else {
        return;
    };
    unmerge_edge(&mut s);
    s.finish();
}

fn unmerge_edge(s: &mut Seq) {
    let ep = s.eprefix.clone();
    let e = format!("{ep}/usr/share/edge");
    s.merge("install edge-1.0", "edge", true);
    s.merge("install other-1.0", "other", true);
    s.live("admin-edge");
    let (pretend, contents) = s.unmerge_pretend("app-misc/edge-1.0", &[]);
    let (d, p, _) = s.unmerge("unmerge edge-1.0", "app-misc/edge-1.0", &[], &[], true);
    for (path, kept) in [
        (format!("{ep}/etc/edge/modified.conf"), true),
        (format!("{ep}/etc/edge/touched.conf"), true),
        (format!("{ep}/etc/edge/content-only.conf"), true),
        (format!("{ep}/etc/edge/unmodified.conf"), false),
        (format!("{ep}/etc/env.d/50edge"), false),
        (format!("{e}/touched.txt"), false),
        (format!("{e}/content-only.txt"), false),
        (format!("{e}/retargeted-link"), false),
        (format!("{e}/dir-with-unowned/unowned.txt"), true),
        (format!("{e}/dirlink3"), false),
        (format!("{e}/realdir3"), false),
        (format!("{e}/fifo"), false),
        (format!("{e}/null"), false),
        (format!("{e}/setuid"), false),
        (format!("{ep}/lib/modules/edge/edge.ko"), true),
        (format!("{ep}/usr/share/info"), false),
        (format!("{e}/info"), false),
    ] {
        s.check(
            d.entry('p', &path).is_some() == kept,
            format!(
                "fixture check: Portage {} {path} (expected it to be {})",
                if kept { "removed" } else { "kept" },
                if kept { "kept" } else { "removed" }
            ),
        );
    }
    s.check(
        d.p["vdb_dirs"] == serde_json::json!(["app-misc/", "app-misc/other-1.0"]),
        format!(
            "fixture check: Portage's VDB: {}",
            compact(&d.p["vdb_dirs"])
        ),
    );
    // What --pretend announced for each file against what Portage did.
    s.compare_decisions(
        "vartree unmerge --pretend vs Portage's unmerge",
        &contents,
        &p,
        &pretend,
    );
    let (d, _, _) = s.unmerge(
        "unmerge other-1.0 (the last in app-misc)",
        "app-misc/other-1.0",
        &[],
        &[],
        true,
    );
    s.check(
        d.p["vdb_dirs"] == serde_json::json!([]),
        format!(
            "fixture check: Portage left the category: {}",
            compact(&d.p["vdb_dirs"])
        ),
    );
}

/// The edge cases with FEATURES=-unmerge-orphans (`vartree unmerge
/// --no-unmerge-orphans`): only files whose mtime and md5 still match go
/// (a symlink: only its mtime); FIFOs and device nodes stay.
#[test]
fn unmerge_edge_cases_without_unmerge_orphans() {
    let Some(mut s) = Seq::new("unmerge-edge-no-orphans", "") else {
        return;
    };
    let e = "/usr/share/edge";
    s.merge("install edge-1.0", "edge", true);
    s.live("admin-edge");
    let (pretend, contents) = s.unmerge_pretend("app-misc/edge-1.0", &["--no-unmerge-orphans"]);
    let (d, p, _) = s.unmerge(
        "unmerge edge-1.0 -unmerge-orphans",
        "app-misc/edge-1.0",
        &["--features", "-unmerge-orphans"],
        &["--no-unmerge-orphans"],
        true,
    );
    for (path, kept) in [
        (format!("{e}/touched.txt"), true),
        (format!("{e}/edited.txt"), true),
        (format!("{e}/content-only.txt"), true),
        (format!("{e}/pristine.txt"), false),
        (format!("{e}/retargeted-link"), false),
        (format!("{e}/fifo"), true),
        (format!("{e}/null"), true),
    ] {
        s.check(
            d.entry('p', &path).is_some() == kept,
            format!(
                "fixture check: -unmerge-orphans: Portage got {path} wrong (expected kept: {kept})"
            ),
        );
    }
    s.compare_decisions(
        "vartree unmerge --pretend --no-unmerge-orphans vs Portage's unmerge",
        &contents,
        &p,
        &pretend,
    );
    s.finish();
}

/// Symlinks to directories (bug 326685) while app-misc/through owns a file
/// installed through `dirlink2`: `dirlink` (its directory has an admin's
/// file), `dirlink2` and `link-to-foreign` (to a foreign directory with a
/// file) are all `!empty`; Portage's search for packages with files
/// installed through them finds through-1.0, so all three are kept.
#[test]
fn unmerge_directory_symlinks_used_by_another_package() {
    let Some(mut s) = Seq::new("unmerge-dirsym-owned", "") else {
        return;
    };
    s.merge("install dsym-1.0", "dsym", true);
    let d = s.merge("install through-1.0 (through dirlink2)", "through", true);
    s.check(
        d.vdb('p').contains("dir /usr/share/dsym/dirlink2\n"),
        "fixture check: through-1.0's CONTENTS lacks `dir /usr/share/dsym/dirlink2`",
    );
    s.live("admin-dsym");
    let (d, _, _) = s.unmerge("unmerge dsym-1.0", "app-misc/dsym-1.0", &[], &[], true);
    for link in ["dirlink", "dirlink2", "link-to-foreign"] {
        s.check(
            str_field(d.entry('p', &format!("/usr/share/dsym/{link}")), "type") == "sym",
            format!("fixture check: Portage removed /usr/share/dsym/{link}"),
        );
    }
    s.unmerge(
        "unmerge through-1.0",
        "app-misc/through-1.0",
        &[],
        &[],
        true,
    );
    s.finish();
}

/// The same symlinks to directories with nothing installed through them:
/// they are `!empty` at first, then Portage's search
/// (`_unmerge_protected_symlinks`) finds no other package with files
/// through them, so it removes all three ("The above directory symlink(s)
/// are all safe to remove. Removing them now...") and retries their parent
/// directories. The admin's files in the target directories stay.
#[test]
fn unmerge_directory_symlinks_unused() {
    let Some(mut s) = Seq::new("unmerge-dirsym-unused", "") else {
        return;
    };
    s.merge("install dsym-1.0", "dsym", true);
    s.live("admin-dsym");
    let (pretend, contents) = s.unmerge_pretend("app-misc/dsym-1.0", &[]);
    let (d, p, _) = s.unmerge("unmerge dsym-1.0", "app-misc/dsym-1.0", &[], &[], true);
    for (path, kept) in [
        ("dirlink", false),
        ("link-to-foreign", false),
        ("realdir/admin.txt", true),
    ] {
        s.check(
            d.entry('p', &format!("/usr/share/dsym/{path}")).is_some() == kept,
            format!(
                "fixture check: Portage got /usr/share/dsym/{path} wrong (expected kept: {kept})"
            ),
        );
    }
    s.compare_decisions(
        "vartree unmerge --pretend vs Portage's unmerge",
        &contents,
        &p,
        &pretend,
    );
    s.finish();
}

/// A symlink to a directory whose child is a directory of the package
/// (`nestlink -> nestdir`, `nestdir/sub/f.txt`): `!empty` (not all children
/// are regular files), then `nestdir/sub` and `nestdir` are removed and
/// Portage removes the symlink that pointed to the removed directory (bug
/// 640058, `_unmerge_dirs`).
#[test]
fn unmerge_symlink_to_removed_directory() {
    let Some(mut s) = Seq::new("unmerge-nest", "") else {
        return;
    };
    s.merge("install nest-1.0", "nest", true);
    let (d, _, _) = s.unmerge("unmerge nest-1.0", "app-misc/nest-1.0", &[], &[], true);
    s.check(
        d.entry('p', "/usr/share/nest").is_none(),
        "fixture check: Portage left /usr/share/nest",
    );
    s.finish();
}

/// Unmerging a package whose CONTENTS was written by an old Portage or
/// edited by hand (`vdb-quirks` rewrites it the same way in both roots):
/// an upper-case md5, `//` and `..` in paths, a relative path, a trailing
/// slash on a directory, a negative mtime (Portage's CONTENTS parser drops
/// that line, so the file is left), a line that is no entry, a path with
/// trailing spaces. All files are protected (/etc), so the md5 and mtime
/// checks decide.
#[test]
fn unmerge_hand_edited_contents() {
    let Some(mut s) = Seq::new("unmerge-quirks", "") else {
        return;
    };
    s.merge("install quirk-1.0", "quirk", true);
    s.live("vdb-quirks");
    // Deliberate (crates/vdb/src/contents.rs): vartree reads the negative
    // mtimes Portage writes for pre-1970 files; Portage's parser drops the
    // line. Here the recorded -5 does not match, so the file stays anyway.
    s.accept_decision("/etc/quirk/neg.conf", "(none)", "--- !mtime obj");
    let d = s.dumps();
    s.compare("after editing CONTENTS", &d, None);
    s.check(
        d.vdb('p').contains("obj /etc/quirk/neg.conf ") && d.vdb('p').contains(" -5\n"),
        "fixture check: the CONTENTS edit did not happen",
    );
    let (d, _, _) = s.unmerge("unmerge quirk-1.0", "app-misc/quirk-1.0", &[], &[], true);
    s.check(
        d.entry('p', "/etc/quirk/upper.conf").is_none()
            && d.entry('p', "/etc/quirk/neg.conf").is_some(),
        "fixture check: Portage kept upper.conf or removed neg.conf",
    );
    s.finish();
}

/// Unmerging files with pre-1970 mtimes: CONTENTS says `-5` and `-1`
/// (Portage writes `mtime_ns // 10**9`), which Portage's own CONTENTS
/// parser cannot read (`\\d+`): it drops those lines and so never removes
/// the files. vartree reads negative mtimes on purpose
/// (crates/vdb/src/contents.rs) and removes them. That difference is
/// asserted exactly; everything else must agree.
#[test]
fn unmerge_pre_epoch_files() {
    let Some(mut s) = Seq::new("unmerge-pre-epoch", "") else {
        return;
    };
    let o = "/usr/share/old";
    s.merge("install old-1.0", "prehistoric", true);
    for f in ["minus-5s", "minus-half-s", "link-minus-5s"] {
        let (a, b) = if f.starts_with("link") {
            ("(none)", "<<< sym")
        } else {
            ("(none)", "<<< obj")
        };
        s.accept_decision(&format!("{o}/{f}"), a, b);
    }
    s.steps += 1;
    let step = format!("step {} (unmerge old-1.0)", s.steps);
    let leftovers = [
        "/usr".to_string(),
        "/usr/share".to_string(),
        o.to_string(),
        format!("{o}/minus-5s"),
        format!("{o}/minus-half-s"),
        format!("{o}/link-minus-5s"),
    ];
    let (mut d, p, v) = s.unmerge_raw("app-misc/old-1.0");
    s.check(
        p.ok && v.ok,
        format!(
            "{step}: unmerges failed:\n  Portage: {}\n  vartree: {}",
            p.text, v.text
        ),
    );
    for path in &leftovers {
        s.check(
            d.entry('p', path).is_some() && d.entry('v', path).is_none(),
            format!(
                "{step}: expected {path} left by Portage only (Portage: {}, vartree: {})",
                d.entry('p', path).is_some(),
                d.entry('v', path).is_some()
            ),
        );
        if let Some(t) = d.p["tree"].as_object_mut() {
            t.remove(path);
        }
    }
    s.check(
        d.entry('p', &format!("{o}/epoch")).is_none(),
        "fixture check: Portage left the epoch file (mtime 0)",
    );
    s.compare(&step, &d, Some((&p, &v)));
    let contents: BTreeSet<String> = ["epoch", "minus-5s", "minus-half-s", "link-minus-5s"]
        .iter()
        .map(|f| format!("{o}/{f}"))
        .collect();
    s.compare_decisions(&step, &contents, &p, &v);
    s.finish();
}

/// Root confinement on unmerge: the admin moved esc-1.0's directory
/// /usr/share/esc out of ROOT and left an absolute symlink to it. Portage
/// follows the symlink on the host and deletes the package's files outside
/// ROOT; vartree resolves paths inside ROOT, where the link dangles, and
/// touches nothing outside. Asserted exactly; the roots themselves and the
/// VDB must agree.
#[test]
fn unmerge_through_symlink_leaving_root() {
    let Some(mut s) = Seq::new("unmerge-escape", "") else {
        return;
    };
    s.merge("install esc-1.0", "esc", true);
    s.live("admin-escape");
    let outside = |root: &Path| {
        let name = root
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        root.parent()
            .unwrap_or(root)
            .join(format!("outside-{name}-esc"))
    };
    let (op, ov) = (outside(&s.root_p), outside(&s.root_v));
    s.check(
        op.join("f.txt").is_file() && ov.join("f.txt").is_file(),
        "fixture check: the admin's move out of ROOT did not happen",
    );
    let contents = contents_paths(&s.last_vdb_p, "app-misc/esc-1.0");
    for f in ["f.txt", "g.txt"] {
        s.accept_decision(&format!("/usr/share/esc/{f}"), "<<< obj", "--- !found obj");
    }
    let (d, p, v) = s.unmerge_raw("app-misc/esc-1.0");
    s.steps += 1;
    let step = format!("step {} (unmerge esc-1.0)", s.steps);
    s.check(
        p.ok && v.ok,
        format!(
            "{step}: unmerges failed:\n  Portage: {}\n  vartree: {}",
            p.text, v.text
        ),
    );
    s.check(
        !op.join("f.txt").exists(),
        format!(
            "{step}: Portage did not delete {} outside ROOT (expected, a Portage bug)",
            op.join("f.txt").display()
        ),
    );
    for f in ["f.txt", "g.txt"] {
        s.check(
            ov.join(f).is_file(),
            format!(
                "{step}: vartree deleted {} outside ROOT",
                ov.join(f).display()
            ),
        );
    }
    s.compare(&step, &d, Some((&p, &v)));
    s.compare_decisions(&step, &contents, &p, &v);
    s.finish();
}

/// A package whose image has `lib -> usr/lib` (CONTENTS `sym /lib ->
/// usr/lib`) and `usr/local/lib -> ../lib`, and a second package that
/// installs through /lib. Unmerging the first keeps both libdir symlinks
/// (`cfgpro`, bug 423127) and its category directory goes (sys-libs still
/// has libuser); unmerging the second removes sys-libs.
#[test]
fn unmerge_libdir_symlink_recorded_as_sym() {
    let Some(mut s) = Seq::new("unmerge-libsym", "") else {
        return;
    };
    let d = s.merge("install libsym-1.0", "libsym", true);
    s.check(
        d.vdb('p').contains("sym /lib -> usr/lib "),
        "fixture check: Portage's CONTENTS lacks `sym /lib -> usr/lib`",
    );
    s.merge("install libuser-1.0 (through /lib)", "libsym-user", true);
    let (d, _, _) = s.unmerge("unmerge libsym-1.0", "sys-libs/libsym-1.0", &[], &[], true);
    s.check(
        str_field(d.entry('p', "/lib"), "target") == "usr/lib"
            && str_field(d.entry('p', "/usr/local/lib"), "target") == "../lib",
        "fixture check: Portage removed a libdir symlink",
    );
    let (d, _, _) = s.unmerge(
        "unmerge libuser-1.0",
        "sys-libs/libuser-1.0",
        &[],
        &[],
        true,
    );
    s.check(
        d.p["vdb_dirs"] == serde_json::json!([]),
        format!(
            "fixture check: Portage's VDB should be empty: {}",
            compact(&d.p["vdb_dirs"])
        ),
    );
    s.finish();
}

/// Unmerging what is not installed: both fail and change nothing.
#[test]
fn unmerge_not_installed() {
    let Some(mut s) = Seq::new("unmerge-missing", "") else {
        return;
    };
    s.merge("install other-1.0", "other", true);
    s.unmerge(
        "unmerge edge-1.0 (not installed)",
        "app-misc/edge-1.0",
        &[],
        &[],
        false,
    );
    s.finish();
}

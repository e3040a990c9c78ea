//! Differential test of the VDB queries against the real Portage.
//!
//! `tests/portage/build_roots.py` (run with a Python that has Portage 3.0.83)
//! merges a set of packages into temporary roots with Portage's own merge code
//! (through `../shared/tools/portage-ref`) and records what Portage's API
//! answers: `vardbapi.cpv_all()` + `aux_get`, `vardbapi.match(atom)`,
//! `dblink.getcontents()` and `vardbapi._owners.iter_owners([path])`.
//! This test then runs the `vartree` binary on the same roots
//! (`list --json`, `list --json ATOM`, `contents --json ATOM`,
//! `owners --json PATH…`, `owners --json -`) and compares field by field.
//! It also runs `vartree debug contents-roundtrip` on every CONTENTS file
//! Portage wrote, which must reproduce each byte for byte.
//!
//! Python: `$VARTREE_PORTAGE_PYTHON`, else `<workspace>/.venv/bin/python`
//! (made by `scripts/setup-venv.sh`).  Without either (or without
//! portage-ref) the test prints a notice and passes, unless
//! `VARTREE_REQUIRE_PORTAGE=1`, where it fails.  `VARTREE_KEEP_DIFF_WORKDIR=1`
//! keeps the roots (they are always kept when something differs).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MAX_DIFFS_PER_ITEM: usize = 12;

fn workspace() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    ws.canonicalize().unwrap_or(ws)
}

fn env_is(name: &str, want: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == want)
}

/// The Python with Portage and the portage-ref directory, or `None` (skip).
fn prerequisites() -> Option<PathBuf> {
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
    let missing = match (&python, portage_ref.join("_refenv.py").is_file()) {
        (None, _) => Some(
            "no Python with Portage: set VARTREE_PORTAGE_PYTHON or run scripts/setup-venv.sh"
                .to_string(),
        ),
        (Some(_), false) => Some(format!(
            "portage-ref not found at {} (set VARTREE_PORTAGE_REF)",
            portage_ref.display()
        )),
        _ => None,
    };
    if let Some(why) = missing {
        assert!(!require, "VARTREE_REQUIRE_PORTAGE=1 but {why}");
        eprintln!("SKIPPED differential test against Portage: {why}");
        return None;
    }
    python
}

/// Collected differences; the test fails at the end if there are any.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
    compared: Counts,
}

#[derive(Default, Debug)]
struct Counts {
    packages_listed: usize,
    atoms: usize,
    contents_entries: usize,
    owner_queries: usize,
    owners_found: usize,
    roundtrip_files: usize,
}

impl Report {
    fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }
}

struct Vartree<'a> {
    root: &'a Path,
    eprefix: &'a str,
}

impl Vartree<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
        // The CLI also reads ROOT/EPREFIX from the environment: only the flags count here.
        c.env_remove("ROOT").env_remove("EPREFIX");
        c.arg("--root").arg(self.root);
        if !self.eprefix.is_empty() {
            c.arg("--eprefix").arg(self.eprefix);
        }
        c.args(args);
        c
    }

    fn describe(&self, args: &[&str]) -> String {
        let mut s = String::from("vartree --root ROOT");
        if !self.eprefix.is_empty() {
            s += &format!(" --eprefix {}", self.eprefix);
        }
        for a in args {
            if a.contains(' ') || a.is_empty() {
                s += &format!(" '{a}'");
            } else {
                s += &format!(" {a}");
            }
        }
        s
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c.spawn().expect("spawn vartree");
        if let Some(input) = stdin {
            let mut w = child.stdin.take().expect("stdin");
            w.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("wait vartree")
    }

    /// Run and parse stdout as JSON.  `ok_status`: accepted exit codes.
    fn json(
        &self,
        report: &mut Report,
        args: &[&str],
        stdin: Option<&str>,
        ok_status: &[i32],
    ) -> Option<Value> {
        let out = self.run(args, stdin);
        let code = out.status.code().unwrap_or(-1);
        let cmd = self.describe(args);
        if !ok_status.contains(&code) {
            report.fail(format!(
                "`{cmd}` exited with {code} (expected {ok_status:?})\n  stderr: {}\n  stdout: {}",
                snippet(&out.stderr),
                snippet(&out.stdout)
            ));
            return None;
        }
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(v) => Some(v),
            Err(e) => {
                report.fail(format!(
                    "`{cmd}`: stdout is not JSON ({e})\n  stdout: {}\n  stderr: {}",
                    snippet(&out.stdout),
                    snippet(&out.stderr)
                ));
                None
            }
        }
    }
}

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim_end();
    if s.chars().count() > 1500 {
        let cut: String = s.chars().take(1500).collect();
        format!("{cut}… ({} bytes)", b.len())
    } else if s.is_empty() {
        "(empty)".into()
    } else {
        s.to_string()
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Compare `fields` of two objects; returns "field: expected X, got Y" lines.
fn field_diffs(expected: &Value, actual: &Value, fields: &[&str]) -> Vec<String> {
    let mut d = Vec::new();
    for f in fields {
        let e = expected.get(*f).unwrap_or(&Value::Null);
        match actual.get(*f) {
            None => d.push(format!("{f}: missing (expected {})", compact(e))),
            Some(a) if a != e => {
                d.push(format!("{f}: expected {}, got {}", compact(e), compact(a)));
            }
            _ => {}
        }
    }
    d
}

/// The contract fields of one CONTENTS entry, by type.
fn entry_fields(e: &Value) -> &'static [&'static str] {
    match str_of(e, "type") {
        "obj" => &["type", "path", "md5", "mtime"],
        "sym" => &["type", "path", "target", "mtime"],
        _ => &["type", "path"],
    }
}

fn check_list(report: &mut Report, vt: &Vartree, name: &str, exp: &Value) {
    let expected = arr(&exp["list"]);
    let Some(actual) = vt.json(report, &["list", "--json"], None, &[0]) else {
        return;
    };
    let actual = arr(&actual);
    let ecpv: Vec<&str> = expected.iter().map(|r| str_of(r, "cpv")).collect();
    let acpv: Vec<&str> = actual.iter().map(|r| str_of(r, "cpv")).collect();
    if ecpv != acpv {
        report.fail(format!(
            "[{name}] list: packages/order differ\n  Portage (sorted by category, pn, version): {ecpv:?}\n  vartree: {acpv:?}"
        ));
    }
    let fields = [
        "cpv",
        "category",
        "pf",
        "pn",
        "pvr",
        "slot",
        "subslot",
        "repository",
        "counter",
    ];
    for e in expected {
        let cpv = str_of(e, "cpv");
        let Some(a) = actual.iter().find(|a| str_of(a, "cpv") == cpv) else {
            continue;
        };
        report.compared.packages_listed += 1;
        let d = field_diffs(e, a, &fields);
        if !d.is_empty() {
            report.fail(format!(
                "[{name}] list {cpv}: {}\n  Portage aux_get: {}",
                d.join("; "),
                compact(&e["_aux_get"])
            ));
        }
    }
}

fn check_matches(report: &mut Report, vt: &Vartree, name: &str, exp: &Value) {
    for m in arr(&exp["matches"]) {
        let atom = str_of(m, "atom");
        let want: Vec<&str> = arr(&m["cpvs"]).iter().filter_map(Value::as_str).collect();
        // No match: accept exit 0 with [] or a non-zero exit with [] / nothing.
        let out = vt.run(&["list", "--json", atom], None);
        let code = out.status.code().unwrap_or(-1);
        let text = String::from_utf8_lossy(&out.stdout);
        let got: Option<Vec<String>> = if text.trim().is_empty() && code != 0 && want.is_empty() {
            Some(vec![])
        } else {
            serde_json::from_str::<Value>(&text).ok().map(|v| {
                arr(&v)
                    .iter()
                    .map(|r| str_of(r, "cpv").to_string())
                    .collect()
            })
        };
        report.compared.atoms += 1;
        match got {
            None => report.fail(format!(
                "[{name}] `{}`: exit {code}, stdout not JSON: {}\n  stderr: {}",
                vt.describe(&["list", "--json", atom]),
                snippet(&out.stdout),
                snippet(&out.stderr)
            )),
            Some(got) => {
                if code != 0 && !want.is_empty() {
                    report.fail(format!(
                        "[{name}] list {atom}: exit {code} although it matches {want:?}"
                    ));
                }
                if got != want {
                    report.fail(format!(
                        "[{name}] list {atom}: Portage vardbapi.match = {want:?}, vartree = {got:?}"
                    ));
                }
            }
        }
    }
}

/// Compare the entry lists of one package (file order).
fn diff_entries(expected: &[Value], actual: &[Value]) -> Vec<String> {
    let mut d = Vec::new();
    let n = expected.len().min(actual.len());
    for i in 0..n {
        let (e, a) = (&expected[i], &actual[i]);
        let fd = field_diffs(e, a, entry_fields(e));
        if !fd.is_empty() {
            d.push(format!(
                "entry #{i}: {}\n      Portage: {}\n      vartree: {}",
                fd.join("; "),
                compact(e),
                compact(a)
            ));
        }
        if d.len() >= MAX_DIFFS_PER_ITEM {
            d.push("…".into());
            return d;
        }
    }
    if expected.len() != actual.len() {
        let ep: BTreeSet<&str> = expected.iter().map(|e| str_of(e, "path")).collect();
        let ap: BTreeSet<&str> = actual.iter().map(|e| str_of(e, "path")).collect();
        d.push(format!(
            "{} entries from Portage, {} from vartree; only in Portage: {:?}; only in vartree: {:?}",
            expected.len(),
            actual.len(),
            ep.difference(&ap).take(MAX_DIFFS_PER_ITEM).collect::<Vec<_>>(),
            ap.difference(&ep).take(MAX_DIFFS_PER_ITEM).collect::<Vec<_>>()
        ));
    }
    d
}

fn one_package_entries<'a>(
    report: &mut Report,
    name: &str,
    what: &str,
    v: &'a Value,
    cpv: &str,
) -> Option<&'a [Value]> {
    let pkgs = arr(v);
    if pkgs.len() != 1 || str_of(&pkgs[0], "cpv") != cpv {
        let got: Vec<&str> = pkgs.iter().map(|p| str_of(p, "cpv")).collect();
        report.fail(format!(
            "[{name}] {what}: expected exactly [{cpv}], got packages {got:?}"
        ));
        return None;
    }
    match pkgs[0].get("entries").and_then(Value::as_array) {
        Some(e) => Some(e.as_slice()),
        None => {
            report.fail(format!(
                "[{name}] {what}: no \"entries\" array in {}",
                compact(&pkgs[0])
            ));
            None
        }
    }
}

fn check_contents(report: &mut Report, vt: &Vartree, name: &str, exp: &Value) {
    for c in arr(&exp["contents"]) {
        let cpv = str_of(c, "cpv");
        let expected = arr(&c["entries"]);
        let implicit = arr(&c["implicit_parent_dirs"]);
        if !implicit.is_empty() {
            // Not a failure: getcontents() adds parents that the file lacks;
            // vartree lists what the file records.
            eprintln!(
                "note: [{name}] {cpv}: getcontents() added implicit parent dirs {implicit:?}"
            );
        }
        let atom = format!("={cpv}");
        let Some(v) = vt.json(report, &["contents", "--json", &atom], None, &[0]) else {
            continue;
        };
        let Some(actual) = one_package_entries(report, name, &format!("contents {atom}"), &v, cpv)
        else {
            continue;
        };
        report.compared.contents_entries += expected.len().min(actual.len());
        let d = diff_entries(expected, actual);
        if !d.is_empty() {
            report.fail(format!(
                "[{name}] contents {atom} (CONTENTS: {}) differs from Portage's getcontents():\n    {}",
                str_of(c, "contents_file"),
                d.join("\n    ")
            ));
        }
        // --type filter, on packages that have several types.
        let types: BTreeSet<&str> = expected.iter().map(|e| str_of(e, "type")).collect();
        if types.len() >= 3 {
            for filter in ["sym", "fif,dev", "obj,dir"] {
                let keep: Vec<&str> = filter.split(',').collect();
                let want: Vec<Value> = expected
                    .iter()
                    .filter(|e| keep.contains(&str_of(e, "type")))
                    .cloned()
                    .collect();
                let args = ["contents", "--json", "--type", filter, atom.as_str()];
                let Some(v) = vt.json(report, &args, None, &[0]) else {
                    continue;
                };
                let what = format!("contents --type {filter} {atom}");
                let Some(actual) = one_package_entries(report, name, &what, &v, cpv) else {
                    continue;
                };
                let d = diff_entries(&want, actual);
                if !d.is_empty() {
                    report.fail(format!("[{name}] {what}:\n    {}", d.join("\n    ")));
                }
            }
        }
    }
    // An unversioned atom resolves to the installed instance(s).
    if let Some(c) = arr(&exp["contents"])
        .iter()
        .find(|c| str_of(c, "cpv").starts_with("app-misc/foo-"))
    {
        let cpv = str_of(c, "cpv");
        if let Some(v) = vt.json(report, &["contents", "--json", "app-misc/foo"], None, &[0]) {
            if let Some(actual) =
                one_package_entries(report, name, "contents app-misc/foo", &v, cpv)
            {
                let d = diff_entries(arr(&c["entries"]), actual);
                if !d.is_empty() {
                    report.fail(format!(
                        "[{name}] contents app-misc/foo:\n    {}",
                        d.join("\n    ")
                    ));
                }
            }
        }
    }
}

fn owner_set(v: &Value) -> BTreeSet<(String, String)> {
    arr(&v["owners"])
        .iter()
        .map(|o| (str_of(o, "cpv").to_string(), str_of(o, "entry").to_string()))
        .collect()
}

fn compare_owner_answers(
    report: &mut Report,
    name: &str,
    how: &str,
    expected: &[Value],
    actual: &Value,
) {
    let actual = arr(actual);
    if actual.len() != expected.len() {
        report.fail(format!(
            "[{name}] owners ({how}): {} answers for {} query paths",
            actual.len(),
            expected.len()
        ));
    }
    for (i, e) in expected.iter().enumerate() {
        let q = str_of(e, "path");
        let Some(a) = actual.get(i) else { break };
        if str_of(a, "path") != q {
            report.fail(format!(
                "[{name}] owners ({how}) answer #{i}: path {:?}, expected the query {q:?}",
                str_of(a, "path")
            ));
            continue;
        }
        let (es, as_) = (owner_set(e), owner_set(a));
        if es != as_ {
            report.fail(format!(
                "[{name}] owners ({how}) {q:?}:\n      Portage iter_owners: {es:?}\n      vartree:             {as_:?}"
            ));
        }
    }
}

fn check_owners(report: &mut Report, vt: &Vartree, name: &str, exp: &Value) {
    let expected = arr(&exp["owners"]);
    let queries: Vec<&str> = expected.iter().map(|o| str_of(o, "path")).collect();
    let any_unowned = expected.iter().any(|o| arr(&o["owners"]).is_empty());
    let status = i32::from(any_unowned);

    let mut args = vec!["owners", "--json"];
    args.extend(queries.iter().copied());
    if let Some(v) = vt.json(report, &args, None, &[status]) {
        report.compared.owner_queries += queries.len();
        report.compared.owners_found += expected
            .iter()
            .map(|o| arr(&o["owners"]).len())
            .sum::<usize>();
        compare_owner_answers(report, name, "arguments", expected, &v);
    }
    // The same paths on stdin.
    let input = queries.join("\n") + "\n";
    if let Some(v) = vt.json(report, &["owners", "--json", "-"], Some(&input), &[status]) {
        compare_owner_answers(report, name, "stdin", expected, &v);
    }
    // Only owned paths: exit status 0.
    let owned: Vec<Value> = expected
        .iter()
        .filter(|o| !arr(&o["owners"]).is_empty())
        .cloned()
        .collect();
    if !owned.is_empty() && any_unowned {
        let mut args = vec!["owners", "--json"];
        args.extend(owned.iter().map(|o| str_of(o, "path")));
        if let Some(v) = vt.json(report, &args, None, &[0]) {
            compare_owner_answers(report, name, "owned paths only", &owned, &v);
        }
    }
}

fn check_roundtrip(report: &mut Report, workdir: &Path, manifest: &Value) {
    let files: Vec<PathBuf> = arr(&manifest["contents_files"])
        .iter()
        .filter_map(Value::as_str)
        .map(|f| workdir.join(f))
        .collect();
    report.compared.roundtrip_files = files.len();
    if files.is_empty() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .args(["debug", "contents-roundtrip"])
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .expect("spawn vartree");
    if !out.status.success() {
        report.fail(format!(
            "`vartree debug contents-roundtrip` on {} CONTENTS files written by Portage exited with {:?}\n  stderr: {}\n  stdout: {}",
            files.len(),
            out.status.code(),
            snippet(&out.stderr),
            snippet(&out.stdout)
        ));
    }
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[test]
fn vdb_queries_match_portage() {
    let Some(python) = prerequisites() else {
        return;
    };
    let ws = workspace();
    let tmp = tempfile::Builder::new()
        .prefix("vartree-differential-")
        .tempdir()
        .expect("tempdir");
    let workdir = tmp.path().join("w");

    let script = ws.join("tests").join("portage").join("build_roots.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg("--workdir")
        .arg(&workdir)
        .stdin(Stdio::null())
        .output()
        .expect("run build_roots.py");
    assert!(
        out.status.success(),
        "build_roots.py failed ({:?}) with {}:\nstderr:\n{}\nstdout:\n{}",
        out.status.code(),
        python.display(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );

    let manifest = read_json(&workdir.join("manifest.json"));
    let mut report = Report::default();
    let roots = arr(&manifest["roots"]);
    assert!(!roots.is_empty(), "build_roots.py produced no roots");
    for r in roots {
        let name = str_of(r, "name");
        let root = workdir.join(str_of(r, "root"));
        let eprefix = str_of(r, "eprefix");
        let exp = read_json(&workdir.join(str_of(r, "expected")));
        let vt = Vartree {
            root: &root,
            eprefix,
        };
        check_list(&mut report, &vt, name, &exp);
        check_matches(&mut report, &vt, name, &exp);
        check_contents(&mut report, &vt, name, &exp);
        check_owners(&mut report, &vt, name, &exp);
    }
    check_roundtrip(&mut report, &workdir, &manifest);

    let c = &report.compared;
    eprintln!("differential vs Portage: compared {c:?}");
    let keep = !report.failures.is_empty() || env_is("VARTREE_KEEP_DIFF_WORKDIR", "1");
    let kept = if keep { Some(tmp.keep()) } else { None };
    if let Some(p) = &kept {
        eprintln!("roots and Portage's answers kept in {}", p.display());
    }
    assert!(
        report.failures.is_empty(),
        "{} difference(s) between vartree and Portage {}:\n\n{}\n",
        report.failures.len(),
        kept.as_ref()
            .map(|p| format!("(roots kept in {})", p.display()))
            .unwrap_or_default(),
        report.failures.join("\n\n")
    );
    // Never pass having compared nothing.
    assert!(c.packages_listed > 0, "no package compared for `list`");
    assert!(c.atoms > 0, "no atom compared");
    assert!(c.contents_entries > 0, "no CONTENTS entry compared");
    assert!(
        c.owner_queries > 0 && c.owners_found > 0,
        "no owners compared"
    );
    assert!(c.roundtrip_files > 0, "no CONTENTS file round-tripped");
}

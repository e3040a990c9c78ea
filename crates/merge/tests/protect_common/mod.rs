//! Helpers shared by `protect_portage.rs` and `config_portage.rs`: finding
//! the Portage Python, running `tests/portage/protect_oracle.py` on a batch,
//! and a small deterministic random generator.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The Python interpreter that has Portage: `$VARTREE_PORTAGE_PYTHON`, else
/// `<workspace>/.venv/bin/python`. `None` (after a skip notice on stderr)
/// when neither exists, unless `VARTREE_REQUIRE_PORTAGE=1`, which fails.
pub fn portage_python() -> Option<PathBuf> {
    let candidate = match std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace().join(".venv/bin/python"),
    };
    if candidate.exists() {
        return Some(candidate);
    }
    let required = std::env::var("VARTREE_REQUIRE_PORTAGE").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "VARTREE_REQUIRE_PORTAGE=1 but no Portage Python at {} \
         (set VARTREE_PORTAGE_PYTHON or run scripts/setup-venv.sh)",
        candidate.display()
    );
    skip_notice(&format!(
        "no Portage Python at {} (set VARTREE_PORTAGE_PYTHON or run scripts/setup-venv.sh); \
         skipping the differential test against Portage",
        candidate.display()
    ));
    None
}

#[allow(clippy::print_stderr)] // a skipped test must say so
pub fn skip_notice(msg: &str) {
    eprintln!("SKIPPED: {msg}");
}

pub fn workspace() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

/// Variables of the calling environment that could leak into Portage.
const SCRUB: &[&str] = &[
    "CONFIG_PROTECT",
    "CONFIG_PROTECT_MASK",
    "COLLISION_IGNORE",
    "UNINSTALL_IGNORE",
    "INSTALL_MASK",
    "FEATURES",
    "NOCONFMEM",
    "PORTAGE_CONFIGROOT",
    "PORTAGE_OVERRIDE_EPREFIX",
    "ROOT",
    "EPREFIX",
    "SYSROOT",
];

/// Run the oracle on `ops`; returns one result per op. `prefix`: a fresh
/// directory for the fake host EPREFIX (needed by the `config` op).
pub fn run_oracle(python: &Path, ops: &[Value], prefix: Option<&Path>) -> Vec<Value> {
    let script = workspace().join("tests/portage/protect_oracle.py");
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(out.path());
    if let Some(p) = prefix {
        cmd.arg(p);
    }
    for k in SCRUB {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let input = serde_json::to_vec(&serde_json::json!({ "ops": ops })).expect("json");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).expect("write to python");
    });
    let output = child.wait_with_output().expect("python output");
    writer.join().expect("writer thread");
    assert!(
        output.status.success(),
        "protect_oracle.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(out.path()).expect("oracle output");
    let v: Value = serde_json::from_str(&text).expect("oracle JSON");
    let results = v["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), ops.len(), "one result per op");
    results
}

/// The Python exception text, if the result is one.
pub fn py_error(v: &Value) -> Option<&str> {
    v.as_object()?.get("error")?.as_str()
}

/// SplitMix64: small, deterministic, good enough for test-case generation.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `$VARTREE_PROPTEST_SEED`, else `default`.
    pub fn from_env(default: u64) -> (Rng, u64) {
        let seed = std::env::var("VARTREE_PROPTEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        (Rng(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }

    /// A string of `0..=max_len` items drawn from `alphabet`.
    pub fn string_from(&mut self, alphabet: &[&str], max_len: usize) -> String {
        let n = self.below(max_len + 1);
        (0..n).map(|_| *self.pick(alphabet)).collect()
    }
}

/// Fail with every disagreement listed (the first 40).
pub fn report(what: &str, seed: u64, bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{what}: {} disagreement(s) with Portage (replay with VARTREE_PROPTEST_SEED={seed}):\n{}",
        bad.len(),
        bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Fail with every disagreement listed, for exhaustive (unseeded) tests.
pub fn report_all(what: &str, bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{what}: {} disagreement(s) with Portage:\n{}",
        bad.len(),
        bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

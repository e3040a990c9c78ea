//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The shared atom corpora. Fails the test (never passes silently) when missing.
pub fn corpus_dir() -> PathBuf {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpora/atoms"
    ));
    assert!(
        p.is_dir(),
        "corpus directory {} is missing: these tests need the shared corpora \
         (shared/ next to the repository checkout)",
        p.display()
    );
    p.to_path_buf()
}

/// Reads a corpus file to a string, with a clear failure message.
pub fn read_corpus(rel: &str) -> String {
    let p = corpus_dir().join(rel);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("cannot read corpus file {}: {e}", p.display()))
}

/// Decompresses an `.xz` corpus file with the `xz` command.
pub fn read_xz_corpus(rel: &str) -> String {
    let p = corpus_dir().join(rel);
    assert!(p.is_file(), "corpus file {} is missing", p.display());
    let out = Command::new("xz")
        .arg("-dc")
        .arg(&p)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `xz -dc {}` (is xz installed?): {e}",
                p.display()
            )
        });
    assert!(
        out.status.success(),
        "`xz -dc {}` failed: {}",
        p.display(),
        out.status
    );
    String::from_utf8(out.stdout).expect("corpus is UTF-8")
}

/// The Python interpreter that has Portage: `$VARTREE_PORTAGE_PYTHON`, else
/// `<workspace>/.venv/bin/python`. `None` when neither exists; then the caller skips,
/// unless `VARTREE_REQUIRE_PORTAGE=1`, in which case this panics.
pub fn portage_python() -> Option<PathBuf> {
    let candidate = match std::env::var_os("VARTREE_PORTAGE_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.venv/bin/python"
        ))
        .to_path_buf(),
    };
    if candidate.exists() {
        return Some(candidate);
    }
    let required = std::env::var("VARTREE_REQUIRE_PORTAGE").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "VARTREE_REQUIRE_PORTAGE=1 but no Portage Python found at {} \
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

/// Prints a skip notice on stderr.
#[allow(clippy::print_stderr)] // the one place a test must tell the user it skipped
pub fn skip_notice(msg: &str) {
    eprintln!("SKIPPED: {msg}");
}

/// Runs `script` with the Portage Python, feeding `input` on stdin; returns stdout.
pub fn run_python(python: &Path, script: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).expect("write to python");
    });
    let out = child.wait_with_output().expect("python output");
    writer.join().expect("writer thread");
    assert!(
        out.status.success(),
        "python failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python output is UTF-8")
}

pub mod gen;

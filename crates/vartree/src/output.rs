//! Human and JSON output, and where warnings go.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use vdb::db::{Reporter, Warning};

/// Prints database warnings on stderr as `!!! …` (Portage's style) and
/// counts them.
pub struct StderrReporter {
    quiet: bool,
    count: AtomicUsize,
}

impl StderrReporter {
    pub fn new(quiet: bool) -> Self {
        StderrReporter {
            quiet,
            count: AtomicUsize::new(0),
        }
    }
}

impl Reporter for StderrReporter {
    fn warn(&self, w: Warning) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "!!! {w}");
        }
    }
}

/// Print a fatal error with its causes.
pub fn error(e: &anyhow::Error) {
    let mut err = io::stderr().lock();
    let mut shown = e.to_string();
    let _ = write!(err, "vartree: error: {shown}");
    for cause in e.chain().skip(1) {
        // Library errors already include their cause in their message.
        let c = cause.to_string();
        if !shown.contains(&c) {
            let _ = write!(err, ": {c}");
            shown.push_str(&c);
        }
    }
    let _ = writeln!(err);
}

/// Print a note on stderr.
pub fn note(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "{msg}");
}

/// Redraw the progress line on stderr (an empty message clears it).
pub fn progress(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = write!(err, "\r\x1b[K{msg}");
    let _ = err.flush();
}

/// Write JSON to stdout, followed by a newline.
pub fn json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Lossy text of a path as recorded (Portage decodes with errors="replace").
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A buffered stdout that ignores EPIPE (`vartree list | head`).
pub struct Out(io::BufWriter<io::StdoutLock<'static>>);

impl Out {
    pub fn new() -> Self {
        Out(io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()))
    }

    /// Write raw bytes (paths are bytes) followed by a newline.
    pub fn line(&mut self, parts: &[&[u8]]) -> anyhow::Result<()> {
        for p in parts {
            self.write_raw(p)?;
        }
        self.write_raw(b"\n")
    }

    fn write_raw(&mut self, b: &[u8]) -> anyhow::Result<()> {
        match self.0.write_all(b) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
            r => Ok(r?),
        }
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        match self.0.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => Ok(r?),
        }
    }
}

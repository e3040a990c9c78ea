//! Verify installed files against CONTENTS (like portage-utils' `qcheck`)
//! and measure package sizes (like `qsize`).
//!
//! Every lookup goes through [`rootfs::root::Root`], so a symlinked parent
//! directory is followed inside ROOT, never out of it. The final component
//! is never followed.

use std::io;

use rootfs::root::{DirCache, FileKind, Root};

use crate::contents::{basename, dirname, ContentsEntry, EntryKind};
use crate::db::{Reporter, VdbEntry, VdbError};

/// What is wrong with one recorded path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Problem {
    /// Nothing at the path.
    Missing,
    /// Something of another type (a file where a directory was recorded…).
    WrongType,
    /// The content's md5 differs from CONTENTS.
    Md5,
    /// The mtime (seconds) differs from CONTENTS.
    Mtime,
    /// The symlink points elsewhere.
    SymlinkTarget,
    /// The path could not be examined (permissions, I/O error).
    Unreadable,
}

impl Problem {
    /// A short label, as qcheck prints them.
    pub fn label(self) -> &'static str {
        match self {
            Problem::Missing => "AFK",
            Problem::WrongType => "TYPE",
            Problem::Md5 => "MD5-DIGEST",
            Problem::Mtime => "MTIME",
            Problem::SymlinkTarget => "SYMLINK",
            Problem::Unreadable => "UNREADABLE",
        }
    }
}

/// The result for one package.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Entries checked.
    pub checked: usize,
    /// Entries without any problem.
    pub good: usize,
    /// Problems, in CONTENTS order; one path may have several (md5 and mtime).
    pub problems: Vec<(Problem, Vec<u8>)>,
    /// CONTENTS lines that could not be parsed.
    pub bad_lines: usize,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.bad_lines == 0
    }
}

/// What to verify.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    pub md5: bool,
    pub mtime: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            md5: true,
            mtime: true,
        }
    }
}

fn hex_eq(recorded: &[u8], digest: &[u8; 16]) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    recorded.len() == 32
        && recorded.iter().enumerate().all(|(i, &c)| {
            let b = digest[i / 2];
            let nib = if i % 2 == 0 { b >> 4 } else { b & 0xf };
            c.to_ascii_lowercase() == HEX[nib as usize]
        })
}

fn check_one(
    dirs: &mut DirCache<'_>,
    e: &ContentsEntry,
    opts: CheckOptions,
    out: &mut Vec<(Problem, Vec<u8>)>,
) {
    let path = e.normalized_path();
    let push = |out: &mut Vec<(Problem, Vec<u8>)>, p: Problem| out.push((p, e.path.to_vec()));
    let name = basename(&path);
    let parent = dirname(&path);
    let Some(dir) = dirs.get(parent) else {
        push(out, Problem::Missing);
        return;
    };
    let st = match dir.lstat(name) {
        Ok(st) => st,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            push(out, Problem::Missing);
            return;
        }
        Err(_) => {
            push(out, Problem::Unreadable);
            return;
        }
    };
    match &e.kind {
        EntryKind::Dir => {
            let is_dir = st.kind == FileKind::Directory
                || (st.kind == FileKind::Symlink && dirs.root().open_dir(&path).is_ok());
            if !is_dir {
                push(out, Problem::WrongType);
            }
        }
        EntryKind::Obj { md5, mtime } => {
            if st.kind != FileKind::Regular {
                push(out, Problem::WrongType);
                return;
            }
            if opts.md5 {
                let digest = dir.open_file(name).and_then(|mut f| {
                    crate::digest::md5_reader(&mut f, &mut vec![0u8; 128 * 1024])
                });
                match digest {
                    Ok(d) if hex_eq(md5, &d) => {}
                    Ok(_) => push(out, Problem::Md5),
                    Err(_) => push(out, Problem::Unreadable),
                }
            }
            if opts.mtime && st.mtime != *mtime {
                push(out, Problem::Mtime);
            }
        }
        EntryKind::Sym { target, .. } => {
            if st.kind != FileKind::Symlink {
                push(out, Problem::WrongType);
                return;
            }
            match dir.readlink(name) {
                Ok(t) if t == target[..] => {}
                Ok(_) => push(out, Problem::SymlinkTarget),
                Err(_) => push(out, Problem::Unreadable),
            }
        }
        EntryKind::Fif => {
            if st.kind != FileKind::Fifo {
                push(out, Problem::WrongType);
            }
        }
        EntryKind::Dev => {
            if st.kind != FileKind::CharDevice && st.kind != FileKind::BlockDevice {
                push(out, Problem::WrongType);
            }
        }
    }
}

/// Check one package's files.
pub fn check_entry(
    root: &Root,
    entry: &VdbEntry,
    opts: CheckOptions,
    reporter: &dyn Reporter,
) -> Result<CheckReport, VdbError> {
    let contents = entry.contents(reporter)?;
    let mut dirs = DirCache::new(root);
    let mut report = CheckReport {
        bad_lines: contents.errors.len(),
        ..CheckReport::default()
    };
    for e in &contents.entries {
        let before = report.problems.len();
        check_one(&mut dirs, e, opts, &mut report.problems);
        report.checked += 1;
        if report.problems.len() == before {
            report.good += 1;
        }
    }
    Ok(report)
}

/// Sizes of one package, from the files on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeReport {
    /// Regular files (`obj`).
    pub files: u64,
    /// Directories (`dir`).
    pub dirs: u64,
    /// Symlinks, FIFOs and device nodes.
    pub others: u64,
    /// Sum of the sizes of the regular files that exist (a hard-linked
    /// inode counted once).
    pub bytes: u64,
    /// Recorded regular files that are missing.
    pub missing: u64,
}

/// Count files and bytes of one package.
pub fn size_entry(
    root: &Root,
    entry: &VdbEntry,
    reporter: &dyn Reporter,
) -> Result<SizeReport, VdbError> {
    let contents = entry.contents(reporter)?;
    let mut dirs = DirCache::new(root);
    let mut seen = std::collections::HashSet::new();
    let mut r = SizeReport::default();
    for e in &contents.entries {
        match e.kind {
            EntryKind::Dir => r.dirs += 1,
            EntryKind::Obj { .. } => {
                r.files += 1;
                let path = e.normalized_path();
                let st = dirs
                    .get(dirname(&path))
                    .and_then(|d| d.lstat(basename(&path)).ok());
                match st {
                    Some(st) if st.kind == FileKind::Regular => {
                        if seen.insert(st.id) {
                            r.bytes += st.size;
                        }
                    }
                    _ => r.missing += 1,
                }
            }
            _ => r.others += 1,
        }
    }
    Ok(r)
}

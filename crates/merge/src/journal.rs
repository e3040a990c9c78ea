//! The transaction journal: `EROOT/var/db/.vartree/*.journal` (a dot-name
//! Portage never looks at, on ROOT's filesystem).
//!
//! A journal is written ahead of every change a transaction makes:
//!
//! ```text
//! BEGIN merge app-misc/foo-1.1        the transaction starts
//! TREE <dir> <name>                   a new directory built under a temp name
//! TEMP <dir> <name>                   a staged file, symlink or node
//! IMAGE <dir> <marker>                the image files are moved out of, and
//!                                     the marker file proving it is ours
//! MOVED <dir> <name> <srcdir> <src>   a file moved out of the image
//! ENTRY app-misc/foo-1.1              CAT/-MERGING-PF is being built
//! ASIDE <dir> <name> <backup>         ┐
//! RENAME <dir> <temp> <dest> <0|1>    │ the commit steps, all idempotent,
//! TOUCH <dir> <name> <sec> <nsec>     │ recorded before the commit point
//! CONFMEM <path> <md5|->              │
//! CONFNEW <name> <created> <md5|?>    │ the new config memory, staged
//! PUBLISH <plain|exchange> <cpv> <n>  │
//! UNMERGE <cpv>                       │
//! HANDOVER <cpv>                      ┘
//! COMMIT                              the commit point (fsynced)
//! ```
//!
//! The journal directory is resolved inside ROOT ([`vdb::state`]) like
//! every state path.
//!
//! Paths are hex-encoded bytes; directories are ROOT-relative paths of live
//! directories (resolved inside ROOT again on recovery), image directories
//! absolute host paths. `CONFNEW` names the new config memory, written as
//! `EROOT/var/lib/portage/NAME` before the commit point and renamed over
//! `var/lib/portage/config` after it; it is recorded twice: before anything
//! is created (`?`: the base not read yet; `created`: 0, or 1 when the
//! file had to be created for the lock, plus the number of directories
//! created for it), then with
//! the md5 of the memory it was computed from, before the file is written.
//! Before `COMMIT` is durable everything can be undone;
//! after it every remaining step is completed. The owner holds an OFD lock
//! on its journal while it runs, so `recover` can tell a live transaction
//! from an interrupted one. The journal is removed when the transaction is
//! done.

use std::fs::File;
use std::io::{self, Read as _, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rootfs::lock::LockedFile;
use vdb::state::StatePaths;

use crate::error::MergeError;

/// The journal directory, relative to EROOT.
pub const JOURNAL_DIR: &str = vdb::state::VARTREE_DIR;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Begin {
        kind: String,
        cpv: String,
    },
    Tree {
        dir: Vec<u8>,
        name: Vec<u8>,
    },
    Temp {
        dir: Vec<u8>,
        name: Vec<u8>,
    },
    /// `merge --move-image`: the image directory (absolute host path) and
    /// the marker file created in it ([`image_marker_name`]); a rollback
    /// moves files back only into a directory holding that marker.
    Image {
        dir: Vec<u8>,
        marker: Vec<u8>,
    },
    Moved {
        dir: Vec<u8>,
        name: Vec<u8>,
        src_dir: Vec<u8>,
        src_name: Vec<u8>,
    },
    Entry {
        cpv: String,
    },
    Aside {
        dir: Vec<u8>,
        name: Vec<u8>,
        backup: Vec<u8>,
    },
    Rename {
        dir: Vec<u8>,
        temp: Vec<u8>,
        dest: Vec<u8>,
        noreplace: bool,
    },
    Touch {
        dir: Vec<u8>,
        name: Vec<u8>,
        sec: i64,
        nsec: u32,
    },
    Confmem {
        path: String,
        md5: Option<String>,
    },
    ConfNew {
        name: Vec<u8>,
        created: u8,
        base: Option<String>,
    },
    Publish {
        exchange: bool,
        cpv: String,
        counter: i64,
    },
    Unmerge {
        cpv: String,
    },
    Handover {
        cpv: String,
    },
    Commit,
}

/// The prefix of image marker names.
pub const IMAGE_MARKER_PREFIX: &str = ".vartree-image-";

/// A new image marker name: `.vartree-image-<pid>-<nanoseconds>`. The file
/// holds the same token, so that a journal forged inside a hostile ROOT
/// cannot pass an arbitrary file outside ROOT off as a marker.
pub fn image_marker_name() -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let token = format!("{}-{nanos}", std::process::id());
    (format!("{IMAGE_MARKER_PREFIX}{token}"), token)
}

/// Does `dir` (an absolute host path from a journal) hold the genuine marker
/// `marker`? Checked without following a symlink.
pub fn image_marker_holds(dir: &[u8], marker: &[u8]) -> bool {
    marker_content(dir, marker).is_some_and(|(token, content)| content == token)
}

/// The token a marker name carries and the first bytes of the marker file,
/// if the name is a marker's and the file can be read.
fn marker_content<'m>(dir: &[u8], marker: &'m [u8]) -> Option<(&'m [u8], Vec<u8>)> {
    let token = marker.strip_prefix(IMAGE_MARKER_PREFIX.as_bytes())?;
    if token.is_empty()
        || !token.iter().all(|b| b.is_ascii_digit() || *b == b'-')
        || dir.first() != Some(&b'/')
    {
        return None;
    }
    let d = rootfs::dir::DirHandle::open(std::path::Path::new(std::ffi::OsStr::from_bytes(dir)))
        .ok()?;
    let mut f = d.open_file(marker).ok()?;
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut (&mut f).take(64), &mut content).ok()?;
    Some((token, content))
}

/// Remove the genuine image markers the records name (the transaction is
/// over, rolled back or completed), and empty ones: a process killed
/// between creating its marker and writing the token into it leaves one
/// (it had moved nothing yet, so an empty marker proves nothing either).
pub fn remove_image_markers(records: &[Record]) {
    for r in records {
        if let Record::Image { dir, marker } = r {
            if marker_content(dir, marker)
                .is_some_and(|(token, content)| content == token || content.is_empty())
            {
                let mut p = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir));
                p.push(std::ffi::OsStr::from_bytes(marker));
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.len() * 2);
    for &x in b {
        out.push(DIGITS[usize::from(x >> 4)] as char);
        out.push(DIGITS[usize::from(x & 15)] as char);
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Record {
    fn line(&self) -> String {
        match self {
            Record::Begin { kind, cpv } => format!("BEGIN {kind} {cpv}"),
            Record::Tree { dir, name } => format!("TREE {} {}", hex(dir), hex(name)),
            Record::Temp { dir, name } => format!("TEMP {} {}", hex(dir), hex(name)),
            Record::Moved {
                dir,
                name,
                src_dir,
                src_name,
            } => format!(
                "MOVED {} {} {} {}",
                hex(dir),
                hex(name),
                hex(src_dir),
                hex(src_name)
            ),
            Record::Entry { cpv } => format!("ENTRY {cpv}"),
            Record::Aside { dir, name, backup } => {
                format!("ASIDE {} {} {}", hex(dir), hex(name), hex(backup))
            }
            Record::Rename {
                dir,
                temp,
                dest,
                noreplace,
            } => format!(
                "RENAME {} {} {} {}",
                hex(dir),
                hex(temp),
                hex(dest),
                u8::from(*noreplace)
            ),
            Record::Touch {
                dir,
                name,
                sec,
                nsec,
            } => format!("TOUCH {} {} {sec} {nsec}", hex(dir), hex(name)),
            Record::Confmem { path, md5 } => format!(
                "CONFMEM {} {}",
                hex(path.as_bytes()),
                md5.as_deref().unwrap_or("-")
            ),
            Record::ConfNew {
                name,
                created,
                base,
            } => format!(
                "CONFNEW {} {created} {}",
                hex(name),
                base.as_deref().unwrap_or("?")
            ),
            Record::Publish {
                exchange,
                cpv,
                counter,
            } => format!(
                "PUBLISH {} {cpv} {counter}",
                if *exchange { "exchange" } else { "plain" }
            ),
            Record::Unmerge { cpv } => format!("UNMERGE {cpv}"),
            Record::Handover { cpv } => format!("HANDOVER {cpv}"),
            Record::Image { dir, marker } => format!("IMAGE {} {}", hex(dir), hex(marker)),
            Record::Commit => "COMMIT".into(),
        }
    }

    /// Parse one line; `None` for a line that is not a complete record
    /// (a torn last line after a crash).
    pub fn parse(line: &str) -> Option<Record> {
        let f: Vec<&str> = line.split(' ').collect();
        let b = |i: usize| f.get(i).and_then(|s| unhex(s));
        Some(match *f.first()? {
            "BEGIN" => Record::Begin {
                kind: (*f.get(1)?).to_owned(),
                cpv: (*f.get(2)?).to_owned(),
            },
            "TREE" => Record::Tree {
                dir: b(1)?,
                name: b(2)?,
            },
            "TEMP" => Record::Temp {
                dir: b(1)?,
                name: b(2)?,
            },
            "MOVED" => Record::Moved {
                dir: b(1)?,
                name: b(2)?,
                src_dir: b(3)?,
                src_name: b(4)?,
            },
            "ENTRY" => Record::Entry {
                cpv: (*f.get(1)?).to_owned(),
            },
            "ASIDE" => Record::Aside {
                dir: b(1)?,
                name: b(2)?,
                backup: b(3)?,
            },
            "RENAME" => Record::Rename {
                dir: b(1)?,
                temp: b(2)?,
                dest: b(3)?,
                noreplace: *f.get(4)? == "1",
            },
            "TOUCH" => Record::Touch {
                dir: b(1)?,
                name: b(2)?,
                sec: f.get(3)?.parse().ok()?,
                nsec: f.get(4)?.parse().ok()?,
            },
            "CONFMEM" => Record::Confmem {
                path: String::from_utf8(b(1)?).ok()?,
                md5: match *f.get(2)? {
                    "-" => None,
                    m => Some(m.to_owned()),
                },
            },
            "CONFNEW" => Record::ConfNew {
                name: b(1)?,
                created: f.get(2)?.parse().ok()?,
                base: match *f.get(3)? {
                    "?" => None,
                    m => Some(m.to_owned()),
                },
            },
            "PUBLISH" => Record::Publish {
                exchange: *f.get(1)? == "exchange",
                cpv: (*f.get(2)?).to_owned(),
                counter: f.get(3)?.parse().ok()?,
            },
            "UNMERGE" => Record::Unmerge {
                cpv: (*f.get(1)?).to_owned(),
            },
            "HANDOVER" => Record::Handover {
                cpv: (*f.get(1)?).to_owned(),
            },
            "IMAGE" => Record::Image {
                dir: b(1)?,
                marker: b(2)?,
            },
            "COMMIT" => Record::Commit,
            _ => return None,
        })
    }
}

/// Parse a journal file's content. Only complete lines count.
pub fn parse(data: &[u8]) -> Vec<Record> {
    let text = String::from_utf8_lossy(data);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete.lines().filter_map(Record::parse).collect()
}

/// An open journal, locked by this process.
pub struct Journal {
    state: StatePaths,
    path: PathBuf,
    lock: Option<LockedFile>,
    written: Vec<Record>,
    durable: bool,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MergeError + 'a {
    move |e| MergeError::Io {
        op,
        path: path.to_owned(),
        source: e,
    }
}

impl Journal {
    /// Start a transaction: create and lock a new journal and record BEGIN
    /// (made durable at once, so that a crash later is always found).
    pub fn begin(state: &StatePaths, kind: &str, cpv: &str) -> Result<Journal, MergeError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("tx-{}-{nanos}.journal", std::process::id());
        // Created and locked under a name `recover` ignores, then renamed:
        // a journal is never visible unlocked (otherwise a concurrent
        // `recover` could take it for an abandoned one and remove it).
        let tmp_name = format!(".tx-{}-{nanos}.new", std::process::id());
        // Another process may remove the (empty) directory between our
        // mkdir and create: try again.
        let mut attempt = 0;
        let (dir, tmp, lock) = loop {
            rootfs::crash::point("journal mkdir");
            let dir = state.create_dir(JOURNAL_DIR)?;
            let tmp = dir.join(&tmp_name);
            rootfs::crash::point("journal create");
            match LockedFile::lock(&tmp, |_| {}) {
                // A concurrent `recover` may have taken the file for an
                // abandoned one and removed it between its creation and
                // our lock: then the name no longer leads to the file we
                // locked, and we start again with a new one.
                Ok(l) if names_locked_file(&l, &tmp) => break (dir, tmp, l),
                Ok(_) if attempt < 5 => attempt += 1,
                Ok(_) => {
                    return Err(MergeError::Io {
                        op: "lock journal",
                        path: tmp.clone(),
                        source: io::Error::other("the file kept being removed while it was locked"),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => attempt += 1,
                Err(e) => {
                    return Err(MergeError::Io {
                        op: "lock journal",
                        path: tmp.clone(),
                        source: io::Error::other(e.to_string()),
                    })
                }
            }
        };
        let path = dir.join(name);
        let mut j = Journal {
            state: state.clone(),
            path: tmp.clone(),
            lock: Some(lock),
            written: Vec::new(),
            durable: true,
        };
        j.record(&Record::Begin {
            kind: kind.into(),
            cpv: cpv.into(),
        })?;
        j.sync()?;
        rootfs::crash::point("journal publish");
        std::fs::rename(&tmp, &path).map_err(io_err("rename journal", &path))?;
        j.path = path;
        Ok(j)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self) -> Option<&File> {
        self.lock.as_ref().map(LockedFile::file)
    }

    /// Append a record (written ahead of the change it describes).
    pub fn record(&mut self, r: &Record) -> Result<(), MergeError> {
        let mut line = r.line();
        line.push('\n');
        rootfs::crash::point("journal write");
        let mut f = self.file().ok_or_else(|| MergeError::Io {
            op: "write journal",
            path: self.path.clone(),
            source: io::Error::other("journal closed"),
        })?;
        f.write_all(line.as_bytes())
            .map_err(io_err("write journal", &self.path))?;
        self.written.push(r.clone());
        Ok(())
    }

    /// Every record written so far.
    pub fn records(&self) -> &[Record] {
        &self.written
    }

    /// Whether the journal is fsynced at BEGIN and at the commit point
    /// (`--sync never` turns it off: then only a process crash, not a power
    /// cut, is covered).
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    /// fsync the journal (unless made non-durable).
    pub fn sync(&self) -> Result<(), MergeError> {
        if !self.durable {
            return Ok(());
        }
        if let Some(f) = self.file() {
            f.sync_data().map_err(io_err("fsync journal", &self.path))?;
        }
        Ok(())
    }

    /// Record the commit point and make it durable.
    pub fn commit(&mut self) -> Result<(), MergeError> {
        self.record(&Record::Commit)?;
        self.sync()
    }

    /// The transaction is over (done or rolled back): remove the journal.
    pub fn finish(mut self) -> Result<(), MergeError> {
        rootfs::crash::point("journal remove");
        let r = std::fs::remove_file(&self.path);
        drop(self.lock.take());
        remove_dir_if_empty(&self.state);
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove journal", &self.path)(e)),
        }
    }
}

/// Whether `path` still names the file `lock` holds.
pub(crate) fn names_locked_file(lock: &LockedFile, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (lock.file().metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Remove the journal directory when no journal is left in it, so that a
/// root carries no trace of vartree between transactions. A symlink to the
/// directory (a layout of ROOT) stays, and so does its target.
pub fn remove_dir_if_empty(state: &StatePaths) {
    if let Ok(dir) = state.entry(JOURNAL_DIR) {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(&hex(&all)[..8], "00010203");
        assert_eq!(unhex(&hex(&all)), Some(all));
        assert_eq!(hex(b""), "-");
        assert_eq!(unhex("-"), Some(Vec::new()));
    }

    #[test]
    fn records_round_trip_and_torn_lines_are_ignored() {
        let recs = vec![
            Record::Begin {
                kind: "merge".into(),
                cpv: "a/b-1".into(),
            },
            Record::Tree {
                dir: b"/usr".to_vec(),
                name: b".vartree.1.share".to_vec(),
            },
            Record::Temp {
                dir: b"/".to_vec(),
                name: b"x y\n\xff".to_vec(),
            },
            Record::Image {
                dir: b"/img".to_vec(),
                marker: b".vartree-image-1-2".to_vec(),
            },
            Record::Moved {
                dir: b"/a".to_vec(),
                name: b"b".to_vec(),
                src_dir: b"/img/a".to_vec(),
                src_name: b"b".to_vec(),
            },
            Record::Entry {
                cpv: "a/b-1".into(),
            },
            Record::Aside {
                dir: b"/a".to_vec(),
                name: b"c".to_vec(),
                backup: b"c.backup.0000".to_vec(),
            },
            Record::Rename {
                dir: b"/a".to_vec(),
                temp: b"t".to_vec(),
                dest: b"d".to_vec(),
                noreplace: true,
            },
            Record::Touch {
                dir: b"/a".to_vec(),
                name: b"e".to_vec(),
                sec: -5,
                nsec: 7,
            },
            Record::Confmem {
                path: "/etc/a b".into(),
                md5: Some("abc".into()),
            },
            Record::Confmem {
                path: "/etc/c".into(),
                md5: None,
            },
            Record::ConfNew {
                name: b".vartree.1.config".to_vec(),
                created: 2,
                base: None,
            },
            Record::ConfNew {
                name: b".vartree.1.config".to_vec(),
                created: 0,
                base: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            },
            Record::Publish {
                exchange: true,
                cpv: "a/b-1".into(),
                counter: 42,
            },
            Record::Unmerge {
                cpv: "a/b-0".into(),
            },
            Record::Handover {
                cpv: "x/y-1".into(),
            },
            Record::Commit,
        ];
        let mut text = String::new();
        for r in &recs {
            text.push_str(&r.line());
            text.push('\n');
        }
        assert_eq!(parse(text.as_bytes()), recs);
        text.push_str("RENAME 2f 74");
        assert_eq!(parse(text.as_bytes()), recs, "a torn last line is ignored");
    }
}

//! Atomic file replacement: write a temp name in the same directory, then
//! `rename(2)` it over the destination. Readers see the old content or the
//! new content, never a partial file.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix of every temp name vartree creates, so that leftovers are
/// recognisable (and never taken for a VDB key or a package file).
pub const TEMP_PREFIX: &str = ".vartree-tmp.";

/// An I/O error with the path and the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FsError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Whether to flush the data to stable storage before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Like Portage's `write_atomic`: no fsync; a later sync barrier
    /// (`syncfs`) makes it durable.
    #[default]
    Deferred,
    /// `fsync` the file before the rename.
    Fsync,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temp name for `dest`, in the same directory.
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let dir = dest.parent().unwrap_or_else(|| Path::new("."));
    let mut name = OsString::from(TEMP_PREFIX);
    name.push(dest.file_name().unwrap_or_default());
    name.push(format!(
        ".{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    dir.join(name)
}

/// Atomically replace (or create) `dest` with `data`.
///
/// The new file takes the permission bits of the file it replaces, or
/// `0666 & !umask` when it is new, as Portage's `write_atomic` does. On any
/// error the temp file is removed and `dest` is left as it was.
pub fn write_atomic(dest: &Path, data: &[u8], durability: Durability) -> Result<(), FsError> {
    let tmp = temp_path_for(dest);
    crate::crash::point("write_atomic");
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&tmp)
            .map_err(|e| FsError::new("create", &tmp, e))?;
        if let Ok(old) = fs::metadata(dest) {
            let mode = old.permissions().mode() & 0o7777;
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| FsError::new("chmod", &tmp, e))?;
        }
        f.write_all(data)
            .map_err(|e| FsError::new("write", &tmp, e))?;
        if durability == Durability::Fsync {
            f.sync_all().map_err(|e| FsError::new("fsync", &tmp, e))?;
        }
        drop(f);
        crate::crash::point("write_atomic rename");
        fs::rename(&tmp, dest).map_err(|e| FsError::new("rename", dest, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `file_name` is a temp name [`write_atomic`] made,
/// `.vartree-tmp.DEST.PID.SEQ`, for a destination named `dest_name` (for
/// any destination with `None`).
pub fn is_temp_for(file_name: &OsStr, dest_name: Option<&OsStr>) -> bool {
    let name = file_name.as_encoded_bytes();
    let Some(rest) = name.strip_prefix(TEMP_PREFIX.as_bytes()) else {
        return false;
    };
    let digits = |p: &[u8]| !p.is_empty() && p.iter().all(u8::is_ascii_digit);
    // DEST.PID.SEQ: DEST may contain dots, PID and SEQ do not.
    let mut tail = rest.rsplitn(3, |&b| b == b'.');
    let (Some(seq), Some(pid), Some(dest)) = (tail.next(), tail.next(), tail.next()) else {
        return false;
    };
    digits(seq)
        && digits(pid)
        && !dest.is_empty()
        && dest_name.is_none_or(|d| d.as_encoded_bytes() == dest)
}

/// The temp files [`write_atomic`] left in `dir` for the destination named
/// `dest_name` (any destination with `None`) when it was killed before its
/// rename (regular files only). A missing `dir` has none.
pub fn find_temps(dir: &Path, dest_name: Option<&OsStr>) -> Result<Vec<PathBuf>, FsError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new("read directory", dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| FsError::new("read directory", dir, e))?;
        if is_temp_for(&e.file_name(), dest_name) && e.file_type().is_ok_and(|t| t.is_file()) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Remove the temp files [`write_atomic`] left in `dir` for `dest_name`
/// (see [`find_temps`]). Only for a caller that holds the lock every writer
/// of those destinations holds, so that no writer is running. Returns the
/// paths removed.
pub fn remove_temps(dir: &Path, dest_name: Option<&OsStr>) -> Result<Vec<PathBuf>, FsError> {
    let found = find_temps(dir, dest_name)?;
    for p in &found {
        crate::crash::point("remove temp");
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::new("remove", p, e)),
        }
    }
    Ok(found)
}

/// Append `data` to an existing file (used to stamp Portage's `metadata`
/// file, an append that must not change the directory's mtime).
pub fn append(path: &Path, data: &[u8]) -> Result<(), FsError> {
    crate::crash::point("append");
    let mut f = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| FsError::new("open for append", path, e))?;
    f.write_all(data)
        .map_err(|e| FsError::new("append", path, e))
}

/// `fsync` a directory, making renames inside it durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| FsError::new("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_keeps_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", Durability::Deferred).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"two", Durability::Fsync).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temp names left behind.
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failure_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let p = d.path().join("dir");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("x"), b"").unwrap();
        let err = write_atomic(&p, b"data", Durability::Deferred).unwrap_err();
        assert_eq!(err.op, "rename");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn temp_names_are_recognised_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("counter");
        let tmp = temp_path_for(&dest);
        fs::write(&tmp, b"7").unwrap();
        let counter = Some(OsStr::new("counter"));
        assert!(is_temp_for(tmp.file_name().unwrap(), counter));
        assert!(is_temp_for(tmp.file_name().unwrap(), None));
        assert!(is_temp_for(
            OsStr::new(".vartree-tmp.a.b.1.2"),
            Some(OsStr::new("a.b"))
        ));
        for other in [
            "counter",
            ".vartree-tmp.counter",
            ".vartree-tmp.counter.1",
            ".vartree-tmp..1.2",
            ".vartree-tmp.counter.1.x",
            ".vartree-tmp.counter.1.2.3",
            ".vartree-tmp.counterX.1.2",
            ".vartree-tmp.config.1.2",
        ] {
            assert!(!is_temp_for(OsStr::new(other), counter), "{other}");
            fs::write(d.path().join(other), b"").unwrap();
        }
        // A directory with a temp-like name is not a temp file.
        fs::create_dir(d.path().join(".vartree-tmp.counter.5.6")).unwrap();
        assert_eq!(remove_temps(d.path(), counter).unwrap(), vec![tmp.clone()]);
        assert!(!tmp.exists());
        assert!(d.path().join(".vartree-tmp.counter.5.6").is_dir());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 9);
        assert!(remove_temps(&d.path().join("missing"), None)
            .unwrap()
            .is_empty());
    }
}

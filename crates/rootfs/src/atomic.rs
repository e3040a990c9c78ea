//! Atomic file replacement: write a temp name in the same directory, then
//! `rename(2)` it over the destination. Readers see the old content or the
//! new content, never a partial file.

use std::ffi::OsString;
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
}

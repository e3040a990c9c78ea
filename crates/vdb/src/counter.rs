//! The global install counter, `EROOT/var/cache/edb/counter`.
//!
//! Every installed instance gets a unique, increasing COUNTER. The next
//! value is `max(counter file, every installed COUNTER) + 1` (a missing file
//! counts as -1, so the first package of an empty root gets 0), and it is
//! written back with no trailing newline. Call [`next_counter`] while
//! holding the VDB lock.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::db::{Reporter, Vdb, VdbError, Warning};

/// `var/cache/edb/counter`, relative to EROOT.
pub const COUNTER_PATH: &str = "var/cache/edb/counter";

/// The counter file's name in [`crate::state::EDB_DIR`].
const COUNTER_NAME: &str = "counter";

/// The counter file of a database, resolved inside ROOT.
pub fn counter_file(vdb: &Vdb) -> Result<PathBuf, VdbError> {
    vdb.state().entry(COUNTER_PATH)
}

/// Read the counter file as Portage does: the first line, trimmed. A
/// missing file is -1 silently; an unreadable or corrupt one is reported
/// and also taken as -1.
pub fn read_counter_file(path: &Path, reporter: &dyn Reporter) -> i64 {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return -1,
        Err(e) => {
            reporter.warn(Warning::Unreadable {
                path: path.to_owned(),
                error: e.to_string(),
            });
            return -1;
        }
    };
    let text = String::from_utf8_lossy(&data);
    let first = crate::contents::lines(text.as_bytes())
        .next()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default();
    match first.trim().parse::<i64>() {
        Ok(n) => n,
        Err(_) => {
            reporter.warn(Warning::BadValue {
                path: path.to_owned(),
                key: "counter".into(),
                reason: format!(
                    "COUNTER file is corrupt ({first:?}); recomputed from the installed packages"
                ),
            });
            -1
        }
    }
}

/// The highest COUNTER of the installed packages (-1 when there are none).
/// Missing or corrupt COUNTERs count as 0, as in Portage.
pub fn max_installed_counter(vdb: &Vdb, reporter: &dyn Reporter) -> Result<i64, VdbError> {
    let mut max = -1;
    for e in vdb.entries(reporter)? {
        max = max.max(e.counter(reporter).unwrap_or(0));
    }
    Ok(max)
}

/// Allocate the next COUNTER and record it in the counter file. Must be
/// called under the VDB lock.
pub fn next_counter(vdb: &Vdb, reporter: &dyn Reporter) -> Result<i64, VdbError> {
    let path = vdb
        .state()
        .create_dir(crate::state::EDB_DIR)?
        .join(COUNTER_NAME);
    let file = read_counter_file(&path, reporter);
    let next = file.max(max_installed_counter(vdb, reporter)?) + 1;
    rootfs::atomic::write_atomic(
        &path,
        next.to_string().as_bytes(),
        rootfs::atomic::Durability::Deferred,
    )?;
    Ok(next)
}

/// Remove the temp files a [`next_counter`] killed before its rename left
/// beside the counter file. Call while holding the VDB lock (every writer
/// of the counter holds it). Returns the paths removed.
pub fn remove_stale_temps(vdb: &Vdb) -> Result<Vec<PathBuf>, VdbError> {
    let dir = vdb.state().path(crate::state::EDB_DIR)?;
    Ok(rootfs::atomic::remove_temps(
        &dir,
        Some(std::ffi::OsStr::new(COUNTER_NAME)),
    )?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_name_is_the_last_component_of_its_path() {
        assert_eq!(
            super::COUNTER_PATH,
            format!("{}/{}", crate::state::EDB_DIR, super::COUNTER_NAME)
        );
    }
}

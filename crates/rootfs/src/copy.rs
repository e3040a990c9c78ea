//! Copying file content between filesystems: reflink (`FICLONE`), then
//! `copy_file_range`, then a plain read/write loop. The strategy that
//! works is remembered per (source device, destination device) pair, so
//! probing costs one failed call per pair, not one per file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Mutex;

/// Receives every byte copied (to hash while copying).
pub type HashSink<'a> = &'a mut dyn FnMut(&[u8]);

/// How content was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Placement {
    /// Renamed from the image (same filesystem; the image is consumed).
    Rename,
    /// Shared extents (`FICLONE`).
    Reflink,
    /// In-kernel copy (`copy_file_range`).
    CopyFileRange,
    /// Userspace read/write.
    Copy,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Rename => "rename",
            Placement::Reflink => "reflink",
            Placement::CopyFileRange => "copy_file_range",
            Placement::Copy => "copy",
        }
    }
}

/// Remembers which copy strategy works between two filesystems.
#[derive(Debug, Default)]
pub struct CopyProbe {
    best: Mutex<HashMap<(u64, u64), Placement>>,
}

fn errno_means_unsupported(e: &rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [
        Errno::OPNOTSUPP,
        Errno::NOTSUP,
        Errno::XDEV,
        Errno::INVAL,
        Errno::NOSYS,
        Errno::BADF,
        Errno::PERM,
    ]
    .contains(e)
}

impl CopyProbe {
    pub fn new() -> Self {
        Self::default()
    }

    /// Copy all of `src` into the empty file `dst`, feeding every byte to
    /// `hash` (the source is read anyway when it must be hashed; for
    /// reflink and copy_file_range it is read once more just for the hash
    /// only when `need_hash`). Returns the strategy used.
    pub fn copy(
        &self,
        src: &mut File,
        dst: &mut File,
        devs: (u64, u64),
        len: u64,
        hash: Option<HashSink<'_>>,
    ) -> io::Result<Placement> {
        let start = self
            .best
            .lock()
            .ok()
            .and_then(|m| m.get(&devs).copied())
            .unwrap_or(Placement::Reflink);
        let mut how = start;
        loop {
            let r = match how {
                Placement::Reflink => rustix::fs::ioctl_ficlone(&*dst, &*src).map_err(Some),
                Placement::CopyFileRange => copy_range(src, dst, len),
                _ => {
                    copy_plain(src, dst, hash)?;
                    self.remember(devs, Placement::Copy);
                    return Ok(Placement::Copy);
                }
            };
            match r {
                Ok(()) => {
                    self.remember(devs, how);
                    if let Some(h) = hash {
                        hash_file(src, h)?;
                    }
                    return Ok(how);
                }
                Err(Some(e)) if errno_means_unsupported(&e) => {
                    how = if how == Placement::Reflink {
                        Placement::CopyFileRange
                    } else {
                        Placement::Copy
                    };
                    // Start again from an empty destination.
                    dst.set_len(0)?;
                    rustix::fs::seek(&*dst, rustix::fs::SeekFrom::Start(0))?;
                    rustix::fs::seek(&*src, rustix::fs::SeekFrom::Start(0))?;
                }
                Err(Some(e)) => return Err(e.into()),
                Err(None) => return Err(io::Error::other("short copy_file_range")),
            }
        }
    }

    fn remember(&self, devs: (u64, u64), how: Placement) {
        if let Ok(mut m) = self.best.lock() {
            m.insert(devs, how);
        }
    }
}

fn copy_range(src: &File, dst: &File, len: u64) -> Result<(), Option<rustix::io::Errno>> {
    let mut left = len;
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        let n = rustix::fs::copy_file_range(src, None, dst, None, chunk).map_err(Some)?;
        if n == 0 {
            // The source shrank under us.
            return Err(None);
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_plain(src: &mut File, dst: &mut File, mut hash: Option<HashSink<'_>>) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if let Some(h) = hash.as_deref_mut() {
            h(&buf[..n]);
        }
        dst.write_all(&buf[..n])?;
    }
}

/// Feed a whole file (from the start) to `hash`.
pub fn hash_file(f: &mut File, hash: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    rustix::fs::seek(&*f, rustix::fs::SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hash(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_remembers() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.path().join("a"), &data).unwrap();
        let probe = CopyProbe::new();
        for i in 0..2 {
            let mut src = File::open(d.path().join("a")).unwrap();
            let dst_path = d.path().join(format!("b{i}"));
            let mut dst = File::create(&dst_path).unwrap();
            let mut seen = 0usize;
            let how = probe
                .copy(
                    &mut src,
                    &mut dst,
                    (1, 1),
                    data.len() as u64,
                    Some(&mut |b: &[u8]| seen += b.len()),
                )
                .unwrap();
            assert_ne!(how, Placement::Rename);
            assert_eq!(seen, data.len());
            assert_eq!(std::fs::read(&dst_path).unwrap(), data);
        }
    }
}

//! Reading an image directory (`${D}`): every entry under `D/EPREFIX`, in a
//! deterministic pre-order (names sorted bytewise), with what `lstat` says.
//!
//! Paths are kept as raw bytes, absolute and relative to ROOT (so they
//! include EPREFIX), exactly as CONTENTS will record them. Names or symlink
//! targets containing CR or LF are refused before anything is touched, as
//! Portage refuses them.

use std::path::{Path, PathBuf};

use rootfs::dir::{DirHandle, FileTime};
use rootfs::root::FileKind;

use crate::error::MergeError;

/// What an image entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    Dir,
    File,
    Symlink { target: Vec<u8> },
    Fifo,
    Device { rdev: u64 },
}

/// One entry of the image.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// Absolute path relative to ROOT, including EPREFIX (`/usr/bin/foo`),
    /// as it is merged and recorded: bytes that are not valid UTF-8 are
    /// replaced by `?`, as Portage renames such names.
    pub path: Vec<u8>,
    /// The same path as it is in the image (raw bytes).
    pub raw_path: Vec<u8>,
    pub kind: ImageKind,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: FileTime,
    pub size: u64,
    /// `(st_dev, st_ino)`, to keep hard links together.
    pub inode: (u64, u64),
    pub nlink: u64,
}

impl ImageEntry {
    /// The basename.
    pub fn name(&self) -> &[u8] {
        vdb::contents::basename(&self.path)
    }
    /// The parent path (`/` for top-level entries).
    pub fn parent(&self) -> &[u8] {
        vdb::contents::dirname(&self.path)
    }
    /// The basename in the image.
    pub fn raw_name(&self) -> &[u8] {
        vdb::contents::basename(&self.raw_path)
    }
    /// The parent path in the image.
    pub fn raw_parent(&self) -> &[u8] {
        vdb::contents::dirname(&self.raw_path)
    }
}

/// Replace every invalid UTF-8 sequence by `?` (Portage renames image
/// names that do not decode).
pub fn sanitize_name(name: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if std::str::from_utf8(name).is_ok() {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = Vec::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.push(b'?');
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An image read from a directory.
#[derive(Debug)]
pub struct Image {
    /// The image directory (`D`).
    pub dir: PathBuf,
    /// `/` or `/prefix`: where merging starts inside D.
    pub eprefix: Vec<u8>,
    /// Every entry below `D/EPREFIX`, parents before children.
    pub entries: Vec<ImageEntry>,
    /// Paths of the entries INSTALL_MASK dropped (still in the image
    /// directory, not merged).
    pub masked: Vec<Vec<u8>>,
}

fn stat_entry(
    dir: &DirHandle,
    name: &[u8],
    path: Vec<u8>,
    raw_path: Vec<u8>,
) -> Result<ImageEntry, MergeError> {
    let st = dir
        .lstat(name)
        .map_err(|e| MergeError::image_io("lstat", &path, e))?;
    let kind = match st.kind {
        FileKind::Directory => ImageKind::Dir,
        FileKind::Regular => ImageKind::File,
        FileKind::Symlink => ImageKind::Symlink {
            target: dir
                .readlink(name)
                .map_err(|e| MergeError::image_io("readlink", &path, e))?,
        },
        FileKind::Fifo => ImageKind::Fifo,
        FileKind::CharDevice | FileKind::BlockDevice => ImageKind::Device { rdev: st.rdev },
        FileKind::Socket | FileKind::Unknown => {
            return Err(MergeError::BadImage {
                path: String::from_utf8_lossy(&path).into_owned(),
                reason: "sockets and unknown file types cannot be merged".into(),
            })
        }
    };
    Ok(ImageEntry {
        path,
        raw_path,
        kind,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        mtime: FileTime {
            sec: st.mtime,
            nsec: st.mtime_nsec,
        },
        size: st.size,
        inode: (st.id.dev, st.id.ino),
        nlink: st.nlink,
    })
}

fn has_line_break(b: &[u8]) -> bool {
    b.contains(&b'\n') || b.contains(&b'\r')
}

/// Read the image below `image_dir/eprefix`. A missing `D/EPREFIX` is an
/// image that installs nothing.
pub fn scan_image(image_dir: &Path, eprefix: &Path) -> Result<Image, MergeError> {
    let eprefix_bytes = vdb::contents::normalize(eprefix.as_os_str().as_encoded_bytes());
    let top = DirHandle::open(image_dir).map_err(|e| MergeError::Io {
        op: "open image directory",
        path: image_dir.to_owned(),
        source: e,
    })?;
    // Walk down to D/EPREFIX without following symlinks.
    let mut start = top;
    for comp in eprefix_bytes
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
    {
        match start.open_subdir(comp) {
            Ok(d) => start = d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Image {
                    dir: image_dir.to_owned(),
                    eprefix: eprefix_bytes,
                    entries: Vec::new(),
                    masked: Vec::new(),
                })
            }
            Err(e) => {
                return Err(MergeError::Io {
                    op: "open image directory",
                    path: image_dir.join(String::from_utf8_lossy(&eprefix_bytes[1..]).as_ref()),
                    source: e,
                })
            }
        }
    }
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    let base = if eprefix_bytes == b"/" {
        Vec::new()
    } else {
        eprefix_bytes.clone()
    };
    walk(&start, &base, &base, &mut entries, &mut bad)?;
    if !bad.is_empty() {
        return Err(MergeError::LineBreaks { paths: bad });
    }
    Ok(Image {
        dir: image_dir.to_owned(),
        eprefix: eprefix_bytes,
        entries,
        masked: Vec::new(),
    })
}

fn walk(
    dir: &DirHandle,
    base: &[u8],
    raw_base: &[u8],
    out: &mut Vec<ImageEntry>,
    bad: &mut Vec<String>,
) -> Result<(), MergeError> {
    let mut names = dir
        .list()
        .map_err(|e| MergeError::image_io("read directory", base, e))?;
    names.sort();
    for name in names {
        // The marker of an interrupted `--move-image` merge of this image
        // (see `journal::image_marker_name`) is not part of the image.
        if raw_base.is_empty() && name.starts_with(crate::journal::IMAGE_MARKER_PREFIX.as_bytes()) {
            continue;
        }
        let mut path = base.to_vec();
        path.push(b'/');
        path.extend_from_slice(&sanitize_name(&name));
        let mut raw_path = raw_base.to_vec();
        raw_path.push(b'/');
        raw_path.extend_from_slice(&name);
        if has_line_break(&name) {
            bad.push(String::from_utf8_lossy(&path).into_owned());
            continue;
        }
        let e = stat_entry(dir, &name, path.clone(), raw_path.clone())?;
        if let ImageKind::Symlink { target } = &e.kind {
            if has_line_break(target) {
                bad.push(String::from_utf8_lossy(&path).into_owned());
            }
        }
        let is_dir = e.kind == ImageKind::Dir;
        out.push(e);
        if is_dir {
            let sub = dir
                .open_subdir(&name)
                .map_err(|e| MergeError::image_io("open directory", &path, e))?;
            walk(&sub, &path, &raw_path, out, bad)?;
        }
    }
    Ok(())
}

/// Strip the image directory from a symlink target that points into it
/// (EAPI ≤ 8: Portage records the stripped target; we also create it). The
/// image directory is tried as given (made absolute) and canonicalised.
pub fn strip_image_prefix_any(target: &[u8], image_dir: &Path) -> Option<Vec<u8>> {
    let abs = std::path::absolute(image_dir).unwrap_or_else(|_| image_dir.to_owned());
    let canon = std::fs::canonicalize(image_dir).ok();
    strip_image_prefix(target, &abs).or_else(|| canon.and_then(|c| strip_image_prefix(target, &c)))
}

/// [`strip_image_prefix_any`] for one spelling of the image directory.
pub fn strip_image_prefix(target: &[u8], image_dir: &Path) -> Option<Vec<u8>> {
    let mut d = image_dir.as_os_str().as_encoded_bytes().to_vec();
    while d.len() > 1 && d.ends_with(b"/") {
        d.pop();
    }
    let rest = target.strip_prefix(d.as_slice())?;
    if rest.is_empty() {
        return Some(b"/".to_vec());
    }
    rest.starts_with(b"/").then(|| rest.to_vec())
}

/// Drop what INSTALL_MASK masks from the image (Portage's
/// `install_mask_dir`): masked non-directories, then masked directories
/// that are left empty. Paths are matched relative to `${ED}`.
pub fn apply_install_mask(image: &mut Image, mask: &crate::mask::InstallMask) {
    let prefix = if image.eprefix == b"/" {
        0
    } else {
        image.eprefix.len()
    };
    let rel = |p: &[u8]| String::from_utf8_lossy(&p[prefix + 1..]).into_owned();
    let mut keep = vec![true; image.entries.len()];
    let mut has_child: std::collections::HashSet<Vec<u8>> = Default::default();
    for (i, e) in image.entries.iter().enumerate().rev() {
        let drop = if e.kind == ImageKind::Dir {
            !has_child.contains(&e.path) && mask.matches(&format!("{}/", rel(&e.path)))
        } else {
            mask.matches(&rel(&e.path))
        };
        if drop {
            keep[i] = false;
        } else {
            has_child.insert(e.parent().to_vec());
        }
    }
    for (e, k) in image.entries.iter().zip(&keep) {
        if !k {
            image.masked.push(e.path.clone());
        }
    }
    let mut k = keep.into_iter();
    image.entries.retain(|_| k.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_image_prefix() {
        let d = Path::new("/var/tmp/portage/a/b-1/image/");
        assert_eq!(
            strip_image_prefix(b"/var/tmp/portage/a/b-1/image/usr/bin/x", d),
            Some(b"/usr/bin/x".to_vec())
        );
        assert_eq!(
            strip_image_prefix(b"/var/tmp/portage/a/b-1/imagex/y", d),
            None
        );
        assert_eq!(strip_image_prefix(b"../x", d), None);
    }

    #[test]
    fn refuses_line_breaks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr")).unwrap();
        std::fs::write(t.path().join("usr/a\nb"), b"").unwrap();
        std::os::unix::fs::symlink("x\ry", t.path().join("usr/l")).unwrap();
        match scan_image(t.path(), Path::new("")) {
            Err(MergeError::LineBreaks { paths }) => {
                assert_eq!(paths, vec!["/usr/a\nb".to_string(), "/usr/l".to_string()])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn walks_in_order_below_eprefix() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("opt/gentoo/usr/bin")).unwrap();
        std::fs::write(t.path().join("opt/gentoo/usr/bin/b"), b"x").unwrap();
        std::fs::write(t.path().join("opt/gentoo/usr/a"), b"x").unwrap();
        std::fs::write(t.path().join("outside"), b"x").unwrap();
        let img = scan_image(t.path(), Path::new("/opt/gentoo")).unwrap();
        let paths: Vec<_> = img
            .entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "/opt/gentoo/usr",
                "/opt/gentoo/usr/a",
                "/opt/gentoo/usr/bin",
                "/opt/gentoo/usr/bin/b"
            ]
        );
        assert!(scan_image(t.path(), Path::new("/nope"))
            .unwrap()
            .entries
            .is_empty());
    }
}

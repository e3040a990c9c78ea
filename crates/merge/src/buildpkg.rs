//! A binary package from an image directory (`${D}`) and its build-info,
//! as Portage's package phase makes one (`emerge --buildpkg`).
//!
//! * The metadata is every regular file of build-info.
//! * The image is the whole of `D` in sorted order, including the EPREFIX
//!   path and the image root directory itself: directories, regular files
//!   (with their xattrs), symlinks verbatim, hard links, FIFOs and device
//!   nodes.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::Path;

use binpkg::write::{ImageWriter, SourceEntry, WriteOptions, WriteSummary};
use binpkg::{EntryKind, Format, Metadata};
use rootfs::dir::DirHandle;
use rootfs::root::{EntryStat, FileKind};

use crate::error::MergeError;

/// Every regular file of a build-info directory, as package metadata.
pub fn build_info_metadata(dir: &Path) -> Result<Metadata, MergeError> {
    let io = |op, path: &Path, source| MergeError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let mut md = Metadata::new();
    for de in std::fs::read_dir(dir).map_err(|e| io("list build-info", dir, e))? {
        let de = de.map_err(|e| io("list build-info", dir, e))?;
        let Ok(name) = de.file_name().into_string() else {
            continue;
        };
        if !de.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let data = std::fs::read(de.path()).map_err(|e| io("read build-info", &de.path(), e))?;
        md.insert(name, data);
    }
    Ok(md)
}

struct Walk<'a, 'w> {
    w: &'a mut ImageWriter<'w>,
    cpv: &'a str,
    inodes: HashMap<(u64, u64), Vec<u8>>,
    names: &'a Names,
}

/// The host's user and group names (the image is on the host), as Python's
/// `tarfile` looks them up for Portage.
struct Names {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
}

impl Names {
    fn host() -> Names {
        let read = |p: &str| crate::quickpkg::parse_id_names(&std::fs::read(p).unwrap_or_default());
        Names {
            users: read("/etc/passwd"),
            groups: read("/etc/group"),
        }
    }
}

fn entry_of<'p>(
    path: &'p [u8],
    st: &EntryStat,
    kind: EntryKind,
    names: &'p Names,
) -> SourceEntry<'p> {
    SourceEntry {
        mode: st.mode & 0o7777,
        uid: u64::from(st.uid),
        gid: u64::from(st.gid),
        uname: names.users.get(&st.uid).map(Vec::as_slice).unwrap_or(b""),
        gname: names.groups.get(&st.gid).map(Vec::as_slice).unwrap_or(b""),
        mtime: st.mtime,
        ..SourceEntry::new(path, kind)
    }
}

impl Walk<'_, '_> {
    fn err(&self, op: &'static str, path: &[u8], source: std::io::Error) -> MergeError {
        MergeError::ImageIo {
            op,
            path: format!("/{}", String::from_utf8_lossy(path)),
            source,
        }
    }

    fn pack(&self) -> impl Fn(binpkg::WriteError) -> MergeError + '_ {
        |source| MergeError::Pack {
            cpv: self.cpv.to_owned(),
            source,
        }
    }

    /// Append the children of `dir` (image path `prefix`), sorted, recursively.
    fn dir(&mut self, dir: &DirHandle, prefix: &[u8]) -> Result<(), MergeError> {
        let mut names = dir.list().map_err(|e| self.err("list", prefix, e))?;
        names.sort();
        for name in names {
            if let Some(sig) = rootfs::signal::pending() {
                return Err(MergeError::PackSignal {
                    cpv: self.cpv.to_owned(),
                    sig,
                });
            }
            let mut path = prefix.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let st = dir.lstat(&name).map_err(|e| self.err("lstat", &path, e))?;
            match st.kind {
                FileKind::Directory => {
                    let e = entry_of(&path, &st, EntryKind::Dir, self.names);
                    self.w.append(&e, None).map_err(self.pack())?;
                    let sub = dir
                        .open_subdir(&name)
                        .map_err(|e| self.err("open", &path, e))?;
                    self.dir(&sub, &path)?;
                }
                FileKind::Symlink => {
                    let target = dir
                        .readlink(&name)
                        .map_err(|e| self.err("readlink", &path, e))?;
                    let e = SourceEntry {
                        link_target: &target,
                        ..entry_of(&path, &st, EntryKind::Symlink, self.names)
                    };
                    self.w.append(&e, None).map_err(self.pack())?;
                }
                FileKind::Regular => {
                    let key = (st.id.dev, st.id.ino);
                    if st.nlink > 1 {
                        if let Some(first) = self.inodes.get(&key) {
                            let e = SourceEntry {
                                link_target: first,
                                ..entry_of(&path, &st, EntryKind::Hardlink, self.names)
                            };
                            self.w.append(&e, None).map_err(self.pack())?;
                            continue;
                        }
                        self.inodes.insert(key, path.clone());
                    }
                    let mut file = dir
                        .open_file(&name)
                        .map_err(|e| self.err("open", &path, e))?;
                    let mut xattrs = rootfs::dir::read_xattrs(file.as_fd())
                        .map_err(|e| self.err("read the xattrs of", &path, e))?;
                    xattrs.sort();
                    let e = SourceEntry {
                        size: st.size,
                        xattrs: &xattrs,
                        ..entry_of(&path, &st, EntryKind::File, self.names)
                    };
                    self.w.append(&e, Some(&mut file)).map_err(self.pack())?;
                }
                FileKind::Fifo => {
                    let e = entry_of(&path, &st, EntryKind::Fifo, self.names);
                    self.w.append(&e, None).map_err(self.pack())?;
                }
                FileKind::CharDevice | FileKind::BlockDevice => {
                    let kind = if st.kind == FileKind::CharDevice {
                        EntryKind::CharDevice
                    } else {
                        EntryKind::BlockDevice
                    };
                    let dev = rustix::fs::Dev::from(st.rdev);
                    let e = SourceEntry {
                        device: (rustix::fs::major(dev), rustix::fs::minor(dev)),
                        ..entry_of(&path, &st, kind, self.names)
                    };
                    self.w.append(&e, None).map_err(self.pack())?;
                }
                _ => {
                    return Err(MergeError::BadImage {
                        path: format!("/{}", String::from_utf8_lossy(&path)),
                        reason: "a socket or other special file cannot be packaged".into(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// Write a binary package of `image_dir` with `metadata` to `out`.
/// `basename` is the gpkg top directory (`PF` or `PF-BUILD_ID`).
pub fn package_image<W: Read + Write + Seek>(
    image_dir: &Path,
    metadata: &Metadata,
    cpv: &atom::Cpv,
    basename: &str,
    format: Format,
    opts: &WriteOptions,
    out: &mut W,
) -> Result<WriteSummary, MergeError> {
    let top = DirHandle::open(image_dir).map_err(|source| MergeError::Io {
        op: "open the image directory",
        path: image_dir.to_path_buf(),
        source,
    })?;
    let st = rootfs::root::entry_stat(&top.raw_stat().map_err(|source| MergeError::Io {
        op: "stat the image directory",
        path: image_dir.to_path_buf(),
        source,
    })?);
    let cpv_s = cpv.to_string();
    let names = Names::host();
    let fill = |w: &mut ImageWriter<'_>| -> Result<(), MergeError> {
        let root = entry_of(b"", &st, EntryKind::Dir, &names);
        w.append(&root, None).map_err(|source| MergeError::Pack {
            cpv: cpv_s.clone(),
            source,
        })?;
        let mut walk = Walk {
            w,
            cpv: &cpv_s,
            inodes: HashMap::new(),
            names: &names,
        };
        walk.dir(&top, b"")
    };
    match format {
        Format::Gpkg => binpkg::write_gpkg(out, basename, metadata, opts, fill),
        Format::Xpak => binpkg::write_xpak(out, metadata, opts, fill),
    }
}

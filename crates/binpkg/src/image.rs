//! The image tar: entries handed to the caller, and the checks that refuse
//! hostile archives (absolute names, `..`, duplicates, writes through
//! symlinks, forward hard links, control characters, devices, bombs).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use crate::compress::{self, Compression};
use crate::error::{show, Error, ErrorKind, ImageProblem, LimitKind};
use crate::io::{
    CountingReader, ExactReader, FileSection, HashMode, HashingReader, HexDigests, LimitedReader,
    Meter,
};
use crate::options::{Limits, VerifyOptions};
use crate::tarwalk::{self, TarEntry, WalkError};

/// A modification time: seconds since the epoch and nanoseconds (from a PAX
/// `mtime` record when the archive has one, else 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mtime {
    /// Whole seconds (floor).
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nanos: u32,
}

/// The type of an image entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Regular file (content readable from the entry).
    File,
    /// Directory.
    Dir,
    /// Symbolic link ([`ImageEntry::link_target`] is its target, verbatim).
    Symlink,
    /// Hard link to an earlier entry ([`ImageEntry::link_target`] is that
    /// entry's path relative to the image root).
    Hardlink,
    /// Named pipe.
    Fifo,
    /// Character device ([`ImageEntry::device`] holds major, minor).
    CharDevice,
    /// Block device ([`ImageEntry::device`] holds major, minor).
    BlockDevice,
}

impl EntryKind {
    /// A short lowercase name (`file`, `dir`, `symlink`, `hardlink`, `fifo`,
    /// `char`, `block`).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Fifo => "fifo",
            EntryKind::CharDevice => "char",
            EntryKind::BlockDevice => "block",
        }
    }
}

/// One entry of a package's image, checked before it is handed out.
///
/// The entry is also a [`Read`] of the file's content (empty for anything
/// but [`EntryKind::File`]); reading fewer bytes than [`size`](Self::size)
/// is fine, the rest is skipped.
#[non_exhaustive]
pub struct ImageEntry<'a> {
    /// Path relative to the image root, components joined by `/`, without
    /// leading `/`, `./`, `image/` or repeated slashes; empty for the image
    /// root itself (`image/` in gpkg, `./` in xpak), which comes first when the
    /// archive has it.
    pub path: Vec<u8>,
    /// Entry type.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Owner user name, if the archive records one.
    pub uname: Option<Vec<u8>>,
    /// Owner group name, if the archive records one.
    pub gname: Option<Vec<u8>>,
    /// Modification time.
    pub mtime: Mtime,
    /// Content size (0 for anything but files).
    pub size: u64,
    /// Symlink target (verbatim) or hard-link target (image-relative path).
    pub link_target: Option<Vec<u8>>,
    /// Device numbers (major, minor) of device nodes.
    pub device: Option<(u32, u32)>,
    /// Extended attributes from PAX `SCHILY.xattr.<name>` records, in
    /// archive order (name without the prefix, raw value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The name as stored in the tar (for messages).
    pub tar_name: Vec<u8>,
    data: &'a mut dyn Read,
}

impl ImageEntry<'_> {
    /// Is this the image root directory (empty path)?
    pub fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// [`path`](Self::path) as a relative `Path`.
    pub fn rel_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }
}

impl Read for ImageEntry<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl std::fmt::Debug for ImageEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageEntry")
            .field("path", &show(&self.path))
            .field("kind", &self.kind)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("mtime", &self.mtime)
            .field("size", &self.size)
            .field("link_target", &self.link_target.as_deref().map(show))
            .finish_non_exhaustive()
    }
}

/// Where image entries live inside the image tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayout {
    /// gpkg: `image/<path>` (`image//<path>` accepted).
    Gpkg,
    /// xpak/tbz2: `./<path>` or `<path>`.
    Xpak,
}

/// Counts from a full pass over an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageSummary {
    /// All entries (the root included).
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Hard links.
    pub hardlinks: u64,
    /// FIFOs.
    pub fifos: u64,
    /// Character and block devices.
    pub devices: u64,
    /// Sum of regular-file sizes.
    pub content_bytes: u64,
    /// Size of the uncompressed image tar stream.
    pub tar_bytes: u64,
    /// Size of the compressed image as stored in the package.
    pub stored_bytes: u64,
}

impl ImageSummary {
    fn count(&mut self, kind: EntryKind, size: u64) {
        self.entries += 1;
        match kind {
            EntryKind::File => {
                self.files += 1;
                self.content_bytes += size;
            }
            EntryKind::Dir => self.dirs += 1,
            EntryKind::Symlink => self.symlinks += 1,
            EntryKind::Hardlink => self.hardlinks += 1,
            EntryKind::Fifo => self.fifos += 1,
            EntryKind::CharDevice | EntryKind::BlockDevice => self.devices += 1,
        }
    }
}

/// Why the checker refused an entry.
#[derive(Debug)]
pub(crate) enum CheckError {
    Problem(Vec<u8>, ImageProblem),
    Limit(LimitKind),
}

impl From<CheckError> for ErrorKind {
    fn from(e: CheckError) -> ErrorKind {
        match e {
            CheckError::Problem(name, problem) => ErrorKind::BadImageEntry {
                path: show(&name),
                problem,
            },
            CheckError::Limit(limit) => ErrorKind::Limit { limit },
        }
    }
}

pub(crate) struct Checked {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub link_target: Option<Vec<u8>>,
}

/// Per-archive state of the entry checks.
pub(crate) struct Checker {
    layout: ImageLayout,
    allow_devices: bool,
    max_entries: u64,
    /// `(limit, kind)` for the total regular-file content.
    content_limit: Option<(u64, LimitKind)>,
    /// Paths seen: `None` for a directory only implied by a deeper entry.
    seen: HashMap<Vec<u8>, Option<EntryKind>>,
    root_seen: bool,
    entries: u64,
    content: u64,
}

fn kind_of(e: &TarEntry) -> Result<EntryKind, ImageProblem> {
    Ok(match e.typeflag {
        b'0' | b'7' => EntryKind::File,
        b'\0' if e.name.ends_with(b"/") => EntryKind::Dir,
        b'\0' => EntryKind::File,
        b'1' => EntryKind::Hardlink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDevice,
        b'4' => EntryKind::BlockDevice,
        b'5' => EntryKind::Dir,
        b'6' => EntryKind::Fifo,
        t => {
            return Err(ImageProblem::UnsupportedType {
                typeflag: char::from(t),
            })
        }
    })
}

fn has_bad_char(b: &[u8]) -> bool {
    b.iter().any(|&c| matches!(c, 0 | b'\r' | b'\n'))
}

/// Normalise an archive name to an image-relative path.
pub(crate) fn normalize(raw: &[u8], layout: ImageLayout) -> Result<Vec<u8>, ImageProblem> {
    if raw.is_empty() {
        return Err(ImageProblem::EmptyName);
    }
    if has_bad_char(raw) {
        return Err(ImageProblem::BadCharacter);
    }
    if raw[0] == b'/' {
        return Err(ImageProblem::Absolute);
    }
    let comps: Vec<&[u8]> = raw
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.iter().any(|c| *c == b"..") {
        return Err(ImageProblem::DotDot);
    }
    let comps = match layout {
        ImageLayout::Gpkg => match comps.split_first() {
            Some((first, rest)) if *first == b"image" => rest,
            _ => return Err(ImageProblem::OutsidePrefix),
        },
        ImageLayout::Xpak => &comps[..],
    };
    Ok(comps.join(&b'/'))
}

impl Checker {
    pub(crate) fn new(
        layout: ImageLayout,
        allow_devices: bool,
        limits: &Limits,
        size_key: Option<u64>,
    ) -> Checker {
        let size_limit = size_key.filter(|_| limits.check_size_key).map(|s| {
            let limit = s.saturating_add(limits.size_key_slack);
            (limit, LimitKind::SizeKey { size_key: s, limit })
        });
        let total = (
            limits.max_image_size,
            LimitKind::TotalSize {
                limit: limits.max_image_size,
            },
        );
        let content_limit = match size_limit {
            Some(s) if s.0 < total.0 => Some(s),
            _ => Some(total),
        };
        Checker {
            layout,
            allow_devices,
            max_entries: limits.max_entries,
            content_limit,
            seen: HashMap::new(),
            root_seen: false,
            entries: 0,
            content: 0,
        }
    }

    /// Check one entry against everything seen before it.
    pub(crate) fn check(&mut self, e: &TarEntry) -> Result<Checked, CheckError> {
        let bad = |p: ImageProblem| CheckError::Problem(e.name.clone(), p);
        self.entries += 1;
        if self.entries > self.max_entries {
            return Err(CheckError::Limit(LimitKind::Entries {
                limit: self.max_entries,
            }));
        }
        let kind = kind_of(e).map_err(bad)?;
        let path = normalize(&e.name, self.layout).map_err(bad)?;
        if kind != EntryKind::File && e.size != 0 {
            return Err(bad(ImageProblem::DataOnNonFile {
                kind: kind.as_str(),
                size: e.size,
            }));
        }
        if path.is_empty() {
            if kind != EntryKind::Dir {
                return Err(bad(ImageProblem::RootNotDirectory));
            }
            if std::mem::replace(&mut self.root_seen, true) {
                return Err(bad(ImageProblem::Duplicate));
            }
            return Ok(Checked {
                path,
                kind,
                link_target: None,
            });
        }
        // Every ancestor must be a directory of this archive (or not yet
        // mentioned, then it is recorded as implied).
        for (i, _) in path.iter().enumerate().filter(|(_, &b)| b == b'/') {
            let anc = &path[..i];
            match self.seen.get(anc) {
                Some(None) | Some(Some(EntryKind::Dir)) => {}
                Some(Some(EntryKind::Symlink)) => {
                    return Err(bad(ImageProblem::ThroughSymlink { via: show(anc) }))
                }
                Some(Some(_)) => {
                    return Err(bad(ImageProblem::ParentNotDirectory { parent: show(anc) }))
                }
                None => {
                    self.seen.insert(anc.to_vec(), None);
                }
            }
        }
        let link_target = match kind {
            EntryKind::Hardlink => {
                let target = match normalize(&e.link, self.layout) {
                    Ok(t) => t,
                    Err(ImageProblem::BadCharacter) => return Err(bad(ImageProblem::BadCharacter)),
                    Err(ImageProblem::EmptyName) => {
                        return Err(bad(ImageProblem::HardlinkForward {
                            target: String::new(),
                        }))
                    }
                    Err(_) => {
                        return Err(bad(ImageProblem::HardlinkOutside {
                            target: show(&e.link),
                        }))
                    }
                };
                match self.seen.get(&target) {
                    _ if target.is_empty() => {
                        return Err(bad(ImageProblem::HardlinkToDirectory {
                            target: show(&e.link),
                        }))
                    }
                    None | Some(None) => {
                        return Err(bad(ImageProblem::HardlinkForward {
                            target: show(&e.link),
                        }))
                    }
                    Some(Some(EntryKind::Dir)) => {
                        return Err(bad(ImageProblem::HardlinkToDirectory {
                            target: show(&e.link),
                        }))
                    }
                    Some(Some(_)) => {}
                }
                Some(target)
            }
            EntryKind::Symlink => {
                if e.link.is_empty() {
                    return Err(bad(ImageProblem::EmptySymlink));
                }
                if has_bad_char(&e.link) {
                    return Err(bad(ImageProblem::BadCharacter));
                }
                Some(e.link.clone())
            }
            EntryKind::CharDevice | EntryKind::BlockDevice if !self.allow_devices => {
                return Err(bad(ImageProblem::Device))
            }
            _ => None,
        };
        match self.seen.get_mut(&path) {
            None => {
                self.seen.insert(path.clone(), Some(kind));
            }
            Some(slot @ None) if kind == EntryKind::Dir => *slot = Some(kind),
            Some(None) => return Err(bad(ImageProblem::ReplacesDirectory)),
            Some(Some(_)) => return Err(bad(ImageProblem::Duplicate)),
        }
        if kind == EntryKind::File {
            self.content = self.content.saturating_add(e.size);
            if let Some((limit, what)) = &self.content_limit {
                if self.content > *limit {
                    return Err(CheckError::Limit(what.clone()));
                }
            }
        }
        Ok(Checked {
            path,
            kind,
            link_target,
        })
    }
}

/// Internal error flow of a walk: ours, or the caller's callback's.
pub(crate) enum Flow<E> {
    Walk(WalkError),
    Check(CheckError),
    Caller(E),
}

impl<E> From<WalkError> for Flow<E> {
    fn from(e: WalkError) -> Self {
        Flow::Walk(e)
    }
}

/// Turn a walk error into an [`ErrorKind`], attributing stream errors to the
/// limit, the decoder or the file using the stream's meter.
pub(crate) fn walk_error_kind(e: WalkError, meter: &Meter, c: Compression) -> ErrorKind {
    if let Some(limit) = meter.tripped() {
        return ErrorKind::Limit { limit };
    }
    let from_below = |fallback: ErrorKind| match meter.failure() {
        Some(source) if c == Compression::None => ErrorKind::Io {
            op: "read the package",
            source,
        },
        Some(source) => ErrorKind::Decompress {
            compression: c.name(),
            source,
        },
        None => fallback,
    };
    match e {
        WalkError::Stream(err) => from_below(ErrorKind::Tar {
            reason: err.to_string(),
        }),
        WalkError::Truncated(reason) => from_below(ErrorKind::Truncated { reason }),
        WalkError::Tar(reason) => ErrorKind::Tar { reason },
        WalkError::DataAfterEnd => ErrorKind::DataAfterEnd,
        WalkError::ExtensionTooLarge => ErrorKind::Limit {
            limit: LimitKind::ExtensionHeader {
                limit: tarwalk::MAX_EXTENSION,
            },
        },
        WalkError::Entry { name, problem } => ErrorKind::BadImageEntry {
            path: show(&name),
            problem,
        },
    }
}

/// Where an image archive is in the package file.
pub(crate) struct ImageSource<'a> {
    pub file: &'a File,
    pub path: &'a Path,
    pub member: &'a str,
    pub start: u64,
    pub len: u64,
    pub compression: Compression,
    pub layout: ImageLayout,
    pub size_key: Option<u64>,
}

/// One full pass over an image: decompress, check every entry, enforce the
/// limits, and hand each entry to `visit` when there is one. Returns the
/// summary and the digests of the stored (compressed) bytes.
pub(crate) fn run_image<E, F>(
    src: &ImageSource<'_>,
    opts: &VerifyOptions,
    mut visit: Option<F>,
    hash: HashMode,
) -> Result<(ImageSummary, HexDigests), E>
where
    E: From<Error>,
    F: FnMut(&mut ImageEntry<'_>) -> Result<(), E>,
{
    let err = |kind: ErrorKind| E::from(Error::new(src.path, Some(src.member), kind));
    let limits = &opts.limits;
    let mut hashing = HashingReader::new(FileSection::new(src.file, src.start, src.len), hash);
    let meter = Rc::new(Meter::default());
    let mut summary = ImageSummary {
        stored_bytes: src.len,
        ..ImageSummary::default()
    };
    let result = {
        let counting = CountingReader::new(&mut hashing, meter.clone());
        let decoder = compress::decoder(
            src.compression,
            BufReader::with_capacity(128 * 1024, counting),
            limits.max_decoder_memory,
        )
        .map_err(|source| {
            err(ErrorKind::Decompress {
                compression: src.compression.name(),
                source,
            })
        })?;
        let limited = LimitedReader::new(
            decoder,
            meter.clone(),
            limits.max_image_size,
            limits.max_ratio,
            limits.ratio_floor,
        );
        let mut stream = BufReader::with_capacity(64 * 1024, limited);
        let mut checker = Checker::new(src.layout, opts.allow_devices, limits, src.size_key);
        tarwalk::walk(&mut stream, |te: &TarEntry, data: &mut ExactReader<'_>| {
            let checked = checker.check(te).map_err(Flow::Check)?;
            summary.count(checked.kind, te.size);
            if let Some(visit) = visit.as_mut() {
                let mut entry = ImageEntry {
                    path: checked.path,
                    kind: checked.kind,
                    mode: te.mode & 0o7777,
                    uid: te.uid,
                    gid: te.gid,
                    uname: te.uname.clone(),
                    gname: te.gname.clone(),
                    mtime: te.mtime,
                    size: if checked.kind == EntryKind::File {
                        te.size
                    } else {
                        0
                    },
                    link_target: checked.link_target,
                    device: matches!(checked.kind, EntryKind::CharDevice | EntryKind::BlockDevice)
                        .then_some(te.device),
                    xattrs: te.xattrs.clone(),
                    tar_name: te.name.clone(),
                    data,
                };
                visit(&mut entry).map_err(Flow::Caller)?;
            }
            Ok::<(), Flow<E>>(())
        })
    };
    match result {
        Ok(()) => {}
        Err(Flow::Walk(w)) => return Err(err(walk_error_kind(w, &meter, src.compression))),
        Err(Flow::Check(c)) => {
            if let Some(limit) = meter.tripped() {
                return Err(err(ErrorKind::Limit { limit }));
            }
            return Err(err(c.into()));
        }
        Err(Flow::Caller(e)) => {
            // A failure of our stream surfaces in the caller's error; report
            // ours, which says what is wrong with the package.
            if let Some(limit) = meter.tripped() {
                return Err(err(ErrorKind::Limit { limit }));
            }
            return Err(e);
        }
    }
    summary.tar_bytes = meter.uncompressed();
    let (digests, count) = hashing.finish().map_err(|source| {
        err(ErrorKind::Io {
            op: "read the package",
            source,
        })
    })?;
    if count != src.len {
        return Err(err(ErrorKind::Truncated {
            reason: format!("{count} of {} bytes", src.len),
        }));
    }
    Ok((summary, digests))
}

/// Check a whole image tar stream (uncompressed) as the readers do, without
/// a package around it: for tests, fuzzing and tools.
pub fn scan_image_tar<R: Read>(
    mut reader: R,
    layout: ImageLayout,
    opts: &VerifyOptions,
) -> Result<ImageSummary, ErrorKind> {
    let meter = Rc::new(Meter::default());
    let limits = &opts.limits;
    let limited = LimitedReader::new(
        &mut reader,
        meter.clone(),
        limits.max_image_size,
        u64::MAX,
        u64::MAX,
    );
    let mut stream = BufReader::new(limited);
    let mut checker = Checker::new(layout, opts.allow_devices, limits, None);
    let mut summary = ImageSummary::default();
    let r = tarwalk::walk(&mut stream, |te: &TarEntry, _data: &mut ExactReader<'_>| {
        let checked = checker.check(te).map_err(Flow::<()>::Check)?;
        summary.count(checked.kind, te.size);
        Ok(())
    });
    match r {
        Ok(()) => {}
        Err(Flow::Walk(w)) => return Err(walk_error_kind(w, &meter, Compression::None)),
        Err(Flow::Check(c)) => return Err(c.into()),
        Err(Flow::Caller(())) => {}
    }
    summary.tar_bytes = meter.uncompressed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let g = ImageLayout::Gpkg;
        assert_eq!(normalize(b"image/usr/bin", g).unwrap(), b"usr/bin");
        assert_eq!(normalize(b"image//etc/x", g).unwrap(), b"etc/x");
        assert_eq!(normalize(b"./image/./a/", g).unwrap(), b"a");
        assert_eq!(normalize(b"image", g).unwrap(), b"");
        assert_eq!(normalize(b"image/", g).unwrap(), b"");
        assert_eq!(normalize(b"/image/a", g), Err(ImageProblem::Absolute));
        assert_eq!(normalize(b"image/../a", g), Err(ImageProblem::DotDot));
        assert_eq!(normalize(b"imagex/a", g), Err(ImageProblem::OutsidePrefix));
        assert_eq!(normalize(b"image/a\nb", g), Err(ImageProblem::BadCharacter));
        let x = ImageLayout::Xpak;
        assert_eq!(normalize(b"./usr/bin", x).unwrap(), b"usr/bin");
        assert_eq!(normalize(b"usr", x).unwrap(), b"usr");
        assert_eq!(normalize(b"./", x).unwrap(), b"");
        assert_eq!(normalize(b".", x).unwrap(), b"");
    }
}

//! `pkgdir`: Portage's binary package directory (PKGDIR).
//!
//! A package is written into a temporary file that nobody else can see
//! ([`PkgDir::create_temp`]: an unnamed `O_TMPFILE` in the package's final
//! directory), then published under its final name in one step
//! ([`PendingPackage::publish`]: `linkat` for a new name, `rename` over an
//! old one), and entered into the `Packages` index, all under Portage's
//! index lock. PKGDIR therefore never shows a partial package, a zero-byte
//! placeholder or a leftover temporary file, whatever fails and whenever the
//! process dies (Gentoo bug 900226: Portage claims a build id by creating an
//! empty file at the final name, and leaves it and its temporary file behind
//! when packaging fails).
//!
//! ```no_run
//! use std::io::Write;
//! use pkgdir::{IndexMetadata, PkgDir, PublishOptions};
//! let dir = PkgDir::new("/var/cache/binpkgs", PublishOptions::default());
//! let cpv = atom::Cpv::parse("app-misc/foo-1.0")?;
//! let mut pending = dir.create_temp(&cpv, binpkg::Format::Gpkg)?;
//! // A writer fills the file; it may also put pending.predicted_build_id()
//! // into the package's BUILD_ID and ask for it below.
//! pending.file().write_all(b"...")?;
//! let keys = [("CATEGORY", "app-misc"), ("PF", "foo-1.0"), ("SLOT", "0"), ("EAPI", "8")]
//!     .into_iter()
//!     .map(|(k, v)| (k.to_owned(), v.to_owned()))
//!     .collect();
//! let published = pending.publish(&IndexMetadata::new(cpv, keys))?;
//! println!("{} (BUILD_ID {:?})", published.rel_path, published.build_id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The index format and what goes into an entry are in [`index`]; the
//! layout, permissions, locking and build id rules in `README.md`.

#![warn(missing_docs)]

mod error;
mod fsops;
pub mod index;
mod pystr;
pub mod usereduce;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};

use binpkg::Format;

pub use error::{Error, InvalidMetadata, Result};
pub use fsops::TEMP_SUFFIX;
pub use index::{FileInfo, PackageIndex};

use fsops::{Dir, PkgdirPerms, Temp};

/// Environment variable that forces the named-temporary-file fallback
/// (as if `O_TMPFILE` were unsupported) when set to `1`.
pub const NO_O_TMPFILE_ENV: &str = "VARTREE_NO_O_TMPFILE";

/// Largest number of build ids tried for one publish before giving up.
const MAX_BUILD_ID_TRIES: u64 = 100_000;

/// How packages are laid out and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOptions {
    /// `FEATURES=binpkg-multi-instance` (Portage's default): packages are
    /// `PKGDIR/CAT/PN/PF-BUILD_ID.gpkg.tar` or `.xpak`, each publish a new
    /// instance. Otherwise `PKGDIR/CAT/PF.gpkg.tar` or `.tbz2`, replaced by
    /// the next publish.
    pub multi_instance: bool,
    /// `FEATURES=compress-index` (Portage's default): also write
    /// `Packages.gz`; when off, a stale `Packages.gz` is removed.
    pub compress_index: bool,
    /// The umask new files and directories are created with (package files
    /// `0666 & !umask`, directories `0777 & !umask`, each plus PKGDIR's group
    /// bits). Portage's quickpkg uses `0o077` by default.
    pub umask: u32,
    /// Make directory entries and the index durable (`fsync`). The package
    /// file itself is always fsynced before it is published.
    pub sync: bool,
    /// Never use `O_TMPFILE`; use a locked dot-named temporary file, as on
    /// filesystems without `O_TMPFILE` (also forced by
    /// `VARTREE_NO_O_TMPFILE=1`).
    pub force_named_temp: bool,
    /// The CHOST Portage is configured with. Portage puts it in the index
    /// header (`CHOST: …`) and leaves it out of entries with the same CHOST;
    /// `None` keeps whatever the existing header says.
    pub chost: Option<String>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            multi_instance: true,
            compress_index: true,
            umask: 0o022,
            sync: true,
            force_named_temp: false,
            chost: None,
        }
    }
}

/// A package's metadata for its index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMetadata {
    /// The package.
    pub cpv: atom::Cpv,
    /// The package's metadata as stored in it (the keys of its
    /// `metadata.tar` or xpak, i.e. its VDB entry: `CATEGORY`, `PF`,
    /// `SLOT`, `EAPI`, `USE`, `IUSE`, `RDEPEND`, `BUILD_TIME`,
    /// `repository`, `BUILD_ID`, ...), raw values. `CATEGORY`, `PF` and a
    /// non-empty `SLOT` are required.
    pub keys: BTreeMap<String, String>,
    /// Multi-instance: the build id to use if it is free (normally the one
    /// the writer put into the package's `BUILD_ID`, see
    /// [`PendingPackage::predicted_build_id`]).
    pub preferred_build_id: Option<u64>,
}

impl IndexMetadata {
    /// Metadata without a preferred build id.
    pub fn new(cpv: atom::Cpv, keys: BTreeMap<String, String>) -> IndexMetadata {
        IndexMetadata {
            cpv,
            keys,
            preferred_build_id: None,
        }
    }

    /// From raw metadata bytes (e.g. [`binpkg::BinPkg::metadata`]), decoded
    /// as Portage decodes them (UTF-8, invalid sequences replaced).
    pub fn from_raw(cpv: atom::Cpv, raw: &BTreeMap<String, Vec<u8>>) -> IndexMetadata {
        let keys = raw
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        IndexMetadata::new(cpv, keys)
    }

    /// Sets [`IndexMetadata::preferred_build_id`].
    pub fn with_preferred_build_id(mut self, id: Option<u64>) -> IndexMetadata {
        self.preferred_build_id = id;
        self
    }
}

/// A package published by [`PendingPackage::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its path.
    pub path: PathBuf,
    /// Its path relative to PKGDIR (the index's `PATH`).
    pub rel_path: String,
    /// The build id in its file name (multi-instance), or `None`.
    pub build_id: Option<u64>,
    /// Lowercase hex MD5 (`MD5`; Portage records it as `BINPKGMD5` in the
    /// VDB entry of a package built with it).
    pub md5: String,
    /// Lowercase hex SHA-1 (`SHA1`).
    pub sha1: String,
    /// Size in bytes (`SIZE`).
    pub size: u64,
    /// mtime in seconds (`MTIME`).
    pub mtime: i64,
}

/// A PKGDIR.
#[derive(Debug, Clone)]
pub struct PkgDir {
    path: PathBuf,
    opts: PublishOptions,
}

fn extension(format: Format, multi_instance: bool) -> &'static str {
    match (format, multi_instance) {
        (Format::Gpkg, _) => ".gpkg.tar",
        (Format::Xpak, true) => ".xpak",
        (Format::Xpak, false) => ".tbz2",
    }
}

/// Portage's `binarytree._parse_build_id` for a file name of `pf`: the
/// build id in `PF-N.xpak` / `PF-N.gpkg.tar`, if the name has that form.
pub fn parse_build_id(file_name: &str, pf: &str) -> Option<u64> {
    let stem = file_name
        .strip_suffix(".gpkg.tar")
        .or_else(|| file_name.strip_suffix(".xpak"))?;
    let (head, id) = stem.rsplit_once('-')?;
    if head != pf {
        return None;
    }
    u64::try_from(index::parse_py_int(id)?).ok()
}

impl PkgDir {
    /// A PKGDIR at `path`; nothing is created until a package is.
    pub fn new(path: impl Into<PathBuf>, opts: PublishOptions) -> PkgDir {
        PkgDir {
            path: path.into(),
            opts,
        }
    }

    /// The PKGDIR path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options.
    pub fn options(&self) -> &PublishOptions {
        &self.opts
    }

    fn index_path(&self) -> PathBuf {
        self.path.join("Packages")
    }

    fn header_defaults(&self) -> BTreeMap<String, String> {
        let mut h = BTreeMap::new();
        if let Some(c) = &self.opts.chost {
            h.insert("CHOST".to_owned(), c.clone());
        }
        h
    }

    /// The directory packages of `cpv` go into, relative to PKGDIR.
    fn rel_dir(&self, cpv: &atom::Cpv) -> Vec<String> {
        if self.opts.multi_instance {
            vec![cpv.category().to_owned(), cpv.pn().to_owned()]
        } else {
            vec![cpv.category().to_owned()]
        }
    }

    /// Reads `PKGDIR/Packages`; a missing file is an empty index.
    pub fn read_index(&self) -> Result<PackageIndex> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(data) => index::parse_with_defaults(&data, &self.header_defaults()),
            // Portage reads a `Packages` it cannot open as a directory as an
            // empty index too (writing it will then fail).
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::EISDIR) =>
            {
                let mut i = PackageIndex::new();
                i.header = self.header_defaults();
                Ok(i)
            }
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// The build id the next multi-instance publish of `cpv` would get if
    /// nothing else is published first: one more than the largest among the
    /// files `PKGDIR/CAT/PN/PF-N.*` and the index entries of `cpv`. Nothing
    /// is reserved.
    pub fn next_build_id(&self, cpv: &atom::Cpv) -> Result<u64> {
        let dir = self.path.join(cpv.category()).join(cpv.pn());
        let max = max_build_id(&dir, cpv, &self.read_index()?)?;
        Ok(max + 1)
    }

    /// Removes temporary files left in PKGDIR by killed processes
    /// (`.*.partial` files nobody holds a lock on; see `README.md`). This
    /// also happens for the directories involved in every publish.
    pub fn remove_stale_temps(&self) -> Result<usize> {
        let mut n = 0;
        let mut dirs = vec![self.path.clone()];
        while let Some(d) = dirs.pop() {
            let handle = match Dir::open(&d) {
                Ok(h) => h,
                Err(_) if !d.exists() => continue,
                Err(e) => return Err(e),
            };
            n += fsops::remove_stale_temps(&handle)?;
            for name in handle.names()? {
                let p = d.join(&name);
                if !name.as_encoded_bytes().starts_with(b".")
                    && std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
                {
                    dirs.push(p);
                }
            }
        }
        Ok(n)
    }

    fn allow_tmpfile(&self) -> bool {
        !self.opts.force_named_temp && std::env::var_os(NO_O_TMPFILE_ENV).is_none_or(|v| v != "1")
    }

    /// Starts a package for `cpv` in `format`: creates PKGDIR and the
    /// package's directory (multi-instance `PKGDIR/CAT/PN`, else
    /// `PKGDIR/CAT`) and opens an unnamed temporary file there (mode
    /// `0666 & !umask` plus PKGDIR's group rw bits, group of PKGDIR). Where
    /// `O_TMPFILE` is unsupported, the file is `.<PF>.<random>.partial` in
    /// that directory, removed again when the [`PendingPackage`] is dropped
    /// unpublished.
    pub fn create_temp(&self, cpv: &atom::Cpv, format: Format) -> Result<PendingPackage> {
        fsops::create_pkgdir(&self.path, self.opts.umask)?;
        let perms = PkgdirPerms::of(&self.path)?;
        let rel = self.rel_dir(cpv);
        let rel_refs: Vec<&str> = rel.iter().map(String::as_str).collect();
        let dir = fsops::ensure_subdirs(&self.path, &rel_refs, self.opts.umask, perms)?;
        let mode = (0o666 & !self.opts.umask) | perms.file_bits();
        let temp = fsops::create_temp(&dir, cpv.pf(), mode, Some(perms.gid), self.allow_tmpfile())?;
        let predicted = if self.opts.multi_instance {
            // Only a hint: an unreadable index is reported by publish.
            self.read_index()
                .ok()
                .and_then(|i| max_build_id(&dir.path, cpv, &i).ok())
                .map(|m| m + 1)
        } else {
            None
        };
        Ok(PendingPackage {
            pkgdir: self.clone(),
            cpv: cpv.clone(),
            format,
            rel_dir: rel.join("/"),
            dir,
            temp,
            perms,
            predicted,
        })
    }
}

/// The largest build id of `cpv` among the files in `dir` (either format)
/// and the entries of `index` (their `BUILD_ID` and the id in their `PATH`),
/// or 0.
fn max_build_id(dir: &Path, cpv: &atom::Cpv, index: &PackageIndex) -> Result<u64> {
    let mut max = index.max_build_id(cpv.as_str()).unwrap_or(0);
    for d in index.entries_of(cpv.as_str()) {
        if let Some(p) = d.get("PATH") {
            let name = p.rsplit('/').next().unwrap_or(p);
            max = max.max(parse_build_id(name, cpv.pf()).unwrap_or(0));
        }
    }
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(|e| Error::io("list", dir, e))?;
                if let Some(name) = e.file_name().to_str() {
                    max = max.max(parse_build_id(name, cpv.pf()).unwrap_or(0));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("list", dir, e)),
    }
    Ok(max)
}

/// A package being written: an open temporary file in its final directory.
/// Dropping it unpublished leaves nothing behind.
#[derive(Debug)]
pub struct PendingPackage {
    pkgdir: PkgDir,
    cpv: atom::Cpv,
    format: Format,
    rel_dir: String,
    dir: Dir,
    temp: Temp,
    perms: PkgdirPerms,
    predicted: Option<u64>,
}

impl PendingPackage {
    /// The file to write the package into (`Write + Seek + Read`).
    pub fn file(&mut self) -> &mut File {
        &mut self.temp.file
    }

    /// The package.
    pub fn cpv(&self) -> &atom::Cpv {
        &self.cpv
    }

    /// The format it is published as (decides the file name extension).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The temporary file's path when it has one (the fallback without
    /// `O_TMPFILE`); `None` for an unnamed file.
    pub fn temp_path(&self) -> Option<PathBuf> {
        self.temp.name.as_ref().map(|n| self.dir.join(n))
    }

    /// Multi-instance: the build id this package will most likely get
    /// ([`PkgDir::next_build_id`] when it was created). A writer can store it
    /// as the package's `BUILD_ID` and pass it as
    /// [`IndexMetadata::preferred_build_id`]; it is used if still free at
    /// publish time. `None` for single-instance layouts.
    pub fn predicted_build_id(&self) -> Option<u64> {
        self.predicted
    }

    fn file_name(&self, build_id: Option<u64>) -> String {
        let ext = extension(self.format, self.pkgdir.opts.multi_instance);
        match build_id {
            Some(id) => format!("{}-{id}{ext}", self.cpv.pf()),
            None => format!("{}{ext}", self.cpv.pf()),
        }
    }

    /// Publishes the package: fsyncs it, computes its MD5, SHA-1 and size,
    /// then under `PKGDIR/.Packages.portage_lockfile` gives it its final
    /// name and adds it to `Packages` (and `Packages.gz`).
    ///
    /// Multi-instance: the build id is `meta.preferred_build_id` if given
    /// and free, else one more than the largest one of this CPV among the
    /// files and index entries, skipping names that exist (e.g. Portage's
    /// placeholder of a concurrent build). The name is created by `linkat`
    /// or `renameat2(RENAME_NOREPLACE)`, which never replaces anything; if it
    /// appeared meanwhile (`EEXIST`), the next id is taken. Single-instance:
    /// `rename` over the old package.
    ///
    /// The new `Packages` and `Packages.gz` are written completely before
    /// the package gets its name, so only renames follow it. The metadata is
    /// checked first (see [`index::metadata_entry`]); an invalid package is
    /// refused without touching PKGDIR. If `Packages` cannot be replaced, a
    /// new multi-instance file is removed again and the error returned; a
    /// single-instance package stays published ([`Error::IndexNotUpdated`]),
    /// as it does when only `Packages.gz` or a final fsync fails.
    pub fn publish(mut self, meta: &IndexMetadata) -> Result<Published> {
        if meta.cpv != self.cpv {
            return Err(Error::CpvMismatch {
                expected: self.cpv.to_string(),
                got: meta.cpv.to_string(),
            });
        }
        let entry = index::metadata_entry(&self.cpv, &meta.keys)?;
        let temp_err = |op, e| {
            let p = self.temp_path().unwrap_or_else(|| self.dir.path.clone());
            Error::io(op, p, e)
        };
        self.temp
            .file
            .sync_all()
            .map_err(|e| temp_err("fsync the new package in", e))?;
        let (md5, sha1, size) = fsops::digest(&self.temp.file)
            .map_err(|e| temp_err("read back the new package in", e))?;
        // Linking and renaming keep the mtime, so it is known now.
        let st = rustix::fs::fstat(&self.temp.file)
            .map_err(|e| temp_err("look at the new package in", e.into()))?;
        if st.st_size as u64 != size {
            return Err(temp_err(
                "publish (it changed while being published)",
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        let mtime = st.st_mtime;

        let lock = vdb::lock::lock_packages_index(&self.pkgdir.path, |_| {})?;
        let result = self.publish_locked(entry, md5, sha1, size, mtime, meta.preferred_build_id);
        // Released whatever this reports (a lock file that could not be
        // removed is harmless).
        let _ = lock.unlock();
        result
    }

    fn publish_locked(
        &mut self,
        entry: index::Entry,
        md5: String,
        sha1: String,
        size: u64,
        mtime: i64,
        preferred: Option<u64>,
    ) -> Result<Published> {
        let multi = self.pkgdir.opts.multi_instance;
        let _ = fsops::remove_stale_temps(&self.dir);
        if let Ok(root) = Dir::open(&self.pkgdir.path) {
            let _ = fsops::remove_stale_temps(&root);
        }
        let mut index = self.pkgdir.read_index()?;
        if !index.version_supported() {
            // Portage starts a new index when it cannot use the existing one
            // (no file, or a VERSION it does not know).
            index = PackageIndex::new();
            index.header = self.pkgdir.header_defaults();
        }
        self.reconcile(&mut index);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);

        let mut ids = if multi {
            Some(self.build_id_candidates(&index, preferred)?)
        } else {
            None
        };
        let mut tries = 0u64;
        let (name, build_id, rel_path, file, mut staged) = loop {
            let build_id = match ids.as_mut() {
                Some(ids) => Some(self.next_free_id(ids)?),
                None => None,
            };
            let name = OsString::from(self.file_name(build_id));
            let rel_path = format!("{}/{}", self.rel_dir, name.to_string_lossy());
            let file = FileInfo {
                path: rel_path.clone(),
                md5: md5.clone(),
                sha1: sha1.clone(),
                size,
                mtime,
            };
            let mut new_index = index.clone();
            let mut e = entry.clone();
            index::apply_file_info(&mut e, &file);
            new_index.insert(e);
            new_index.stamp(now);
            let staged = self.stage_index(&new_index, now)?;
            match self.place(&name)? {
                true => break (name, build_id, rel_path, file, staged),
                false => {
                    tries += 1;
                    if tries > MAX_BUILD_ID_TRIES {
                        return Err(Error::BuildIdsExhausted {
                            cpv: self.cpv.to_string(),
                            dir: self.dir.path.clone(),
                        });
                    }
                }
            }
        };
        let path = self.dir.join(&name);

        // The package's name first reaches the disk, then the index.
        let committed = (|| {
            if self.pkgdir.opts.sync {
                self.dir.fsync()?;
            }
            staged.packages.commit()
        })();
        if let Err(e) = committed {
            if multi {
                // Not in the index, and a new name nobody relies on: take
                // it back.
                let _ = self.dir.unlink(&name);
                let _ = self.dir.fsync();
                return Err(e);
            }
            return Err(Error::IndexNotUpdated {
                path,
                source: Box::new(e),
            });
        }
        let rest = (|| {
            let gz = self.pkgdir.path.join("Packages.gz");
            match staged.gz.as_mut() {
                Some(s) => s.commit()?,
                None => match std::fs::remove_file(&gz) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove the stale", &gz, e)),
                },
            }
            if self.pkgdir.opts.sync {
                Dir::open(&self.pkgdir.path)?.fsync()?;
            }
            Ok(())
        })();
        if let Err(e) = rest {
            return Err(Error::IndexNotUpdated {
                path,
                source: Box::new(e),
            });
        }
        Ok(Published {
            path,
            rel_path,
            build_id,
            md5: file.md5,
            sha1: file.sha1,
            size,
            mtime,
        })
    }

    /// Adds to `index` the whole packages of this directory that it does
    /// not list, and lists again those whose size or mtime is not the one
    /// it records: a publisher killed between giving a package its name
    /// (or, single-instance, replacing the package of the same name) and
    /// replacing `Packages` leaves one, and the next publish into the same
    /// directory completes its work. Files that are not whole, verified
    /// packages of a valid CPV are left alone (Portage reports them).
    fn reconcile(&self, index: &mut PackageIndex) {
        use std::os::unix::fs::MetadataExt;
        let listed: std::collections::HashMap<&str, (Option<&str>, Option<&str>)> = index
            .packages
            .iter()
            .filter_map(|e| {
                let p = e.get("PATH")?;
                Some((
                    p.as_str(),
                    (
                        e.get("SIZE").map(String::as_str),
                        e.get("_mtime_").map(String::as_str),
                    ),
                ))
            })
            .collect();
        let Ok(rd) = std::fs::read_dir(&self.dir.path) else {
            return;
        };
        let mut missing = Vec::new();
        for de in rd.flatten() {
            let name = de.file_name().to_string_lossy().into_owned();
            let is_pkg = [".gpkg.tar", ".xpak", ".tbz2"]
                .iter()
                .any(|ext| name.ends_with(ext));
            if !is_pkg || name.starts_with('.') {
                continue;
            }
            let rel = format!("{}/{name}", self.rel_dir);
            let stale = match listed.get(rel.as_str()) {
                None => true,
                Some((size, mtime)) => de.metadata().is_ok_and(|m| {
                    *size != Some(m.size().to_string().as_str())
                        || *mtime != Some(m.mtime().to_string().as_str())
                }),
            };
            if stale {
                missing.push((de.path(), rel));
            }
        }
        for (path, rel) in missing {
            let opts = binpkg::VerifyOptions {
                signature: binpkg::SignaturePolicy::Ignore,
                basename: binpkg::BasenameCheck::Any,
                skip_image_prescan: true,
                ..binpkg::VerifyOptions::default()
            };
            let Ok(pkg) = binpkg::open(&path, &opts) else {
                continue;
            };
            let Ok(cpv) = pkg.cpv() else { continue };
            let meta = IndexMetadata::from_raw(cpv.clone(), pkg.metadata());
            let Ok(mut entry) = index::metadata_entry(&cpv, &meta.keys) else {
                continue;
            };
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let (Ok((md5, sha1, size)), Ok(st)) = (fsops::digest(&file), file.metadata()) else {
                continue;
            };
            let info = FileInfo {
                path: rel,
                md5,
                sha1,
                size,
                mtime: st.mtime(),
            };
            index::apply_file_info(&mut entry, &info);
            index.insert(entry);
        }
    }

    /// Writes the new `Packages` (and `Packages.gz`) under temporary names.
    fn stage_index(&self, index: &PackageIndex, now: i64) -> Result<StagedIndex> {
        let opts = &self.pkgdir.opts;
        let spec = fsops::IndexFileSpec {
            umask: opts.umask,
            perms: self.perms,
            mtime: now,
            sync: opts.sync,
            allow_tmpfile: self.pkgdir.allow_tmpfile(),
        };
        let data = index::write(index);
        let packages = fsops::StagedFile::new(&self.pkgdir.index_path(), &data, spec)?;
        let gz = if opts.compress_index {
            let path = self.pkgdir.path.join("Packages.gz");
            Some(fsops::StagedFile::new(&path, &gzip(&data, now), spec)?)
        } else {
            None
        };
        Ok(StagedIndex { packages, gz })
    }

    /// Gives the file its final name: `Ok(false)` if that name exists
    /// (multi-instance; the caller takes the next id).
    fn place(&mut self, name: &OsStr) -> Result<bool> {
        if !self.pkgdir.opts.multi_instance {
            let base = self.cpv.pf().to_owned();
            fsops::replace_with(&self.dir, &mut self.temp, name, &base)?;
            return Ok(true);
        }
        let r = match &self.temp.name {
            None => fsops::link_tmpfile(&self.temp.file, &self.dir, name),
            Some(tmp) => fsops::rename_noreplace(&self.dir, tmp, name),
        };
        match r {
            Ok(()) => {
                self.temp.name = None;
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(Error::io("publish the package as", self.dir.join(name), e)),
        }
    }

    /// The build ids to try, in order: the preferred one if it is free,
    /// then from one more than the largest known one upwards.
    fn build_id_candidates(
        &self,
        index: &PackageIndex,
        preferred: Option<u64>,
    ) -> Result<BuildIds> {
        let cpv = &self.cpv;
        let mut first = None;
        if let Some(id) = preferred.filter(|&id| id > 0) {
            let in_index = index.entries_of(cpv.as_str()).any(|d| {
                d.get("BUILD_ID")
                    .and_then(|b| index::parse_py_int(b))
                    .is_some_and(|b| b == i128::from(id))
                    || d.get("PATH").is_some_and(|p| {
                        parse_build_id(p.rsplit('/').next().unwrap_or(p), cpv.pf()) == Some(id)
                    })
            });
            if !in_index {
                first = Some(id);
            }
        }
        let next = max_build_id(&self.dir.path, cpv, index)? + 1;
        Ok(BuildIds { first, next })
    }

    /// The next candidate whose name (in either format) does not exist.
    fn next_free_id(&self, ids: &mut BuildIds) -> Result<u64> {
        let taken = |id: u64| -> Result<bool> {
            for ext in [".gpkg.tar", ".xpak"] {
                let n = format!("{}-{id}{ext}", self.cpv.pf());
                if self.dir.exists(OsStr::new(&n))? {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        if let Some(id) = ids.first.take() {
            if !taken(id)? {
                return Ok(id);
            }
        }
        for _ in 0..MAX_BUILD_ID_TRIES {
            let id = ids.next;
            ids.next += 1;
            if !taken(id)? {
                return Ok(id);
            }
        }
        Err(Error::BuildIdsExhausted {
            cpv: self.cpv.to_string(),
            dir: self.dir.path.clone(),
        })
    }
}

/// Build ids still to try.
struct BuildIds {
    first: Option<u64>,
    next: u64,
}

/// The new index files, waiting under temporary names.
struct StagedIndex {
    packages: fsops::StagedFile,
    gz: Option<fsops::StagedFile>,
}

impl Drop for PendingPackage {
    fn drop(&mut self) {
        if let Some(name) = self.temp.name.take() {
            fsops::remove_temp_name(&self.dir, &name, &self.temp.file);
        }
    }
}

/// `Packages.gz` as Python's `GzipFile(filename="", mtime=TIMESTAMP)` writes
/// it: no name, the given mtime, level 9 (header `XFL` 2), OS 255. (The
/// deflate stream itself may differ from zlib's byte for byte.)
fn gzip(data: &[u8], mtime: i64) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .mtime(mtime as u32)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_from_names() {
        assert_eq!(parse_build_id("foo-1.0-3.gpkg.tar", "foo-1.0"), Some(3));
        assert_eq!(parse_build_id("foo-1.0-12.xpak", "foo-1.0"), Some(12));
        assert_eq!(parse_build_id("foo-1.0.gpkg.tar", "foo-1.0"), None);
        assert_eq!(parse_build_id("foo-1.0-r1-2.gpkg.tar", "foo-1.0"), None);
        assert_eq!(parse_build_id("foo-1.0-x.xpak", "foo-1.0"), None);
        assert_eq!(parse_build_id("foo-1.0-3.tbz2", "foo-1.0"), None);
        assert_eq!(parse_build_id(".foo-1.0-3.gpkg.tar", "foo-1.0"), None);
    }

    #[test]
    fn gzip_header_like_python() {
        let gz = gzip(b"abc", 0x0102_0304);
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 4, 3, 2, 1, 2, 255]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, b"abc");
    }

    #[test]
    fn extensions() {
        assert_eq!(extension(Format::Gpkg, true), ".gpkg.tar");
        assert_eq!(extension(Format::Gpkg, false), ".gpkg.tar");
        assert_eq!(extension(Format::Xpak, true), ".xpak");
        assert_eq!(extension(Format::Xpak, false), ".tbz2");
    }
}

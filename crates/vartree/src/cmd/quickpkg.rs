//! `vartree quickpkg`, and the package-writing options `merge --buildpkg`
//! shares with it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use merge::config::MergeSettings;
use merge::quickpkg::{quickpkg, QuickpkgOptions};
use serde_json::json;
use vdb::db::Reporter;

use crate::output;
use crate::{Global, EXIT_NEGATIVE};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// gpkg-1 (`.gpkg.tar`, GLEP 78).
    Gpkg,
    /// The legacy xpak (`.xpak` with multi-instance, else `.tbz2`).
    Xpak,
}

/// How packages are written (shared by `quickpkg` and `merge --buildpkg`).
#[derive(Args, Debug, Clone, Default)]
pub struct PackArgs {
    /// Package directory (default: PKGDIR from the configuration, inside ROOT).
    /// `Packages` is updated there, and `Packages.gz` unless FEATURES=-compress-index.
    #[arg(long, value_name = "DIR")]
    pub pkgdir: Option<PathBuf>,
    /// Package format (default: BINPKG_FORMAT, else gpkg).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Compression: zstd, xz, bzip2, gzip, lz4 or none (default: BINPKG_COMPRESS, else zstd).
    #[arg(long, value_name = "NAME")]
    pub compress: Option<String>,
    /// Compression level (default: the compressor's own).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub compress_level: Option<i32>,
    /// Byte-identical output for identical input: container and metadata
    /// member mtimes are SOURCE_DATE_EPOCH, else the package's BUILD_TIME.
    #[arg(long)]
    pub reproducible: bool,
    /// Sign gpkg packages with this armoured OpenPGP secret key.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// A file holding the passphrase of --sign-key.
    #[arg(long, value_name = "FILE", requires = "sign_key")]
    pub sign_passphrase_file: Option<PathBuf>,
    /// umask for package files (default: 0077 for quickpkg, as Portage's
    /// quickpkg; 0022 for package and merge --buildpkg). PKGDIR's group
    /// bits are added, as Portage does.
    #[arg(long, value_name = "OCTAL", value_parser = parse_umask)]
    pub umask: Option<u32>,
}

fn parse_umask(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal umask"))
}

/// `y`/`n` values, as Portage's quickpkg takes them; a bare flag means `y`.
fn parse_yn(s: &str) -> Result<bool, String> {
    match s {
        "y" | "yes" | "true" => Ok(true),
        "n" | "no" | "false" => Ok(false),
        _ => Err(format!("{s:?}: expected y or n")),
    }
}

#[derive(Args, Debug)]
pub struct QuickpkgArgs {
    /// Installed packages to pack (atoms, as for `list`).
    #[arg(value_name = "ATOM", required = true)]
    pub atoms: Vec<String>,
    /// Pack CONFIG_PROTECTed files as they are (default: replace them by a placeholder).
    #[arg(long, value_name = "y|n", num_args = 0..=1, default_missing_value = "y", value_parser = parse_yn)]
    pub include_config: Option<bool>,
    /// Pack CONFIG_PROTECTed files that are unchanged since they were merged.
    #[arg(long, value_name = "y|n", num_args = 0..=1, default_missing_value = "y", value_parser = parse_yn)]
    pub include_unmodified_config: Option<bool>,
    #[command(flatten)]
    pub pack: PackArgs,
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
}

/// Everything needed to write and publish packages.
pub struct Packer {
    pub pkgdir: pkgdir::PkgDir,
    pub format: binpkg::Format,
    pub write: binpkg::WriteOptions,
    reproducible: bool,
}

impl Packer {
    /// `default_umask` applies when `--umask` is not given.
    pub fn new(
        g: &Global,
        a: &PackArgs,
        settings: &MergeSettings,
        default_umask: u32,
    ) -> anyhow::Result<Packer> {
        let var = |k: &str| settings.vars.get(k).map(|v| v.trim().to_owned());
        let format = match a.format {
            Some(FormatArg::Gpkg) => binpkg::Format::Gpkg,
            Some(FormatArg::Xpak) => binpkg::Format::Xpak,
            None => match var("BINPKG_FORMAT").as_deref() {
                None | Some("") | Some("gpkg") => binpkg::Format::Gpkg,
                Some("xpak") => binpkg::Format::Xpak,
                Some(other) => anyhow::bail!(
                    "BINPKG_FORMAT={other:?} is not a binary package format (use gpkg or xpak)"
                ),
            },
        };
        let compress = a
            .compress
            .clone()
            .or_else(|| var("BINPKG_COMPRESS"))
            .unwrap_or_else(|| "zstd".into());
        let compression = if compress.is_empty() {
            binpkg::Compression::None
        } else {
            binpkg::Compression::ALL
                .into_iter()
                .find(|c| c.name() == compress)
                .with_context(|| {
                    format!(
                        "unknown compression {compress:?} (use zstd, xz, bzip2, gzip, lz4 or none)"
                    )
                })?
        };
        if !compression.is_supported() {
            anyhow::bail!(
                "{compress} compression is not supported for writing (use zstd, xz, bzip2, gzip, lz4 or none)"
            );
        }
        let signer = match &a.sign_key {
            None => None,
            Some(key) => {
                if format == binpkg::Format::Xpak {
                    anyhow::bail!("xpak packages cannot be signed; use --format gpkg");
                }
                let pass = match &a.sign_passphrase_file {
                    Some(p) => Some(
                        std::fs::read_to_string(p)
                            .with_context(|| format!("cannot read {}", p.display()))?
                            .trim_end_matches(['\n', '\r'])
                            .to_owned(),
                    ),
                    None => None,
                };
                Some(Arc::new(
                    binpkg::Signer::from_file(key, pass.as_deref())
                        .with_context(|| format!("signing key {}", key.display()))?,
                ))
            }
        };
        let dir = match &a.pkgdir {
            Some(p) => p.clone(),
            None => {
                // PKGDIR is read from ROOT's configuration, so it names a
                // directory of ROOT (make.globals' default lives under
                // EPREFIX), resolved inside ROOT like every state path: it
                // must exist there or be creatable there.
                let configured = var("PKGDIR").unwrap_or_else(|| "/var/cache/binpkgs".into());
                let state = if configured == "/var/cache/binpkgs" {
                    crate::cmd::open_vdb(g).state().clone()
                } else {
                    vdb::state::StatePaths::new(&g.root, "")
                };
                state
                    .resolve(&configured, rootfs::root::Resolve::CheckDirs)
                    .context("PKGDIR")?
                    .host_path()
                    .to_owned()
            }
        };
        let publish = pkgdir::PublishOptions {
            multi_instance: settings.features.binpkg_multi_instance(),
            compress_index: settings.features.compress_index(),
            umask: a.umask.unwrap_or(default_umask),
            ..pkgdir::PublishOptions::default()
        };
        Ok(Packer {
            pkgdir: pkgdir::PkgDir::new(dir, publish),
            format,
            write: binpkg::WriteOptions {
                compression,
                level: a.compress_level,
                signer,
                ..binpkg::WriteOptions::default()
            },
            reproducible: a.reproducible,
        })
    }

    /// The write options for one package with this BUILD_TIME.
    pub fn write_options(&self, build_time: Option<&str>) -> binpkg::WriteOptions {
        let mut w = self.write.clone();
        if self.reproducible {
            let epoch = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .or_else(|| build_time.and_then(|s| s.trim().parse().ok()))
                .unwrap_or(0);
            w.mtime = Some(epoch);
        }
        w
    }
}

pub fn run(g: &Global, a: &QuickpkgArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let settings = crate::settings::load(g, &a.settings, &[])?;
    let packer = Packer::new(g, &a.pack, &settings, 0o077)?;
    let vdb = crate::cmd::open_vdb(g);
    let entries = crate::select::select(&vdb, &a.atoms, reporter)?;
    if entries.is_empty() {
        output::note(&format!(
            "vartree quickpkg: no installed package matches {}",
            a.atoms.join(" ")
        ));
        return Ok(EXIT_NEGATIVE);
    }
    let opts = QuickpkgOptions {
        format: packer.format,
        write: packer.write.clone(),
        include_config: a.include_config.unwrap_or(false),
        include_unmodified_config: a.include_unmodified_config.unwrap_or(false),
    };
    let eroot = vdb.eroot().to_path_buf();
    let state = vdb.state().clone();
    let mut results = Vec::new();
    for entry in &entries {
        if !g.json && !g.quiet {
            output::note(&format!(">>> Building package for {}", entry.cpv));
        }
        // The VDB lock keeps the package from changing while it is read, as
        // Portage's quickpkg does.
        let lock = vdb::lock::VdbLock::acquire(&state, |p| {
            output::note(&format!("waiting for the VDB lock {}", p.display()))
        })
        .with_context(|| format!("{}: cannot lock the VDB", entry.cpv))?;
        if !entry.dir().exists() {
            drop(lock);
            output::note(&format!("{}: unmerged meanwhile, skipped", entry.cpv));
            continue;
        }
        let mut pending = packer
            .pkgdir
            .create_temp(&entry.cpv, packer.format)
            .with_context(|| format!("{}: cannot create the package file", entry.cpv))?;
        let build_time = entry.get("BUILD_TIME").ok().flatten();
        let mut o = opts.clone();
        o.write = packer.write_options(build_time.as_deref());
        let report = quickpkg(
            &g.root,
            &eroot,
            &settings,
            entry,
            &o,
            reporter,
            pending.file(),
        );
        drop(lock);
        let report = report?;
        if let Some(sig) = rootfs::signal::pending() {
            return Err(merge::MergeError::PackSignal {
                cpv: entry.cpv.to_string(),
                sig,
            }
            .into());
        }
        // As Portage's quickpkg: the package keeps the BUILD_ID it was
        // merged with, and gets that id in PKGDIR when it is free, else the
        // next free one.
        let preferred =
            binpkg::metadata::value_str(&report.metadata, "BUILD_ID").and_then(|s| s.parse().ok());
        let published = pending
            .publish(
                &pkgdir::IndexMetadata::from_raw(entry.cpv.clone(), &report.metadata)
                    .with_preferred_build_id(preferred),
            )
            .with_context(|| format!("{}: cannot publish the package", entry.cpv))?;
        if !g.json {
            for p in &report.missing {
                output::note(&format!(
                    "!!! {}: missing from the live system: {p}",
                    entry.cpv
                ));
            }
            for p in &report.skipped {
                output::note(&format!("!!! {}: special file not packed: {p}", entry.cpv));
            }
            if !report.excluded_config.is_empty() && !g.quiet {
                output::note(&format!(
                    "!!! {}: config files replaced by a placeholder (--include-config=y packs them):",
                    entry.cpv
                ));
                for p in &report.excluded_config {
                    output::note(&format!("!!!     {p}"));
                }
            }
            output::note(&format!(
                ">>> {} -> {} ({} entries, {} bytes)",
                entry.cpv,
                published.path.display(),
                report.summary.entries,
                published.size
            ));
        }
        results.push(json!({
            "cpv": entry.cpv.to_string(),
            "path": published.path.display().to_string(),
            "build_id": published.build_id,
            "format": match packer.format { binpkg::Format::Gpkg => "gpkg", binpkg::Format::Xpak => "xpak" },
            "size": published.size,
            "md5": published.md5,
            "entries": report.summary.entries,
            "files": report.summary.files,
            "excluded_config": report.excluded_config,
            "missing": report.missing,
            "skipped": report.skipped,
        }));
    }
    if g.json {
        output::json(&serde_json::Value::Array(results))?;
    }
    Ok(0)
}

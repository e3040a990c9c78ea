//! `vartree merge`

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use merge::{merge_image, MergeEvent, MergeOptions, MergeReporter, SyncMode};
use serde_json::json;
use vdb::db::{Reporter, Warning};

use crate::output::{self, lossy};
use crate::Global;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum SyncArg {
    /// syncfs before the commit renames and after publishing (Portage's merge-sync).
    Auto,
    /// fsync every file and directory as well (slow; for filesystems whose syncfs
    /// does not report write-back errors).
    Always,
    /// No syncs: for throw-away roots and tests.
    Never,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The image directory (Portage's ${D}); merging starts at IMAGE/EPREFIX.
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    /// The build-info directory (CATEGORY, PF, SLOT, … become the VDB entry).
    #[arg(long, value_name = "DIR")]
    pub build_info: PathBuf,
    /// Show what would be merged and touch nothing.
    #[arg(short, long)]
    pub pretend: bool,
    /// Refuse to overwrite any existing file (FEATURES=collision-protect).
    #[arg(long)]
    pub collision_protect: bool,
    /// Overwrite files other packages own instead of refusing (FEATURES=-protect-owned).
    #[arg(long)]
    pub no_protect_owned: bool,
    /// Replace an installed package outside the slot (a blocker handover):
    /// it stays installed while this one is merged, hands over the files
    /// both install, then is unmerged. Repeatable.
    #[arg(long, value_name = "ATOM")]
    pub replace: Vec<String>,
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
    /// Rename files out of the image when it is on ROOT's filesystem; the image is consumed.
    #[arg(long)]
    pub move_image: bool,
    /// Trust the replaced instance's CONTENTS: a live file whose mtime matches
    /// its record is compared by the recorded md5, without reading it
    /// (FEATURES=merge-use-vdb).
    #[arg(long)]
    pub trust_vdb: bool,
    /// When to flush to disk.
    #[arg(long, value_enum, default_value = "auto")]
    pub sync: SyncArg,
    /// Also make a binary package of the image (before merging it) and
    /// publish it into PKGDIR, as `emerge --buildpkg`.
    #[arg(long)]
    pub buildpkg: bool,
    #[command(flatten)]
    pub pack: crate::cmd::quickpkg::PackArgs,
}

pub struct CliReporter<'a> {
    inner: &'a dyn Reporter,
    verbose: u8,
    json: bool,
    /// A progress line is drawn (stderr is a terminal, not verbose).
    progress: bool,
}

impl<'a> CliReporter<'a> {
    pub fn new(inner: &'a dyn Reporter, g: &Global) -> Self {
        CliReporter {
            inner,
            verbose: g.verbose,
            json: g.json,
            progress: g.verbose == 0 && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    /// Clear the progress line, if one was drawn.
    pub fn clear_progress(&self) {
        if self.progress {
            output::progress("");
        }
    }
}

impl Reporter for CliReporter<'_> {
    fn warn(&self, w: Warning) {
        self.inner.warn(w);
    }
}

impl MergeReporter for CliReporter<'_> {
    fn event(&self, ev: MergeEvent) {
        match ev {
            MergeEvent::WaitingForLock(p) => {
                output::note(&format!("waiting for lock on {}", p.display()))
            }
            MergeEvent::Notice(m) => output::note(&format!("!!! {m}")),
            MergeEvent::Merged(p) if self.verbose > 0 && !self.json => {
                output::note(&format!(">>> {p}"))
            }
            MergeEvent::Identical(p) if self.verbose > 0 && !self.json => {
                output::note(&format!("=== {p}"))
            }
            MergeEvent::KeptDir(p) if self.verbose > 1 && !self.json => {
                output::note(&format!("--- {p}/"))
            }
            _ => {}
        }
    }
}

/// A copy of `dir` with the `BUILD_ID` and `BINPKGMD5` of the package built
/// from it.
fn build_info_with_binpkg(
    dir: &std::path::Path,
    p: &pkgdir::Published,
) -> anyhow::Result<tempfile::TempDir> {
    use anyhow::Context;
    let copy = tempfile::Builder::new()
        .prefix("vartree-build-info.")
        .tempdir()
        .context("cannot create a temporary directory")?;
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), copy.path().join(e.file_name()))
                .with_context(|| format!("cannot copy {}", e.path().display()))?;
        }
    }
    if let Some(id) = p.build_id {
        std::fs::write(copy.path().join("BUILD_ID"), format!("{id}\n"))?;
    }
    std::fs::write(copy.path().join("BINPKGMD5"), format!("{}\n", p.md5))?;
    Ok(copy)
}

pub fn run(g: &Global, a: &MergeArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let mut extra = Vec::new();
    if a.collision_protect {
        extra.push("collision-protect");
    }
    if a.no_protect_owned {
        extra.push("-protect-owned");
    }
    if a.trust_vdb {
        extra.push("merge-use-vdb");
    }
    let settings = crate::settings::load(g, &a.settings, &extra)?;
    // --buildpkg: the package is made from the image before it is merged
    // (a merge may move files out of the image), as Portage's package phase
    // runs before its merge.
    let built = if a.buildpkg && !a.pretend {
        let packer = crate::cmd::quickpkg::Packer::new(g, &a.pack, &settings, 0o022)?;
        let (published, _, cpv) =
            crate::cmd::package::build_and_publish(&packer, &a.image, &a.build_info)?;
        if !g.json {
            output::note(&format!(">>> {cpv} -> {}", published.path.display()));
        }
        Some(published)
    } else {
        None
    };
    // Portage records the package's BUILD_ID and BINPKGMD5 in build-info, so
    // they reach the VDB entry; the user's build-info is copied for that.
    let info_copy = match &built {
        Some(p) => Some(build_info_with_binpkg(&a.build_info, p)?),
        None => None,
    };
    let build_info = info_copy
        .as_ref()
        .map_or(a.build_info.clone(), |d| d.path().to_path_buf());
    let mut opts = MergeOptions::new(&g.root, &a.image, &build_info);
    opts.eprefix = g.eprefix.clone().unwrap_or_default();
    opts.pretend = a.pretend;
    opts.collision_protect = settings.features.collision_protect();
    opts.protect_owned = settings.features.protect_owned();
    opts.trust_vdb = settings.features.merge_use_vdb();
    opts.settings = settings;
    opts.move_image = a.move_image;
    opts.replace = a.replace.clone();
    opts.sync = match a.sync {
        SyncArg::Auto => SyncMode::Auto,
        SyncArg::Always => SyncMode::Always,
        SyncArg::Never => SyncMode::Never,
    };
    let r = CliReporter::new(reporter, g);
    let out = merge_image(&opts, &r);
    r.clear_progress();
    let out = out?;
    if g.json {
        let placements: serde_json::Map<String, serde_json::Value> = out
            .placements
            .iter()
            .map(|(p, n)| (p.as_str().to_owned(), json!(n)))
            .collect();
        output::json(&json!({
            "cpv": out.cpv,
            "pretend": out.pretend,
            "counter": if out.pretend { serde_json::Value::Null } else { json!(out.counter) },
            "entries": out.contents.len(),
            "identical": out.identical,
            "replaced": out.replaced,
            "removed": out.removed,
            "placements": placements,
            "binpkg": built.as_ref().map(|p| json!({
                "path": p.path.display().to_string(),
                "build_id": p.build_id,
                "md5": p.md5,
            })),
            "protected": out.protected.iter().map(|(path, as_)| json!({
                "path": lossy(path),
                "merged_as": lossy(as_),
            })).collect::<Vec<_>>(),
            "protected_skipped": out.protected_skipped.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
        }))?;
    } else if out.pretend {
        if !out.replaced.is_empty() {
            output::note(&format!(
                "[pretend] would replace {}",
                out.replaced.join(", ")
            ));
        }
        for e in &out.contents {
            output::note(&format!(
                "[pretend] {} {}",
                e.kind.keyword(),
                lossy(&e.path)
            ));
        }
        for (path, as_) in &out.protected {
            output::note(&format!(
                "[pretend] {} is config-protected: would be merged as {}",
                lossy(path),
                lossy(as_)
            ));
        }
        for path in &out.protected_skipped {
            output::note(&format!(
                "[pretend] {}: this update was merged before and discarded (config memory); would not be merged",
                lossy(path)
            ));
        }
        output::note(&format!(
            ">>> would merge {} ({} entries)",
            out.cpv,
            out.contents.len()
        ));
    } else {
        let how: Vec<String> = out
            .placements
            .iter()
            .map(|(p, n)| format!("{n} by {}", p.as_str()))
            .collect();
        let detail = if g.verbose > 0 && !how.is_empty() {
            format!("; files placed {}", how.join(", "))
        } else {
            String::new()
        };
        let replacing = if out.replaced.is_empty() {
            String::new()
        } else {
            format!(
                ", replacing {} ({} old paths removed)",
                out.replaced.join(", "),
                out.removed
            )
        };
        output::note(&format!(
            ">>> {} merged to {} ({} entries, {} identical{replacing}{detail})",
            out.cpv,
            g.root.display(),
            out.contents.len(),
            out.identical
        ));
    }
    Ok(0)
}

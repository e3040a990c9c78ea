//! `vartree package`: a binary package from an image directory and its
//! build-info (what Portage's package phase makes), published into PKGDIR.
//! `merge --buildpkg` does the same before merging.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::cmd::quickpkg::{PackArgs, Packer};
use crate::output;
use crate::Global;

#[derive(Args, Debug)]
pub struct PackageArgs {
    /// The image directory (Portage's ${D}), packed whole.
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    /// The build-info directory (CATEGORY, PF, SLOT, …): the package metadata.
    #[arg(long, value_name = "DIR")]
    pub build_info: PathBuf,
    #[command(flatten)]
    pub pack: PackArgs,
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
}

/// Pack `image` with `build_info` and publish it; returns the published
/// package.
pub fn build_and_publish(
    packer: &Packer,
    image: &Path,
    build_info: &Path,
) -> anyhow::Result<(pkgdir::Published, binpkg::WriteSummary, atom::Cpv)> {
    let info = merge::buildinfo::read_build_info(build_info)?;
    let cpv = info.cpv.clone();
    let mut metadata = merge::buildpkg::build_info_metadata(build_info)?;
    let mut pending = packer
        .pkgdir
        .create_temp(&cpv, packer.format)
        .with_context(|| format!("{cpv}: cannot create the package file"))?;
    // Portage's package phase records the build id it claimed; ours is
    // known for sure only when the package is published, so the predicted
    // one is written (publish takes it when it is still free).
    let predicted = pending.predicted_build_id();
    if let Some(id) = predicted {
        metadata.insert("BUILD_ID".into(), format!("{id}\n").into_bytes());
    }
    let basename = match predicted {
        Some(id) => format!("{}-{id}", cpv.pf()),
        None => cpv.pf().to_owned(),
    };
    let build_time = info.get("BUILD_TIME");
    let opts = packer.write_options(build_time.as_deref());
    let summary = merge::buildpkg::package_image(
        image,
        &metadata,
        &cpv,
        &basename,
        packer.format,
        &opts,
        pending.file(),
    )?;
    if let Some(sig) = rootfs::signal::pending() {
        return Err(merge::MergeError::PackSignal {
            cpv: cpv.to_string(),
            sig,
        }
        .into());
    }
    let published = pending
        .publish(
            &pkgdir::IndexMetadata::from_raw(cpv.clone(), &metadata)
                .with_preferred_build_id(predicted),
        )
        .with_context(|| format!("{cpv}: cannot publish the package"))?;
    Ok((published, summary, cpv))
}

pub fn run(g: &Global, a: &PackageArgs) -> anyhow::Result<u8> {
    let settings = crate::settings::load(g, &a.settings, &[])?;
    let packer = Packer::new(g, &a.pack, &settings, 0o022)?;
    let (published, summary, cpv) = build_and_publish(&packer, &a.image, &a.build_info)?;
    if g.json {
        output::json(&json!({
            "cpv": cpv.to_string(),
            "path": published.path.display().to_string(),
            "build_id": published.build_id,
            "size": published.size,
            "md5": published.md5,
            "entries": summary.entries,
            "files": summary.files,
        }))?;
    } else {
        output::note(&format!(
            ">>> {cpv} -> {} ({} entries, {} bytes)",
            published.path.display(),
            summary.entries,
            published.size
        ));
    }
    Ok(0)
}

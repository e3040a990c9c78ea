//! The build-info directory: the files that become the VDB entry.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use atom::Cpv;

use crate::error::MergeError;

/// What the merge needs from build-info, plus every file to copy.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub dir: PathBuf,
    pub cpv: Cpv,
    /// SLOT without sub-slot.
    pub slot: String,
    pub subslot: Option<String>,
    pub eapi: String,
    /// Every top-level regular file, by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl BuildInfo {
    /// A single-line key, whitespace-normalised, if present and non-empty.
    pub fn get(&self, key: &str) -> Option<String> {
        let v = self.files.get(key)?;
        let v = vdb::metadata::normalize_whitespace(&String::from_utf8_lossy(v));
        (!v.is_empty()).then_some(v)
    }

    /// EAPI ≤ 8 rewrites symlink targets that point into the image.
    pub fn rewrites_image_symlinks(&self) -> bool {
        !matches!(self.eapi.as_str(), "9" | "10")
    }
}

/// Read a build-info directory. CATEGORY and PF must name a valid package;
/// SLOT must be set (Portage: "SLOT is undefined").
pub fn read_build_info(dir: &Path) -> Result<BuildInfo, MergeError> {
    let err = |reason: String| MergeError::BuildInfo {
        path: dir.to_owned(),
        reason,
    };
    let rd = fs::read_dir(dir).map_err(|e| MergeError::Io {
        op: "read build-info directory",
        path: dir.to_owned(),
        source: e,
    })?;
    let mut files = BTreeMap::new();
    for ent in rd {
        let ent = ent.map_err(|e| MergeError::Io {
            op: "read build-info directory",
            path: dir.to_owned(),
            source: e,
        })?;
        let Ok(ft) = ent.file_type() else { continue };
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !ft.is_file() || name.starts_with('.') {
            continue;
        }
        let data = fs::read(ent.path()).map_err(|e| MergeError::Io {
            op: "read",
            path: ent.path(),
            source: e,
        })?;
        files.insert(name.to_owned(), data);
    }
    let get = |k: &str| {
        files
            .get(k)
            .map(|v| vdb::metadata::normalize_whitespace(&String::from_utf8_lossy(v)))
            .filter(|v| !v.is_empty())
    };
    let category = get("CATEGORY").ok_or_else(|| err("CATEGORY is missing or empty".into()))?;
    let pf = get("PF").ok_or_else(|| err("PF is missing or empty".into()))?;
    let cpv = Cpv::from_parts(&category, &pf).map_err(|e| {
        err(format!(
            "CATEGORY/PF {category}/{pf} is not a valid package: {e}"
        ))
    })?;
    let slot_full = get("SLOT").ok_or_else(|| err("SLOT is undefined".into()))?;
    let (slot, subslot) = match slot_full.split_once('/') {
        Some((s, sub)) => (s.to_owned(), Some(sub.to_owned())),
        None => (slot_full.clone(), None),
    };
    let eapi = get("EAPI").unwrap_or_else(|| "0".into());
    Ok(BuildInfo {
        dir: dir.to_owned(),
        cpv,
        slot,
        subslot,
        eapi,
        files,
    })
}

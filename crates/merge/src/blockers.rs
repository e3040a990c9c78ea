//! Blockers between the package being merged and installed packages, and
//! the handover of shared files (seed 003, Portage's `removeFromContents`).

use atom::{Blocker, Dep, PkgRef};
use vdb::db::{Reporter, Vdb, VdbEntry};

use crate::buildinfo::BuildInfo;
use crate::error::MergeError;

/// The blocker atoms of a dependency string (already USE-reduced, as the
/// VDB and build-info store them): every `!atom` / `!!atom` token;
/// parentheses, `||` and `flag?` conditionals are skipped. Tokens that do
/// not parse are returned as errors for the caller to report.
pub fn blocker_atoms(depstr: &str) -> (Vec<Dep>, Vec<String>) {
    let mut deps = Vec::new();
    let mut bad = Vec::new();
    for tok in depstr.split_whitespace() {
        if !tok.starts_with('!') || tok.ends_with('?') {
            continue;
        }
        match Dep::parse(tok) {
            Ok(d) if d.blocker().is_some() => deps.push(d),
            Ok(_) => {}
            Err(_) => bad.push(tok.to_owned()),
        }
    }
    (deps, bad)
}

/// The blockers a package declares: RDEPEND, and DEPEND too for EAPI 0
/// and 1 (where DEPEND blockers also block at run time, as Portage
/// applies them).
pub fn declared_blockers(keys: &dyn Fn(&str) -> Option<String>, eapi: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let mut vars = vec!["RDEPEND"];
    if matches!(eapi, "0" | "1" | "") {
        vars.push("DEPEND");
    }
    for v in vars {
        if let Some(s) = keys(v) {
            out.extend(blocker_atoms(&s).0);
        }
    }
    out
}

fn matches_installed(dep: &Dep, e: &VdbEntry, reporter: &dyn Reporter) -> bool {
    if !dep.matches_cpv(&e.cpv) {
        return false;
    }
    let slot = e.get_or_warn("SLOT", reporter).unwrap_or_default();
    let repo = e.repository(reporter);
    let mut p = PkgRef::new(&e.cpv).with_slot(&slot);
    if let Some(r) = &repo {
        p = p.with_repo(r);
    }
    dep.matches(&p)
}

/// An installed package in a blocker relation with the one being merged.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub entry: VdbEntry,
    /// The blocker atom (from either side).
    pub atom: String,
    pub strong: bool,
}

/// Every installed package (other than the instances being replaced in the
/// slot) that the new package blocks, or that blocks the new package.
pub fn find_blocked(
    vdb: &Vdb,
    info: &BuildInfo,
    replaced: &[VdbEntry],
    reporter: &dyn Reporter,
) -> Result<Vec<Blocked>, MergeError> {
    let mine = declared_blockers(&|k| info.get(k), &info.eapi);
    let installed = vdb.entries(reporter)?;
    let mut out: Vec<Blocked> = Vec::new();
    for e in installed {
        if replaced.iter().any(|r| r.cpv == e.cpv) {
            continue;
        }
        let mut hit: Option<(String, bool)> = None;
        for d in &mine {
            if matches_installed(d, &e, reporter) {
                hit = Some((d.to_string(), d.blocker() == Some(Blocker::Strong)));
                break;
            }
        }
        if hit.is_none() {
            // The installed package may block the new one.
            let eapi = e
                .get_or_warn("EAPI", reporter)
                .unwrap_or_else(|| "0".into());
            for d in declared_blockers(&|k| e.get_or_warn(k, reporter), &eapi) {
                let slot_full = match &info.subslot {
                    Some(sub) => format!("{}/{sub}", info.slot),
                    None => info.slot.clone(),
                };
                let mut p = PkgRef::new(&info.cpv).with_slot(&slot_full);
                let repo = info.get("repository");
                if let Some(r) = &repo {
                    p = p.with_repo(r);
                }
                if d.matches(&p) {
                    hit = Some((d.to_string(), d.blocker() == Some(Blocker::Strong)));
                    break;
                }
            }
        }
        if let Some((atom, strong)) = hit {
            out.push(Blocked {
                entry: e,
                atom,
                strong,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocker_tokens() {
        let (d, bad) = blocker_atoms(
            ">=dev-libs/a-1 !sys-apps/mktemp ssl? ( !!dev-libs/b ) || ( x/y !<x/z-2 ) !bad/",
        );
        let s: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["!sys-apps/mktemp", "!!dev-libs/b", "!<x/z-2"]);
        assert_eq!(bad, ["!bad/"]);
    }
}

//! `vartree unmerge`

use std::collections::HashSet;

use anyhow::Context;
use clap::Args;
use merge::unmerge::{unmerge_entry, Reason, UnmergeOptions};
use serde_json::json;
use vdb::db::Reporter;

use crate::output::{self, lossy};
use crate::{select, Global, EXIT_NEGATIVE};

#[derive(Args, Debug)]
pub struct UnmergeArgs {
    /// Show what would be removed and what kept, and why; touch nothing.
    #[arg(short, long)]
    pub pretend: bool,
    /// Remove only files whose mtime and md5 still match CONTENTS, as with
    /// FEATURES=-unmerge-orphans (by default, unprotected files go regardless).
    #[arg(long)]
    pub no_unmerge_orphans: bool,
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
    /// The packages to remove (every installed package matching each atom).
    #[arg(value_name = "ATOM", required = true)]
    pub atoms: Vec<String>,
}

pub fn run(g: &Global, a: &UnmergeArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let vdb = super::open_vdb(g);
    let root = rootfs::root::Root::open(&g.root)
        .with_context(|| format!("cannot open ROOT {}", g.root.display()))?;
    let _lock = if a.pretend {
        None
    } else {
        // Nothing is touched in a ROOT whose state cannot be used inside it.
        vdb.state().check_all()?;
        Some(vdb::lock::VdbLock::acquire(vdb.state(), |p| {
            output::note(&format!("waiting for lock on {}", p.display()))
        })?)
    };
    let extra: &[&str] = if a.no_unmerge_orphans {
        &["-unmerge-orphans"]
    } else {
        &[]
    };
    let settings = crate::settings::load(g, &a.settings, extra)?;
    let opts = UnmergeOptions {
        pretend: a.pretend,
        ..UnmergeOptions::from_settings(&settings)
    };
    if !a.pretend {
        for r in merge::txn::recover(&root, &vdb, &opts, false, reporter)? {
            output::note(&format!(
                "!!! recovered an interrupted {}: {}",
                r.subject(),
                r.outcome()
            ));
        }
    }
    let entries = select::select(&vdb, &a.atoms, reporter)?;
    if entries.is_empty() {
        output::note(&format!(
            "vartree: no installed package matches {}",
            a.atoms.join(" ")
        ));
        return Ok(EXIT_NEGATIVE);
    }
    let mut list = Vec::new();
    for e in &entries {
        // Journaled: once started, an unmerge is completed (by `recover`
        // after a crash).
        let journal = if a.pretend {
            None
        } else {
            let mut j = merge::journal::Journal::begin(vdb.state(), "unmerge", e.cpv.as_str())?;
            j.record(&merge::journal::Record::Unmerge {
                cpv: e.cpv.to_string(),
            })?;
            j.commit()?;
            Some(j)
        };
        let out = unmerge_entry(&vdb, &root, e, &opts, &[], &HashSet::new(), reporter)?;
        if let Some(j) = journal {
            j.finish()?;
        }
        let removed = out
            .plan
            .items
            .iter()
            .filter(|i| i.reason == Reason::Removed)
            .count();
        if g.json {
            let items: Vec<_> = out
                .plan
                .items
                .iter()
                .map(
                    |i| json!({"path": lossy(&i.path), "type": i.kind, "action": i.reason.label()}),
                )
                .collect();
            list.push(json!({
                "cpv": out.cpv,
                "pretend": a.pretend,
                "items": items,
                "dirs_kept": out.result.kept_dirs.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
                "failed": out.result.failed.iter().map(|(p, e)| json!({"path": lossy(p), "error": e})).collect::<Vec<_>>(),
            }));
            continue;
        }
        let verbose = g.verbose > 0 || a.pretend;
        for i in &out.plan.items {
            let show = match i.reason {
                Reason::Removed => verbose,
                Reason::DirIfEmpty => a.pretend,
                Reason::Replaced | Reason::NotFound | Reason::NotInPrefix => g.verbose > 1,
                _ => true,
            };
            if show {
                let label = if a.pretend && i.reason == Reason::Removed {
                    "would remove"
                } else {
                    i.reason.label()
                };
                output::note(&format!("{label} {} {}", i.kind, lossy(&i.path)));
            }
        }
        for (p, err) in &out.result.failed {
            output::note(&format!("!!! cannot remove {}: {err}", lossy(p)));
        }
        if g.verbose > 0 {
            for d in &out.result.kept_dirs {
                output::note(&format!("--- !empty dir {}", lossy(d)));
            }
        }
        let kept = out
            .plan
            .items
            .iter()
            .filter(|i| !matches!(i.reason, Reason::Removed | Reason::DirIfEmpty))
            .count();
        if a.pretend {
            output::note(&format!(
                ">>> would unmerge {} ({removed} paths removed, {kept} kept)",
                out.cpv
            ));
        } else {
            output::note(&format!(
                ">>> unmerged {} ({removed} paths removed, {kept} kept)",
                out.cpv
            ));
        }
    }
    if g.json {
        output::json(&serde_json::Value::Array(list))?;
    }
    Ok(0)
}

//! `vartree recover`

use anyhow::Context;
use clap::Args;
use merge::unmerge::UnmergeOptions;
use serde_json::json;
use vdb::db::Reporter;

use crate::output;
use crate::Global;

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Show what would be completed or undone; touch nothing.
    #[arg(short, long)]
    pub pretend: bool,
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
}

pub fn run(g: &Global, a: &RecoverArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let vdb = super::open_vdb(g);
    let root = rootfs::root::Root::open(&g.root)
        .with_context(|| format!("cannot open ROOT {}", g.root.display()))?;
    let settings = crate::settings::load(g, &a.settings, &[])?;
    // Nothing is touched in a ROOT whose state cannot be used inside it.
    vdb.state().check_all()?;
    let _lock = vdb::lock::VdbLock::acquire(vdb.state(), |p| {
        output::note(&format!("waiting for lock on {}", p.display()))
    })?;
    let done = merge::txn::recover(
        &root,
        &vdb,
        &UnmergeOptions::from_settings(&settings),
        a.pretend,
        reporter,
    )?;
    // Then what interrupted Portage merges left, where it is provably theirs.
    let portage = merge::leftovers::clean_portage_leftovers(&root, &vdb, a.pretend, reporter)?;
    if g.json {
        let mut list: Vec<_> = done
            .iter()
            .map(|r| {
                json!({"journal": r.journal.display().to_string(), "operation": r.kind,
                       "package": r.cpv, "action": if r.forward { "completed" } else { "undone" },
                       "notes": r.notes})
            })
            .collect();
        list.extend(portage.iter().map(|p| {
            let action = match (p.proven, a.pretend) {
                (false, _) => "left",
                (true, true) => "would remove",
                (true, false) => "removed",
            };
            let mut removed: Vec<String> = p.files.iter().map(|f| output::lossy(f)).collect();
            if p.proven {
                removed.push(p.merging_dir.display().to_string());
            }
            json!({"journal": null, "operation": "portage merge", "package": p.cpv,
                   "action": action, "removed": removed,
                   "kept": p.kept.iter().map(|(path, why)| json!({"path": path, "reason": why})).collect::<Vec<_>>(),
                   "notes": p.notes})
        }));
        output::json(&serde_json::Value::Array(list))?;
    } else if done.is_empty() && portage.is_empty() {
        output::note("vartree: nothing to recover");
    } else {
        for r in &done {
            let what = match (a.pretend, r.forward) {
                (true, true) => "would complete",
                (true, false) => "would undo",
                (false, true) => "completed",
                (false, false) => "undone",
            };
            output::note(&format!(">>> {}: {what}", r.subject()));
            if g.verbose > 0 {
                for n in &r.notes {
                    output::note(&format!("    {n}"));
                }
            }
        }
        for p in &portage {
            let verb = if a.pretend { "would remove" } else { "removed" };
            output::note(&format!(
                ">>> interrupted Portage merge of {}: {}",
                p.cpv,
                if p.proven {
                    "leftovers are Portage's"
                } else {
                    "left alone"
                }
            ));
            for f in &p.files {
                output::note(&format!("    {verb} {}", output::lossy(f)));
            }
            if p.proven {
                output::note(&format!("    {verb} {}", p.merging_dir.display()));
            }
            for (path, why) in &p.kept {
                output::note(&format!("    left {path}: {why}"));
            }
            for n in &p.notes {
                output::note(&format!("    {n}"));
            }
        }
    }
    Ok(0)
}

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
    let _lock = vdb::lock::VdbLock::acquire(vdb.eroot(), |p| {
        output::note(&format!("waiting for lock on {}", p.display()))
    })?;
    let done = merge::txn::recover(
        &root,
        &vdb,
        &UnmergeOptions::from_settings(&settings),
        a.pretend,
        reporter,
    )?;
    if g.json {
        let list: Vec<_> = done
            .iter()
            .map(|r| {
                json!({"journal": r.journal.display().to_string(), "operation": r.kind,
                       "package": r.cpv, "action": if r.forward { "completed" } else { "undone" },
                       "notes": r.notes})
            })
            .collect();
        output::json(&serde_json::Value::Array(list))?;
    } else if done.is_empty() {
        output::note("vartree: nothing to recover");
    } else {
        for r in &done {
            let what = match (a.pretend, r.forward) {
                (true, true) => "would complete",
                (true, false) => "would undo",
                (false, true) => "completed",
                (false, false) => "undone",
            };
            output::note(&format!(">>> {} of {}: {what}", r.kind, r.cpv));
            if g.verbose > 0 {
                for n in &r.notes {
                    output::note(&format!("    {n}"));
                }
            }
        }
    }
    Ok(0)
}

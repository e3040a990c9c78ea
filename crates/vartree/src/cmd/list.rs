//! `vartree list`

use clap::Args;
use serde_json::json;
use vdb::db::Reporter;

use crate::output::{self, Out};
use crate::{select, Global, EXIT_NEGATIVE};

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Show the slot (`:SLOT[/SUBSLOT]`).
    #[arg(short = 'S', long)]
    pub slot: bool,
    /// Show the repository (`::repo`).
    #[arg(short = 'R', long)]
    pub repo: bool,
    /// Only packages matching these atoms (`cat/pkg`, `pkg`, `=cat/pkg-1.0`, `>=cat/pkg-2:0`, …).
    #[arg(value_name = "ATOM")]
    pub atoms: Vec<String>,
}

pub fn run(g: &Global, a: &ListArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let vdb = super::open_vdb(g);
    let entries = select::select(&vdb, &a.atoms, reporter)?;
    if g.json {
        // Each entry's keys are read on every core.
        let list: Vec<_> = vdb::par::par_map(&entries, reporter, |e| {
            let (slot, subslot) = e.slot(reporter);
            Ok(json!({
                "cpv": e.cpv.to_string(),
                "category": e.cpv.category(),
                "pf": e.cpv.pf(),
                "pn": e.cpv.pn(),
                "pvr": e.cpv.pvr(),
                "slot": slot,
                "subslot": subslot,
                "repository": e.repository(reporter),
                "counter": e.counter(reporter),
            }))
        })
        .into_iter()
        .flatten()
        .collect();
        output::json(&serde_json::Value::Array(list))?;
    } else {
        let mut out = Out::new();
        for e in &entries {
            let mut line = e.cpv.to_string();
            if a.slot {
                let (slot, subslot) = e.slot(reporter);
                line.push(':');
                line.push_str(&slot);
                if let Some(s) = subslot {
                    line.push('/');
                    line.push_str(&s);
                }
            }
            if a.repo {
                if let Some(r) = e.repository(reporter) {
                    line.push_str("::");
                    line.push_str(&r);
                }
            }
            out.line(&[line.as_bytes()])?;
        }
        out.finish()?;
    }
    Ok(if entries.is_empty() && !a.atoms.is_empty() {
        EXIT_NEGATIVE
    } else {
        0
    })
}

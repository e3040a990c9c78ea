//! `vartree size`

use anyhow::Context;
use clap::Args;
use serde_json::json;
use vdb::check::size_entry;
use vdb::db::Reporter;
use vdb::par::par_map;

use crate::output::{self, Out};
use crate::{select, Global, EXIT_NEGATIVE};

#[derive(Args, Debug)]
pub struct SizeArgs {
    /// Print exact byte counts instead of human units.
    #[arg(short, long)]
    pub bytes: bool,
    /// The packages (all when none is given).
    #[arg(value_name = "ATOM")]
    pub atoms: Vec<String>,
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run(g: &Global, a: &SizeArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let vdb = super::open_vdb(g);
    let entries = select::select(&vdb, &a.atoms, reporter)?;
    if entries.is_empty() && !a.atoms.is_empty() {
        output::note(&format!(
            "vartree: no installed package matches {}",
            a.atoms.join(" ")
        ));
        return Ok(EXIT_NEGATIVE);
    }
    let root = rootfs::root::Root::open(&g.root)
        .with_context(|| format!("cannot open ROOT {}", g.root.display()))?;
    let sizes = par_map(&entries, reporter, |e| size_entry(&root, e, reporter));
    if g.json {
        let list: Vec<_> = entries
            .iter()
            .zip(&sizes)
            .filter_map(|(e, s)| {
                s.map(|s| {
                    json!({"cpv": e.cpv.to_string(), "files": s.files, "dirs": s.dirs,
                           "others": s.others, "bytes": s.bytes, "missing": s.missing})
                })
            })
            .collect();
        output::json(&serde_json::Value::Array(list))?;
    } else {
        let mut out = Out::new();
        for (e, s) in entries.iter().zip(&sizes) {
            let Some(s) = s else { continue };
            let bytes = if a.bytes {
                format!("{} bytes", s.bytes)
            } else {
                human(s.bytes)
            };
            let mut line = format!(
                "{}: {} files, {} non-files, {}",
                e.cpv,
                s.files,
                s.dirs + s.others,
                bytes
            );
            if s.missing > 0 {
                line.push_str(&format!(" ({} missing)", s.missing));
            }
            out.line(&[line.as_bytes()])?;
        }
        out.finish()?;
    }
    Ok(0)
}

//! `vartree contents`

use std::collections::BTreeSet;

use anyhow::bail;
use clap::Args;
use serde_json::json;
use vdb::contents::{EntryKind, EntryType};
use vdb::db::Reporter;

use crate::output::{self, lossy, Out};
use crate::{select, Global, EXIT_NEGATIVE};

#[derive(Args, Debug)]
pub struct ContentsArgs {
    /// Only these entry types (comma-separated: obj, dir, sym, fif, dev).
    #[arg(short = 't', long = "type", value_delimiter = ',', value_name = "TYPE")]
    pub types: Vec<String>,
    /// Print whole CONTENTS lines (type, path, md5/target, mtime) instead of paths.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// The packages (`cat/pkg`, `pkg`, `=cat/pkg-1.0`, any atom).
    #[arg(value_name = "ATOM", required = true)]
    pub atoms: Vec<String>,
}

pub fn run(g: &Global, a: &ContentsArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let mut types = BTreeSet::new();
    for t in &a.types {
        match EntryType::from_keyword(t) {
            Some(t) => {
                types.insert(t);
            }
            None => bail!("unknown entry type {t:?}: use obj, dir, sym, fif or dev"),
        }
    }
    let vdb = super::open_vdb(g);
    let entries = select::select(&vdb, &a.atoms, reporter)?;
    if entries.is_empty() {
        output::note(&format!(
            "vartree: no installed package matches {}",
            a.atoms.join(" ")
        ));
        return Ok(EXIT_NEGATIVE);
    }
    let wanted = |t: EntryType| types.is_empty() || types.contains(&t);
    if g.json {
        let mut list = Vec::new();
        for e in &entries {
            let c = e.contents(reporter)?;
            let items: Vec<_> = c
                .entries
                .iter()
                .filter(|x| wanted(x.entry_type()))
                .map(|x| {
                    let path = lossy(&x.path);
                    match &x.kind {
                        EntryKind::Obj { md5, mtime } => {
                            json!({"type": "obj", "path": path, "md5": lossy(md5), "mtime": mtime})
                        }
                        EntryKind::Sym { target, mtime } => {
                            json!({"type": "sym", "path": path, "target": lossy(target), "mtime": mtime})
                        }
                        k => json!({"type": k.keyword(), "path": path}),
                    }
                })
                .collect();
            list.push(json!({"cpv": e.cpv.to_string(), "entries": items}));
        }
        output::json(&serde_json::Value::Array(list))?;
    } else {
        let mut out = Out::new();
        for e in &entries {
            let c = e.contents(reporter)?;
            for x in c.entries.iter().filter(|x| wanted(x.entry_type())) {
                if a.long {
                    let line = vdb::contents::to_bytes([x]);
                    out.line(&[line.strip_suffix(b"\n").unwrap_or(&line)])?;
                } else {
                    out.line(&[&x.path])?;
                }
            }
        }
        out.finish()?;
    }
    Ok(0)
}

//! `vartree owners`

use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use vdb::db::Reporter;
use vdb::owners::{absolutize, find_owners, OwnerQuery};

use crate::output::{self, lossy, Out};
use crate::{Global, EXIT_NEGATIVE};

#[derive(Args, Debug)]
pub struct OwnersArgs {
    /// Paths inside ROOT (as CONTENTS records them, including EPREFIX), or bare
    /// file names. `-` reads paths from stdin, one per line.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<std::ffi::OsString>,
}

pub fn run(g: &Global, a: &OwnersArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut given: Vec<Vec<u8>> = Vec::new();
    for p in &a.paths {
        if p == "-" {
            for line in std::io::stdin().lock().split(b'\n') {
                let line = line.context("reading paths from stdin")?;
                if !line.is_empty() {
                    given.push(line);
                }
            }
        } else {
            given.push(p.as_bytes().to_vec());
        }
    }
    let mut queries = Vec::with_capacity(given.len());
    for p in &given {
        let abs = absolutize(&g.root, p, &cwd).with_context(|| {
            format!(
                "{} is outside ROOT {}; give a path inside ROOT",
                lossy(p),
                g.root.display()
            )
        })?;
        queries.push(OwnerQuery::new(&abs));
    }
    let vdb = super::open_vdb(g);
    let owners = find_owners(&vdb, &queries, reporter)?;
    let mut owned = vec![false; queries.len()];
    for o in &owners {
        owned[o.query] = true;
    }
    if g.json {
        let list: Vec<_> = given
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let os: Vec<_> = owners
                    .iter()
                    .filter(|o| o.query == i)
                    .map(|o| json!({"cpv": o.entry.cpv.to_string(), "entry": lossy(&o.path)}))
                    .collect();
                json!({"path": lossy(p), "owners": os})
            })
            .collect();
        output::json(&serde_json::Value::Array(list))?;
    } else {
        let mut out = Out::new();
        for o in &owners {
            let cpv = o.entry.cpv.to_string();
            let q = &given[o.query];
            let shown: &[u8] = match &queries[o.query] {
                OwnerQuery::Path(p) => p,
                OwnerQuery::Basename(_) => &o.path,
            };
            if shown == o.path.as_slice() {
                out.line(&[cpv.as_bytes(), b": ", shown])?;
            } else {
                out.line(&[cpv.as_bytes(), b": ", q, b" (as ", &o.path, b")"])?;
            }
        }
        out.finish()?;
        for (i, p) in given.iter().enumerate() {
            if !owned[i] && !g.quiet {
                output::note(&format!("vartree: no owner: {}", lossy(p)));
            }
        }
    }
    Ok(if owned.iter().all(|&x| x) {
        0
    } else {
        EXIT_NEGATIVE
    })
}

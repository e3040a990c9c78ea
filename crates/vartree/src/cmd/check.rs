//! `vartree check`

use anyhow::Context;
use clap::Args;
use serde_json::json;
use vdb::check::{check_entry, CheckOptions, Problem};
use vdb::db::Reporter;
use vdb::par::par_map;

use crate::output::{self, lossy, Out};
use crate::{select, Global, EXIT_NEGATIVE};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Do not compute md5 digests (only existence, type, mtime, symlink targets).
    #[arg(long)]
    pub no_md5: bool,
    /// Do not compare mtimes.
    #[arg(long)]
    pub no_mtime: bool,
    /// The packages to check (all when none is given).
    #[arg(value_name = "ATOM")]
    pub atoms: Vec<String>,
}

pub fn run(g: &Global, a: &CheckArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
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
    let opts = CheckOptions {
        md5: !a.no_md5,
        mtime: !a.no_mtime,
    };
    let reports = par_map(&entries, reporter, |e| {
        check_entry(&root, e, opts, reporter)
    });
    let mut bad_pkgs = 0;
    let (mut total, mut good) = (0, 0);
    for r in reports.iter().flatten() {
        total += r.checked;
        good += r.good;
        if !r.is_clean() {
            bad_pkgs += 1;
        }
    }
    let unreadable = reports.iter().filter(|r| r.is_none()).count();
    if g.json {
        let list: Vec<_> = entries
            .iter()
            .zip(&reports)
            .map(|(e, r)| match r {
                None => json!({"cpv": e.cpv.to_string(), "error": "CONTENTS unreadable"}),
                Some(r) => {
                    let pick = |p: Problem| -> Vec<String> {
                        r.problems
                            .iter()
                            .filter(|(q, _)| *q == p)
                            .map(|(_, path)| lossy(path))
                            .collect()
                    };
                    json!({
                        "cpv": e.cpv.to_string(),
                        "checked": r.checked,
                        "good": r.good,
                        "missing": pick(Problem::Missing),
                        "md5": pick(Problem::Md5),
                        "mtime": pick(Problem::Mtime),
                        "symlink": pick(Problem::SymlinkTarget),
                        "type": pick(Problem::WrongType),
                        "unreadable": pick(Problem::Unreadable),
                        "bad_lines": r.bad_lines,
                    })
                }
            })
            .collect();
        output::json(&json!({
            "packages": list,
            "totals": {"packages": entries.len(), "packages_with_problems": bad_pkgs + unreadable,
                       "checked": total, "good": good},
        }))?;
    } else {
        let mut out = Out::new();
        for (e, r) in entries.iter().zip(&reports) {
            let Some(r) = r else { continue };
            if r.is_clean() && g.verbose == 0 {
                continue;
            }
            out.line(&[format!("Checking {} ...", e.cpv).as_bytes()])?;
            for (p, path) in &r.problems {
                out.line(&[format!("  {}: ", p.label()).as_bytes(), path])?;
            }
            if r.bad_lines > 0 {
                out.line(&[format!("  {} unparseable CONTENTS lines", r.bad_lines).as_bytes()])?;
            }
            out.line(&[format!("  * {} out of {} files are good", r.good, r.checked).as_bytes()])?;
        }
        out.line(&[format!(
            "{} packages checked, {} with problems; {} out of {} files are good",
            entries.len(),
            bad_pkgs + unreadable,
            good,
            total
        )
        .as_bytes()])?;
        out.finish()?;
    }
    Ok(if bad_pkgs + unreadable == 0 {
        0
    } else {
        EXIT_NEGATIVE
    })
}

//! `vartree install`

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use merge::install::{install_package, peek, InstallOptions};
use merge::{MergeOptions, SyncMode};
use serde_json::json;
use vdb::db::Reporter;

use crate::cmd::merge::{CliReporter, SyncArg};
use crate::output;
use crate::Global;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum SignatureArg {
    /// Every package must be signed by a key of the keyring (binpkg-request-signature).
    Required,
    /// Verify signatures when a package has them (Portage's default).
    IfPresent,
    /// Do not check signatures (binpkg-ignore-signature); Manifest hashes are still checked.
    Ignore,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Binary packages (.gpkg.tar, .tbz2, .xpak), installed in dependency order.
    #[arg(value_name = "PKG", required = true)]
    pub packages: Vec<PathBuf>,
    /// Verify and show what would be merged; touch nothing.
    #[arg(short, long)]
    pub pretend: bool,
    /// Accept character and block device nodes in packages.
    #[arg(long)]
    pub allow_devices: bool,
    /// Armoured OpenPGP public keys trusted for package signatures (repeatable).
    #[arg(long, value_name = "FILE")]
    pub keyring: Vec<PathBuf>,
    /// Signature policy.
    #[arg(long, value_enum, default_value = "if-present")]
    pub signature: SignatureArg,
    /// Refuse to overwrite any existing file (FEATURES=collision-protect).
    #[arg(long)]
    pub collision_protect: bool,
    /// Overwrite files other packages own instead of refusing (FEATURES=-protect-owned).
    #[arg(long)]
    pub no_protect_owned: bool,
    /// Trust the replaced instances' CONTENTS (FEATURES=merge-use-vdb).
    #[arg(long)]
    pub trust_vdb: bool,
    /// Replace an installed package outside the slot (a blocker handover). Repeatable.
    #[arg(long, value_name = "ATOM")]
    pub replace: Vec<String>,
    /// When to flush to disk.
    #[arg(long, value_enum, default_value = "auto")]
    pub sync: SyncArg,
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
}

/// Dependency atoms of a metadata value (USE-reduced already): every token
/// that parses as an atom; blockers, `||`, parentheses and `flag?` skipped.
fn dep_atoms(value: &str) -> Vec<atom::Dep> {
    value
        .split_whitespace()
        .filter(|t| {
            !t.starts_with('!') && !t.ends_with('?') && *t != "||" && *t != "(" && *t != ")"
        })
        .filter_map(|t| atom::Dep::parse(t).ok())
        .collect()
}

/// Order packages so that each comes after the others it depends on
/// (RDEPEND, DEPEND, BDEPEND, IDEPEND: hard edges) and before those that
/// list it in PDEPEND (a soft edge, dropped to break a cycle). A cycle of
/// hard edges keeps the command-line order for its members.
pub fn order(pkgs: &[(atom::Cpv, binpkg::Metadata)]) -> Vec<usize> {
    let n = pkgs.len();
    let text = |i: usize, k: &str| -> String {
        binpkg::metadata::value_str(&pkgs[i].1, k)
            .unwrap_or_default()
            .to_owned()
    };
    // before[a] contains b: a must come before b.
    let mut hard = vec![vec![false; n]; n];
    let mut soft = vec![vec![false; n]; n];
    for i in 0..n {
        for key in ["RDEPEND", "DEPEND", "BDEPEND", "IDEPEND"] {
            for d in dep_atoms(&text(i, key)) {
                for (j, (cpv, _)) in pkgs.iter().enumerate() {
                    if i != j && d.matches_cpv(cpv) {
                        hard[j][i] = true;
                    }
                }
            }
        }
        for d in dep_atoms(&text(i, "PDEPEND")) {
            for (j, (cpv, _)) in pkgs.iter().enumerate() {
                if i != j && d.matches_cpv(cpv) {
                    soft[i][j] = true;
                }
            }
        }
    }
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ready = |use_soft: bool| {
            (0..n).find(|&i| {
                !done[i]
                    && (0..n)
                        .all(|j| done[j] || j == i || (!hard[j][i] && (!use_soft || !soft[j][i])))
            })
        };
        let next = ready(true)
            .or_else(|| ready(false))
            .or_else(|| (0..n).find(|&i| !done[i]))
            .unwrap_or(0);
        done[next] = true;
        out.push(next);
    }
    out
}

pub fn run(g: &Global, a: &InstallArgs, reporter: &dyn Reporter) -> anyhow::Result<u8> {
    let mut extra = Vec::new();
    if a.collision_protect {
        extra.push("collision-protect");
    }
    if a.no_protect_owned {
        extra.push("-protect-owned");
    }
    if a.trust_vdb {
        extra.push("merge-use-vdb");
    }
    let settings = crate::settings::load(g, &a.settings, &extra)?;
    let mut keyring = binpkg::Keyring::new();
    for k in &a.keyring {
        let data =
            std::fs::read(k).with_context(|| format!("cannot read keyring {}", k.display()))?;
        keyring
            .add_armored(&data)
            .with_context(|| format!("keyring {}", k.display()))?;
    }
    let verify = binpkg::VerifyOptions {
        signature: match a.signature {
            SignatureArg::Required => binpkg::SignaturePolicy::Required,
            SignatureArg::IfPresent => binpkg::SignaturePolicy::IfPresent,
            SignatureArg::Ignore => binpkg::SignaturePolicy::Ignore,
        },
        keyring: (!keyring.is_empty()).then(|| std::sync::Arc::new(keyring)),
        allow_devices: a.allow_devices,
        ..binpkg::VerifyOptions::default()
    };
    let mut merge = MergeOptions::new(&g.root, PathBuf::new(), PathBuf::new());
    merge.eprefix = g.eprefix.clone().unwrap_or_default();
    merge.pretend = a.pretend;
    merge.collision_protect = settings.features.collision_protect();
    merge.protect_owned = settings.features.protect_owned();
    merge.trust_vdb = settings.features.merge_use_vdb();
    merge.replace = a.replace.clone();
    merge.sync = match a.sync {
        SyncArg::Auto => SyncMode::Auto,
        SyncArg::Always => SyncMode::Always,
        SyncArg::Never => SyncMode::Never,
    };
    merge.settings = settings;
    let opts = InstallOptions { merge, verify };

    // Read every package's metadata first, to order them. With several
    // packages, each is verified completely here, so that a bad one is
    // refused before any is merged (one package is verified by its install,
    // before anything is touched).
    let mut pkgs = Vec::new();
    for p in &a.packages {
        pkgs.push(peek(p, &opts.verify, a.packages.len() > 1)?);
    }
    let order = order(&pkgs);
    let r = CliReporter::new(reporter, g);
    let mut results = Vec::new();
    for i in order {
        let path = &a.packages[i];
        let out = install_package(path, &opts, &r);
        r.clear_progress();
        let out = match out {
            // A package error names the file already.
            Err(e @ merge::MergeError::BinPkg { .. }) => return Err(e.into()),
            out => out.with_context(|| format!("installing {}", path.display()))?,
        };
        if !g.json {
            let replacing = if out.replaced.is_empty() {
                String::new()
            } else {
                format!(", replacing {}", out.replaced.join(", "))
            };
            let verb = if out.pretend {
                "would install"
            } else {
                "installed"
            };
            output::note(&format!(
                ">>> {verb} {} from {} ({} entries{replacing})",
                out.cpv,
                path.display(),
                out.contents.len()
            ));
        }
        results.push(json!({
            "package": path.display().to_string(),
            "cpv": out.cpv,
            "pretend": out.pretend,
            "counter": if out.pretend { serde_json::Value::Null } else { json!(out.counter) },
            "entries": out.contents.len(),
            "replaced": out.replaced,
        }));
    }
    if g.json {
        output::json(&serde_json::Value::Array(results))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cpv: &str, deps: &[(&str, &str)]) -> (atom::Cpv, binpkg::Metadata) {
        let mut m = binpkg::Metadata::new();
        for (k, v) in deps {
            m.insert((*k).to_owned(), v.as_bytes().to_vec());
        }
        (atom::Cpv::parse(cpv).unwrap(), m)
    }

    #[test]
    fn orders_by_dependencies() {
        let pkgs = vec![
            p("app/top-1", &[("RDEPEND", ">=lib/mid-1 ssl? ( lib/ssl )")]),
            p(
                "lib/mid-1",
                &[("DEPEND", "lib/base"), ("PDEPEND", "app/top")],
            ),
            p("lib/base-1", &[("RDEPEND", "!lib/old")]),
        ];
        assert_eq!(order(&pkgs), vec![2, 1, 0]);
        // A hard cycle keeps the given order.
        let cyc = vec![
            p("a/x-1", &[("RDEPEND", "a/y")]),
            p("a/y-1", &[("RDEPEND", "a/x")]),
        ];
        assert_eq!(order(&cyc), vec![0, 1]);
    }
}

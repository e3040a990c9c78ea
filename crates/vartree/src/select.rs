//! Turning ATOM arguments into installed entries.

use anyhow::Context;
use atom::{parse_query, PkgRef, Query};
use vdb::db::{Reporter, Vdb, VdbEntry};

/// Parse command-line package queries (`pkg`, `cat/pkg`, `cat/pkg-1.0`, any atom).
pub fn parse_queries(atoms: &[String]) -> anyhow::Result<Vec<Query>> {
    atoms
        .iter()
        .map(|a| {
            parse_query(a).with_context(|| {
                format!("invalid package atom {a:?} (examples: foo, app-misc/foo, =app-misc/foo-1.0, >=app-misc/foo-2:0)")
            })
        })
        .collect()
}

/// Does an installed entry match a query? Only the keys the query needs
/// (SLOT, repository, USE) are read.
pub fn matches(q: &Query, e: &VdbEntry, reporter: &dyn Reporter) -> bool {
    if !q.matches_cpv(&e.cpv) {
        return false;
    }
    let needs_slot = q.slot().is_some() || q.subslot().is_some();
    let needs_repo = q.repo().is_some();
    let needs_use = !q.use_deps().is_empty();
    if !(needs_slot || needs_repo || needs_use) {
        return true;
    }
    let slot = needs_slot.then(|| e.get_or_warn("SLOT", reporter).unwrap_or_default());
    let repo = needs_repo.then(|| e.repository(reporter)).flatten();
    if needs_repo && repo.is_none() {
        // Portage: an installed package without a `repository` file matches
        // no `::repo` atom.
        return false;
    }
    let use_flags = needs_use.then(|| e.get_or_warn("USE", reporter).unwrap_or_default());
    let iuse = needs_use.then(|| {
        e.get_or_warn("IUSE_EFFECTIVE", reporter)
            .or_else(|| e.get_or_warn("IUSE", reporter))
            .unwrap_or_default()
    });
    let mut pkg = PkgRef::new(&e.cpv);
    if let Some(s) = &slot {
        pkg = pkg.with_slot(s);
    }
    if let Some(r) = &repo {
        pkg = pkg.with_repo(r);
    }
    if let (Some(u), Some(i)) = (&use_flags, &iuse) {
        pkg = pkg.with_use(u.as_str().into()).with_iuse(i.as_str().into());
    }
    q.matches(&pkg)
}

/// All entries, or those matching any of `atoms`, sorted.
pub fn select(
    vdb: &Vdb,
    atoms: &[String],
    reporter: &dyn Reporter,
) -> anyhow::Result<Vec<VdbEntry>> {
    let queries = parse_queries(atoms)?;
    // When every query names a category, only those categories are read.
    let categories: Option<Vec<&str>> = queries.iter().map(Query::category).collect();
    let entries = match categories {
        Some(mut cats) if !cats.is_empty() => {
            cats.sort_unstable();
            cats.dedup();
            let mut all = Vec::new();
            for c in cats {
                all.extend(vdb.entries_in(c, reporter)?);
            }
            all
        }
        _ => vdb.entries(reporter)?,
    };
    if queries.is_empty() {
        return Ok(entries);
    }
    Ok(entries
        .into_iter()
        .filter(|e| queries.iter().any(|q| matches(q, e, reporter)))
        .collect())
}

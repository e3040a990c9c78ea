//! Running per-package work on every core.

use crate::db::{error_detail, Reporter, VdbEntry, VdbError, Warning};

/// Run `f` over `entries` on every core, keeping the order of results.
pub fn par_map<T: Send>(
    entries: &[VdbEntry],
    reporter: &dyn Reporter,
    f: impl Fn(&VdbEntry) -> Result<T, VdbError> + Sync,
) -> Vec<Option<T>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(entries.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Option<T>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(e) = entries.get(i) else { break };
                        match f(e) {
                            Ok(v) => out.push((i, Some(v))),
                            Err(err) => {
                                reporter.warn(Warning::Unreadable {
                                    path: err.path().unwrap_or(e.dir()).to_owned(),
                                    error: error_detail(&err),
                                });
                                out.push((i, None));
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, v)| v).collect()
}

//! Crash points for testing crash safety.
//!
//! Built with the `crashpoints` feature, every mutating filesystem
//! operation vartree performs calls [`point`] first. When the environment
//! variable `VARTREE_CRASH_AT=N` is set, the N-th call aborts the process
//! (`abort(2)`: no destructors, no flushing, like `kill -9`), so a test can
//! stop a transaction at every step and check what `recover` makes of it.
//! `VARTREE_SIGNAL_AT=N:SIG` sends signal SIG to the process at the N-th
//! point instead. `VARTREE_CRASH_COUNT=FILE` makes the process write the number of points
//! it passed to FILE when it exits normally (to learn how many steps a
//! transaction has). Without the feature, [`point`] compiles to nothing.

#[cfg(feature = "crashpoints")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static COUNT: AtomicU64 = AtomicU64::new(0);
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static SIGNAL_AT: OnceLock<Option<(u64, i32)>> = OnceLock::new();

    pub fn point(_what: &str) {
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        let at = *AT.get_or_init(|| {
            std::env::var("VARTREE_CRASH_AT")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if at == Some(n) {
            std::process::abort();
        }
        // VARTREE_SIGNAL_AT=N:SIG sends SIG to the process at the N-th point.
        let sig_at = *SIGNAL_AT.get_or_init(|| {
            let v = std::env::var("VARTREE_SIGNAL_AT").ok()?;
            let (n, s) = v.split_once(':')?;
            Some((n.parse().ok()?, s.parse().ok()?))
        });
        if let Some((k, sig)) = sig_at {
            if k == n {
                crate::signal::raise(sig);
            }
        }
    }

    pub fn count() -> u64 {
        COUNT.load(Ordering::SeqCst)
    }
}

/// A mutating operation is about to happen.
#[inline]
pub fn point(what: &str) {
    #[cfg(feature = "crashpoints")]
    imp::point(what);
    #[cfg(not(feature = "crashpoints"))]
    let _ = what;
}

/// How many crash points were passed (0 without the feature).
pub fn count() -> u64 {
    #[cfg(feature = "crashpoints")]
    return imp::count();
    #[cfg(not(feature = "crashpoints"))]
    0
}

/// Whether this build has crash points.
pub const ENABLED: bool = cfg!(feature = "crashpoints");

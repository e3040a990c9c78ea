//! `rootfs`: the only vartree crate that touches a root filesystem.
//!
//! For now it provides atomic file replacement ([`atomic`]) and
//! Portage-compatible POSIX/OFD record locks ([`lock`]). Root-confined path
//! resolution and the placement strategies of the merge engine will live here
//! too.

pub mod atomic;
pub mod copy;
pub mod crash;
pub mod dir;
pub mod lock;
pub mod root;
pub mod signal;

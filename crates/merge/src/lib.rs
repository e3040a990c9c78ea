//! `merge`: vartree's merge engine.
//!
//! The pipeline (see DESIGN.md §2): observe the root, build a pure plan
//! ([`engine::plan_merge`]), stage new content under temp names, commit by
//! renames, publish the VDB entry, clean up.

pub mod blockers;
pub mod buildinfo;
pub mod buildpkg;
pub mod cfgprotect;
pub mod config;
pub mod engine;
pub mod error;
pub mod image;
pub mod install;
pub mod journal;
pub mod leftovers;
pub mod mask;
pub mod protect;
pub mod quickpkg;
pub mod txn;
pub mod unmerge;

pub use engine::{merge_image, MergeEvent, MergeOptions, MergeOutcome, MergeReporter, SyncMode};
pub use error::MergeError;

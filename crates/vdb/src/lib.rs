//! `vdb`: Portage's installed-package database (`/var/db/pkg`).

pub mod check;
pub mod contents;
pub mod counter;
pub mod db;
pub mod digest;
pub mod lock;
pub mod metadata;
pub mod needed;
pub mod owners;
pub mod par;
pub mod state;
pub mod writer;

//! One module per subcommand.

pub mod check;
pub mod contents;
pub mod debug;
pub mod install;
pub mod list;
pub mod merge;
pub mod owners;
pub mod package;
pub mod quickpkg;
pub mod recover;
pub mod size;
pub mod unmerge;

use vdb::db::Vdb;

use crate::Global;

/// The database the global options name.
pub fn open_vdb(g: &Global) -> Vdb {
    Vdb::new(&g.root, g.eprefix.clone().unwrap_or_default())
}

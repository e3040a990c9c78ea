//! Gentoo package versions, CPVs and dependency atoms with Portage-identical semantics.
//!
//! Pure string processing, no I/O. The rules follow PMS and, where they differ or PMS is
//! silent, Portage 3.0.83 (`portage.versions`, `portage.dep`); deliberate differences are
//! listed on each item.
//!
//! * [`Version`] — PMS §3.2 versions; `Ord` identical to Portage's `vercmp`.
//! * [`Cpv`], [`pkgsplit`], [`catpkgsplit`] — `category/PN-PV[-rN]` splitting exactly as
//!   Portage's `catpkgsplit`.
//! * [`Dep`] — dependency atoms with blockers, operators, slots, sub-slots, slot operators,
//!   `::repo` and USE dependencies.
//! * [`PkgRef`] + [`Dep::matches`] — Portage's `match_from_list` rules against what an
//!   installed package knows (CPV, SLOT, repository, USE, IUSE).
//! * [`parse_query`] / [`Query`] — the looser forms a command line accepts (`foo`,
//!   `cat/foo-1.0`).
//!
//! All parsers return [`ParseError`] (with the byte offset and the reason) and never panic.
//!
//! ```
//! use atom::{Cpv, Dep, PkgRef};
//! let cpv = Cpv::parse("dev-lang/python-3.12.4_p1-r2").unwrap();
//! assert_eq!((cpv.pn(), cpv.pv(), cpv.pr()), ("python", "3.12.4_p1", "r2"));
//! let dep = Dep::parse(">=dev-lang/python-3.12:3.12").unwrap();
//! assert!(dep.matches(&PkgRef::new(&cpv).with_slot("3.12")));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cpv;
mod dep;
mod error;
mod matching;
mod query;
mod version;

pub use cpv::{catpkgsplit, is_valid_category, is_valid_package_name, pkgsplit, Cpv};
pub use dep::{Blocker, Dep, Operator, SlotOperator, UseDefault, UseDep, UseDepKind};
pub use error::{ErrorKind, ParseError, Subject};
pub use matching::{FlagSet, Flags, PkgRef, UNKNOWN_REPO};
pub use query::{parse_query, Query};
pub use version::Version;

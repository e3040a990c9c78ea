//! `vartree`: a Portage-compatible installed-package database and merge
//! engine. This is the command-line edge: arguments, output, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod cmd;
mod output;
mod select;
mod settings;

/// Exit status when the answer is "no" (an unowned path, a failed check, no
/// matching package).
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit status for errors: bad arguments, unreadable database.
pub const EXIT_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "vartree",
    version,
    about = "Portage-compatible installed-package database (/var/db/pkg) and merge engine",
    long_about = "vartree reads and writes Portage's installed-package database (ROOT/EPREFIX/var/db/pkg) \
exactly as Portage does. A system it touches stays usable by emerge, qlist and etc-update.\n\n\
Exit status: 0 success; 1 a negative answer (unowned path, failed check, no matching package); \
2 an error (bad arguments, unreadable database).",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The root filesystem to operate on (Portage's ROOT).
    #[arg(
        long,
        global = true,
        env = "ROOT",
        default_value = "/",
        value_name = "DIR"
    )]
    pub root: PathBuf,
    /// The offset prefix inside ROOT (Portage's EPREFIX); the database is
    /// ROOT/EPREFIX/var/db/pkg.
    #[arg(long, global = true, env = "EPREFIX", value_name = "DIR")]
    pub eprefix: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print no warnings about the database.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List installed packages (all, or those matching ATOMs).
    List(cmd::list::ListArgs),
    /// List the files of installed packages.
    Contents(cmd::contents::ContentsArgs),
    /// Find the packages owning paths.
    Owners(cmd::owners::OwnersArgs),
    /// Verify installed files against CONTENTS (missing, md5, mtime, symlink target).
    Check(cmd::check::CheckArgs),
    /// Count the files and bytes of installed packages.
    Size(cmd::size::SizeArgs),
    /// Install binary packages (gpkg, xpak): verify, then merge as `merge` does.
    Install(cmd::install::InstallArgs),
    /// Merge an image directory (${D} + build-info) into ROOT and record it in the VDB.
    Merge(cmd::merge::MergeArgs),
    /// Remove installed packages: their files (as Portage decides), then their VDB entries.
    Unmerge(cmd::unmerge::UnmergeArgs),
    /// Make binary packages (gpkg, xpak) of installed packages from their live files.
    Quickpkg(cmd::quickpkg::QuickpkgArgs),
    /// Make a binary package from an image directory and build-info (as `ebuild … package`).
    Package(cmd::package::PackageArgs),
    /// Complete or undo transactions interrupted by a crash, kill or power cut.
    Recover(cmd::recover::RecoverArgs),
    /// Developer tools.
    #[command(hide = true, subcommand)]
    Debug(cmd::debug::DebugCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let reporter = output::StderrReporter::new(cli.global.quiet);
    // Mutating commands treat SIGINT/SIGTERM as a request: before a
    // transaction's commit point it is undone, after it it is finished.
    if matches!(
        cli.command,
        Command::Merge(_)
            | Command::Install(_)
            | Command::Unmerge(_)
            | Command::Recover(_)
            | Command::Quickpkg(_)
            | Command::Package(_)
    ) {
        rootfs::signal::install();
    }
    let result = match &cli.command {
        Command::List(a) => cmd::list::run(&cli.global, a, &reporter),
        Command::Contents(a) => cmd::contents::run(&cli.global, a, &reporter),
        Command::Owners(a) => cmd::owners::run(&cli.global, a, &reporter),
        Command::Check(a) => cmd::check::run(&cli.global, a, &reporter),
        Command::Size(a) => cmd::size::run(&cli.global, a, &reporter),
        Command::Merge(a) => cmd::merge::run(&cli.global, a, &reporter),
        Command::Install(a) => cmd::install::run(&cli.global, a, &reporter),
        Command::Unmerge(a) => cmd::unmerge::run(&cli.global, a, &reporter),
        Command::Recover(a) => cmd::recover::run(&cli.global, a, &reporter),
        Command::Quickpkg(a) => cmd::quickpkg::run(&cli.global, a, &reporter),
        Command::Package(a) => cmd::package::run(&cli.global, a),
        Command::Debug(a) => cmd::debug::run(&cli.global, a, &reporter),
    };
    if rootfs::crash::ENABLED {
        if let Some(path) = std::env::var_os("VARTREE_CRASH_COUNT") {
            let _ = std::fs::write(path, rootfs::crash::count().to_string());
        }
    }
    match result {
        Ok(code) => match rootfs::signal::pending() {
            Some(sig) => {
                output::note(&format!(
                    "vartree: {} received; the transaction was completed first",
                    rootfs::signal::name(sig)
                ));
                ExitCode::from(128 + sig as u8)
            }
            None => ExitCode::from(code),
        },
        Err(e) => {
            output::error(&e);
            match e.downcast_ref::<merge::MergeError>() {
                Some(
                    merge::MergeError::Signal { sig, .. }
                    | merge::MergeError::PackSignal { sig, .. },
                ) => ExitCode::from(128 + *sig as u8),
                _ => ExitCode::from(EXIT_ERROR),
            }
        }
    }
}

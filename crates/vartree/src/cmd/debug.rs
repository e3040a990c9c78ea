//! Hidden developer commands.

use std::path::PathBuf;

use clap::Subcommand;
use vdb::db::Reporter;

use crate::output;
use crate::{Global, EXIT_NEGATIVE};

#[derive(Subcommand, Debug)]
pub enum DebugCmd {
    /// Parse and re-write CONTENTS files; fail if any differs from its original bytes.
    ContentsRoundtrip {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(_g: &Global, c: &DebugCmd, _reporter: &dyn Reporter) -> anyhow::Result<u8> {
    match c {
        DebugCmd::ContentsRoundtrip { files } => {
            let mut bad = 0;
            for f in files {
                let data = std::fs::read(f)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
                let parsed = vdb::contents::parse_contents(&data);
                let again = vdb::contents::to_bytes(&parsed.entries);
                if again != data || !parsed.errors.is_empty() {
                    bad += 1;
                    output::note(&format!(
                        "{}: round trip differs ({} entries, {} bad lines)",
                        f.display(),
                        parsed.entries.len(),
                        parsed.errors.len()
                    ));
                }
            }
            output::note(&format!(
                "{} CONTENTS files, {} round-tripped byte-identically",
                files.len(),
                files.len() - bad
            ));
            Ok(if bad == 0 { 0 } else { EXIT_NEGATIVE })
        }
    }
}

//! Loading the merge settings for a command: flags, then the environment,
//! then ROOT/etc/portage/make.conf and ROOT/etc/env.d, then make.globals.

use clap::Args;
use merge::config::{Location, MergeSettings, Overrides};

use crate::{output, Global};

/// Flags that override configuration variables.
#[derive(Args, Debug, Clone, Default)]
pub struct SettingsArgs {
    /// CONFIG_PROTECT (the complete value; default from make.conf, env.d, then /etc).
    #[arg(long, value_name = "PATHS")]
    pub config_protect: Option<String>,
    /// CONFIG_PROTECT_MASK (the complete value).
    #[arg(long, value_name = "PATHS")]
    pub config_protect_mask: Option<String>,
    /// FEATURES to add or (with a leading '-') remove, e.g. "collision-protect -protect-owned".
    #[arg(long, value_name = "FEATURES", allow_hyphen_values = true)]
    pub features: Option<String>,
    /// Ignore the config memory (Portage's --noconfmem).
    #[arg(long)]
    pub noconfmem: bool,
}

/// Load the settings, printing configuration warnings.
pub fn load(
    g: &Global,
    a: &SettingsArgs,
    extra_features: &[&str],
) -> anyhow::Result<MergeSettings> {
    let mut features: Vec<String> = a.features.iter().cloned().collect();
    features.extend(extra_features.iter().map(|s| s.to_string()));
    let overrides = Overrides {
        config_protect: a.config_protect.clone(),
        config_protect_mask: a.config_protect_mask.clone(),
        features: (!features.is_empty()).then(|| features.join(" ")),
        noconfmem: a.noconfmem,
        ..Overrides::default()
    };
    let loc = Location {
        root: g.root.clone(),
        eprefix: g
            .eprefix
            .as_ref()
            .map(|p| p.to_string_lossy().trim_end_matches('/').to_owned())
            .unwrap_or_default(),
    };
    let loaded = MergeSettings::load(&loc, &overrides, |k| std::env::var(k).ok())?;
    if !g.quiet {
        for w in &loaded.warnings {
            output::note(&format!("!!! {w}"));
        }
    }
    Ok(loaded.settings)
}

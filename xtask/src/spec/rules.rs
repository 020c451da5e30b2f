//! `layer/rules.toml` and the spec's `[[prune.rule]]`: the pruning rules as data.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::core::Layout;

/// How sure we are that what a rule removes is never needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Safe,
    Check,
    Risky,
}

/// The folder a rule's `paths` are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Root {
    #[default]
    SitePackages,
    /// `python/lib/python3.X`.
    Stdlib,
    /// `python/`.
    Python,
}

/// One rule as written in `rules.toml` or the spec's `[[prune.rule]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleDef {
    pub name: String,
    pub level: Level,
    pub reason: String,
    #[serde(default)]
    pub root: Root,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub distributions: Vec<String>,
    #[serde(default)]
    pub stdlib: Vec<String>,
    #[serde(default)]
    pub except: Vec<String>,
    #[serde(default)]
    pub allow_native: bool,
    /// Relative to `python/`: matched files are appended to this file before deletion.
    #[serde(default)]
    pub gather: Option<Utf8PathBuf>,
}

/// `layer/rules.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RulesFile {
    pub protect: ProtectSection,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleDef>,
    #[serde(default)]
    pub sources: SourcesSection,
    #[serde(default)]
    pub site_zip: SiteZipSection,
    #[serde(default)]
    pub stdlib_zip: StdlibZipSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProtectSection {
    /// Globs relative to `python/`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Standard-library modules; `name.*` is a whole package.
    #[serde(default)]
    pub startup_modules: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourcesSection {
    /// Globs relative to site-packages whose `.py` a sourceless profile keeps.
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteZipSection {
    #[serde(default)]
    pub keep_out: Vec<KeepOut>,
    /// Move the plain modules of distributions that stay unpacked into the zip too
    /// (`build/slim/sitezip/split.rs`).
    #[serde(default)]
    pub split_modules: bool,
    /// A module whose bytecode holds one of these names may locate files by path: it stays
    /// unpacked.
    #[serde(default)]
    pub split_unless_names: Vec<String>,
}

/// `[stdlib-zip]`: top-level standard-library modules that stay in the folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StdlibZipSection {
    #[serde(default)]
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeepOut {
    pub distribution: String,
    pub reason: String,
    /// Whether its plain modules may still go into the zip (`split-modules`).
    #[serde(default = "yes")]
    pub split: bool,
}

fn yes() -> bool {
    true
}

impl RulesFile {
    pub fn load(path: &Utf8Path) -> Result<RulesFile> {
        let text = fs_err::read_to_string(path).context("reading the pruning rules")?;
        let rules: RulesFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{path}: {}", crate::spec::format_toml_error(&text, &e))
        })?;
        check_names(&rules.rules).with_context(|| format!("{path}"))?;
        Ok(rules)
    }
}

/// Rule names are how reports and `disable` refer to rules: they must be unique.
pub fn check_names(rules: &[RuleDef]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for r in rules {
        if r.name.is_empty() {
            bail!("a rule has an empty name");
        }
        if !seen.insert(r.name.as_str()) {
            bail!("rule `{}` is defined twice", r.name);
        }
        if r.paths.is_empty() && r.distributions.is_empty() && r.stdlib.is_empty() {
            bail!(
                "rule `{}` matches by nothing: give paths, distributions or stdlib",
                r.name
            );
        }
        if r.reason.trim().is_empty() {
            bail!("rule `{}` needs a reason", r.name);
        }
    }
    Ok(())
}

/// The folder of the layer a rule's `paths` are relative to.
pub fn root_dir(layout: &Layout, root: Root) -> Utf8PathBuf {
    match root {
        Root::SitePackages => layout.site_packages(),
        Root::Stdlib => layout.stdlib(),
        Root::Python => layout.python(),
    }
}

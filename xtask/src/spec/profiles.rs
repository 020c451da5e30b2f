//! `layer/profiles.toml`: named sets of pruning levels, bytecode, stripping and packaging.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use crate::spec::rules::Level;

/// The profile used when neither `--profile` nor the spec names one.
pub const DEFAULT_PROFILE: &str = "slim";

/// Where bytecode goes and whether sources stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sources plus `__pycache__/<name>.cpython-3X.pyc`.
    Both,
    /// `<name>.pyc` where `<name>.py` was; the source is deleted.
    Sourceless,
    /// No bytecode at all.
    None,
}

/// One profile of `layer/profiles.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    pub description: String,
    pub levels: Vec<Level>,
    pub bytecode: Mode,
    #[serde(default)]
    pub optimize: u8,
    /// Column positions in the bytecode's location tables (CPython 3.11+: the `^^^` markers of
    /// tracebacks). `false` compiles with `-X no_debug_ranges`: about a tenth smaller `.pyc`
    /// files, the same code; tracebacks name lines but not columns.
    #[serde(default = "yes")]
    pub debug_ranges: bool,
    #[serde(default)]
    pub strip: bool,
    #[serde(default)]
    pub site_packages_zip: bool,
    /// The standard library's bytecode in `python/lib/python3X.zip` (`sitezip/stdlib.rs`).
    #[serde(default)]
    pub stdlib_zip: bool,
    /// Trace a workload and keep only what it touched (`minimize.rs`).
    #[serde(default)]
    pub minimize: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesFile {
    pub profile: BTreeMap<String, Profile>,
}

impl ProfilesFile {
    pub fn load(path: &Utf8Path) -> Result<ProfilesFile> {
        let text = fs_err::read_to_string(path).context("reading the profiles")?;
        let file: ProfilesFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{path}: {}", crate::spec::format_toml_error(&text, &e))
        })?;
        for (name, p) in &file.profile {
            if p.optimize > 2 {
                bail!("{path}: profile `{name}`: optimize must be 0, 1 or 2");
            }
            // __pycache__/*.opt-N.pyc is only read by `python -O`: a layer run without it would
            // compile every module in memory again.
            if p.optimize > 0 && p.bytecode != Mode::Sourceless {
                bail!("{path}: profile `{name}`: optimize > 0 needs bytecode = \"sourceless\"");
            }
            // The trace records paths on disk; what sits inside a zip is one file to it.
            if p.minimize && p.stdlib_zip {
                bail!("{path}: profile `{name}`: minimize cannot be combined with stdlib-zip");
            }
            if p.minimize && p.site_packages_zip {
                bail!(
                    "{path}: profile `{name}`: minimize cannot be combined with site-packages-zip"
                );
            }
            if p.site_packages_zip && p.bytecode == Mode::None {
                bail!("{path}: profile `{name}`: site-packages-zip needs bytecode (zipimport never caches compiled code)");
            }
        }
        Ok(file)
    }

    pub fn get(&self, name: &str, path: &Utf8Path) -> Result<&Profile> {
        self.profile.get(name).with_context(|| {
            format!(
                "no profile `{name}` in {path} (it has: {})",
                self.profile.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

//! `layer/advisories.toml`: known-compromised releases (refused by `lock` and `layer`) and the
//! `.pth` files known to be benign (allowed by `verify`).

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use serde::Deserialize;

use crate::spec::Spec;

/// The repository's list, built in: a spec kept outside the repository (with no
/// `advisories.toml` beside it) is still guarded against the releases it names.
const BUILT_IN: &str = include_str!("../../../layer/advisories.toml");

/// `advisories.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdvisoriesFile {
    #[serde(default, rename = "advisory")]
    pub advisories: Vec<Advisory>,
    #[serde(default)]
    pub benign_pth: Vec<BenignPth>,
}

/// Releases of one package that must never be installed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Advisory {
    pub package: String,
    pub versions: Vec<String>,
    pub summary: String,
    pub sources: Vec<String>,
}

/// A `.pth` file that executes code and is known to be benign.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BenignPth {
    /// The file name (`distutils-precedence.pth`).
    pub file: String,
    #[serde(default)]
    pub distribution: Option<String>,
    pub reason: String,
    /// When given, only a file with exactly this content is benign.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `Foo_Bar.baz` -> `foo-bar-baz` (PEP 503), as installers compare names.
fn normalize(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_', '.']).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&part.to_ascii_lowercase());
    }
    out
}

/// `1.82.7.0` and `1.82.7` are the same release (PEP 440 pads with zeros).
fn same_version(a: &str, b: &str) -> bool {
    fn trim(v: &str) -> &str {
        let mut v = v.trim();
        while let Some(shorter) = v.strip_suffix(".0") {
            v = shorter;
        }
        v
    }
    trim(a) == trim(b)
}

impl AdvisoriesFile {
    pub fn parse(text: &str, path: &Utf8Path) -> Result<AdvisoriesFile> {
        toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{path}: {}", super::format_toml_error(text, &e)))
    }

    /// The repository's list, as built into the tool.
    pub fn built_in() -> Result<AdvisoriesFile> {
        AdvisoriesFile::parse(BUILT_IN, Utf8Path::new("layer/advisories.toml"))
    }

    /// The built-in list plus the spec's file (`[requirements] advisories`, beside the spec),
    /// when it exists.
    pub fn for_spec(spec: &Spec) -> Result<AdvisoriesFile> {
        let mut out = AdvisoriesFile::built_in()?;
        let path = spec.data_path(&spec.requirements.advisories);
        if path.exists() {
            let text = fs_err::read_to_string(&path).context("reading the advisories")?;
            let file = AdvisoriesFile::parse(&text, &path)?;
            out.advisories.extend(file.advisories);
            out.benign_pth.extend(file.benign_pth);
        }
        Ok(out)
    }

    /// The advisory that names `package` at `version`.
    pub fn find(&self, package: &str, version: &str) -> Option<&Advisory> {
        let name = normalize(package);
        self.advisories.iter().find(|a| {
            normalize(&a.package) == name && a.versions.iter().any(|v| same_version(v, version))
        })
    }

    /// Refuses requirements that pin an advised release (`pkg==1.0`, `pkg[extra]==1.0 ; marker`):
    /// checked before resolving, since an index may no longer serve the files at all.
    pub fn check_requirements(&self, requirements: &[String], what: &str) -> Result<()> {
        for req in requirements {
            let req_only = req.split(';').next().unwrap_or_default();
            let Some((name, version)) = req_only.split_once("==") else {
                continue;
            };
            let name = name.split('[').next().unwrap_or_default().trim();
            let version = version
                .trim_start_matches('=')
                .split(',')
                .next()
                .unwrap_or_default();
            if let Some(a) = self.find(name, version.trim()) {
                bail!("{what} `{req}`: {}", a.describe(name, version.trim()));
            }
        }
        Ok(())
    }

    /// Refuses packages (name, version) of a lock that hold an advised release.
    pub fn check_locked<'a>(
        &self,
        packages: impl IntoIterator<Item = (&'a str, &'a str)>,
        lock: &Utf8Path,
    ) -> Result<()> {
        for (name, version) in packages {
            if let Some(a) = self.find(name, version) {
                bail!("{lock} locks {}", a.describe(name, version));
            }
        }
        Ok(())
    }
}

impl Advisory {
    /// `litellm 1.82.7 is a known-compromised release: <summary> (sources: ...)`.
    pub fn describe(&self, name: &str, version: &str) -> String {
        format!(
            "{name} {version} is a known-compromised release (advisories.toml): {}; sources: {}",
            self.summary,
            self.sources.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_list_names_the_compromised_litellm_releases() {
        let file = AdvisoriesFile::parse(BUILT_IN, Utf8Path::new("a.toml")).unwrap();
        assert!(file.find("LiteLLM", "1.82.7").is_some());
        assert!(file.find("litellm", "1.82.8.0").is_some());
        assert!(file.find("litellm", "1.82.6").is_none());
        assert!(file.find("litellm", "1.82.70").is_none());
        let err = file
            .check_requirements(
                &["litellm[proxy]==1.82.7 ; python_version >= '3.9'".into()],
                "[requirements] packages",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("credential stealer") && err.contains("issues/24512"),
            "{err}"
        );
        assert!(file
            .check_requirements(&["litellm==1.82.6".into(), "openai<3".into()], "x")
            .is_ok());
        let err = file
            .check_locked([("litellm", "1.82.8")], Utf8Path::new("pylock.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pylock.toml locks litellm 1.82.8"), "{err}");
        assert!(file
            .benign_pth
            .iter()
            .any(|p| p.file == "distutils-precedence.pth"));
        // The arm64 fixture runtime's own `.pth`, pinned to what fixture-runtime writes.
        let fixture = "import os, site, sys; site.addsitedir(os.path.join(sys.prefix, 'lib', 'python%d.%d' % sys.version_info[:2], 'site-packages'))\n";
        let pinned = file
            .benign_pth
            .iter()
            .find(|p| p.file == "zz-site-packages.pth")
            .and_then(|p| p.sha256.clone());
        assert_eq!(pinned, Some(crate::util::sha256_hex(fixture.as_bytes())));
    }
}

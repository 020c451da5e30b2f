//! The lock file: PEP 751 `pylock.toml`, every package at one version with the sha256 of
//! each wheel. `cargo xtask lock` writes it with uv; `cargo xtask layer` only reads it.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use serde::Deserialize;

use crate::python::marker;
use crate::spec::{Sha256Hex, Spec};

/// A parsed `pylock.toml` (the fields this tool uses; others are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PyLock {
    pub lock_version: String,
    #[serde(default)]
    pub packages: Vec<LockedPackage>,
    #[serde(default)]
    pub tool: Option<ToolTable>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolTable {
    #[serde(rename = "lambda-layer", default)]
    pub lambda_layer: Option<LockProvenance>,
}

/// What the lock was made from, so that a build can tell a stale lock.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockProvenance {
    pub requirements: Vec<String>,
    pub python: String,
    pub glibc: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedPackage {
    pub name: String,
    pub version: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub wheels: Vec<LockedWheel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LockedWheel {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub hashes: BTreeMap<String, String>,
}

impl LockedWheel {
    /// The wheel's file name: `name`, else the last segment of its URL.
    pub fn file_name(&self) -> Option<String> {
        if let Some(name) = &self.name {
            return Some(name.clone());
        }
        let url = self.url.as_deref()?;
        let last = url.split(['?', '#']).next()?.rsplit('/').next()?;
        Some(last.replace("%2B", "+").replace("%2b", "+"))
    }

    pub fn sha256(&self) -> Option<Sha256Hex> {
        self.hashes.get("sha256")?.parse().ok()
    }
}

impl PyLock {
    /// Reads and checks a lock file; errors name the file, the line and what is wrong.
    pub fn load(path: &Utf8Path) -> Result<PyLock> {
        let text = fs_err::read_to_string(path)
            .with_context(|| "reading the lock file (run `cargo xtask lock` to create it)")?;
        PyLock::parse(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))
    }

    pub fn parse(text: &str) -> Result<PyLock, String> {
        let lock: PyLock =
            toml::from_str(text).map_err(|e| crate::spec::format_toml_error(text, &e))?;
        if lock.lock_version.split('.').next() != Some("1") {
            return Err(format!(
                "lock-version `{}` is not supported (expected 1.x)",
                lock.lock_version
            ));
        }
        for (i, pkg) in lock.packages.iter().enumerate() {
            let at = || {
                let line = line_of_package(text, i)
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                format!("{line}package `{}`", pkg.name)
            };
            if pkg.version.is_none() {
                return Err(format!(
                    "{} has no version: every package must be locked to one",
                    at()
                ));
            }
            if pkg.wheels.is_empty() {
                return Err(format!(
                    "{} has no wheels: this tool never builds from source",
                    at()
                ));
            }
            for wheel in &pkg.wheels {
                let name = wheel
                    .file_name()
                    .ok_or_else(|| format!("{} has a wheel with no name or url", at()))?;
                if wheel.sha256().is_none() {
                    return Err(format!(
                        "{}: wheel {name} has no valid sha256 in `hashes`",
                        at()
                    ));
                }
            }
            if let Some(marker) = &pkg.marker {
                crate::python::marker::parse(marker)
                    .map_err(|e| format!("{}: marker `{marker}`: {e}", at()))?;
            }
        }
        Ok(lock)
    }

    /// Refuses a lock made from other requirements than the spec's.
    pub fn check_fresh(&self, spec: &Spec, path: &Utf8Path) -> Result<()> {
        let Some(prov) = self.tool.as_ref().and_then(|t| t.lambda_layer.as_ref()) else {
            return Ok(());
        };
        let mut want = spec.requirements.packages.clone();
        want.sort();
        let mut have = prov.requirements.clone();
        have.sort();
        if want != have || prov.python != spec.python_xy() || prov.glibc != spec.glibc().to_string()
        {
            bail!(
                "{path} is stale: it was locked for {have:?} on Python {} and glibc {}, the spec asks for {want:?} \
                 on Python {} and glibc {}; run `cargo xtask lock`",
                prov.python,
                prov.glibc,
                spec.python_xy(),
                spec.glibc()
            );
        }
        Ok(())
    }

    /// The packages that apply to `arch`, after evaluating their markers.
    pub fn packages_for(&self, env: &marker::Env) -> Result<Vec<&LockedPackage>> {
        let mut out = Vec::new();
        for pkg in &self.packages {
            let applies = match &pkg.marker {
                Some(m) => marker::evaluate(m, env)
                    .with_context(|| format!("marker of package `{}`", pkg.name))?,
                None => true,
            };
            if applies {
                out.push(pkg);
            }
        }
        Ok(out)
    }
}

fn line_of_package(text: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[packages]]")
        .nth(index)
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"lock-version = "1.0"
created-by = "test"

[[packages]]
name = "zipp"
version = "4.1.2"
wheels = [{ url = "https://files.example/zipp-4.1.2-py3-none-any.whl", hashes = { sha256 = "b30cb6cd253122169c47de245ca24a86bac2a5d3802ba15bf7ba6414eb9e144d" } }]

[[packages]]
name = "hf-xet"
version = "1.8.0"
marker = "platform_machine == 'x86_64'"
wheels = [{ name = "hf_xet-1.8.0-cp38-abi3-manylinux2014_x86_64.whl", url = "https://x/y", hashes = { sha256 = "29dab7c904cd1914a0439c6e1306c12c7497c8bd32290fbe563ebf51ca4b6d6d" } }]
"#;

    #[test]
    fn reads_a_lock_and_applies_markers() {
        let lock = PyLock::parse(LOCK).unwrap();
        assert_eq!(lock.packages.len(), 2);
        assert_eq!(
            lock.packages[0].wheels[0].file_name().unwrap(),
            "zipp-4.1.2-py3-none-any.whl"
        );
        let env = |m: &str| marker::Env {
            machine: m.into(),
            python_version: "3.11".into(),
            python_full_version: "3.11.16".into(),
        };
        assert_eq!(lock.packages_for(&env("x86_64")).unwrap().len(), 2);
        assert_eq!(lock.packages_for(&env("aarch64")).unwrap().len(), 1);
    }

    #[test]
    fn malformed_locks_name_the_line() {
        let no_hash = LOCK.replace("hashes = { sha256 = \"b30c", "hashes = { md5 = \"b30c");
        let err = PyLock::parse(&no_hash).unwrap_err();
        assert!(
            err.starts_with("line 4: package `zipp`") && err.contains("sha256"),
            "{err}"
        );

        let no_version = LOCK.replace("version = \"1.8.0\"\n", "");
        let err = PyLock::parse(&no_version).unwrap_err();
        assert!(
            err.starts_with("line 9: package `hf-xet` has no version"),
            "{err}"
        );

        let bad_marker = LOCK.replace("platform_machine == 'x86_64'", "platform_machine === ");
        assert!(PyLock::parse(&bad_marker).unwrap_err().contains("marker"));

        let broken = LOCK.replace("version = \"4.1.2\"", "version = 4.1.2");
        assert!(PyLock::parse(&broken).unwrap_err().starts_with("line 6,"));
    }

    #[test]
    fn the_repository_locks_are_valid_and_fresh() {
        let root = crate::core::project_root();
        for (rel, version) in [
            ("layer/layer.toml", "1.110.2"),
            ("layer/specs/litellm-1.78.7/layer.toml", "1.78.7"),
        ] {
            let spec = Spec::load(&root.join(rel)).unwrap();
            let lock = PyLock::load(&spec.lock_path()).unwrap();
            lock.check_fresh(&spec, &spec.lock_path()).unwrap();
            let litellm = lock
                .packages
                .iter()
                .find(|p| p.name == "litellm")
                .expect("litellm is locked");
            assert_eq!(litellm.version.as_deref(), Some(version), "{rel}");
            assert!(
                lock.packages.iter().any(|p| p.name == "openai"),
                "{rel}: openai is locked"
            );
        }
    }
}

//! Where a python-litellm layer keeps its interpreter, read from the layer itself.
//!
//! The layer records the CPython it carries in `python/layer-manifest.json`
//! (`"python_version": "3.11.7"`); that names `bin/python3.11` and `lib/python3.11`. A layer
//! without a readable manifest is searched for `lib/python3.*`; failing that,
//! `bin/python3` is used. Nothing here fixes a Python version.

use std::path::{Path, PathBuf};

/// Where Lambda unpacks layers.
pub const LAYER_ROOT: &str = "/opt";
/// `PYTHONHOME` the layer's interpreter expects: `python/` under [`LAYER_ROOT`].
pub const LAYER_PYTHONHOME: &str = "/opt/python";
/// The layer's manifest, relative to the layer root.
pub const LAYER_MANIFEST: &str = "python/layer-manifest.json";
/// Where every layer ships the Python half of the worker protocol (the same file as
/// [`WORKER_PY`](crate::WORKER_PY)), relative to the layer root. The Node.js client runs it.
pub const WORKER_PY_IN_LAYER: &str = "python/lib/pythonexec/worker.py";

/// The interpreter of the layer unpacked at some root, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPython {
    /// `<root>/python/bin/python3.X`, or `<root>/python/bin/python3` when the version is
    /// unknown or that file is missing.
    pub program: PathBuf,
    /// `<root>/python`.
    pub home: PathBuf,
    /// `<root>/python/lib/python3.X`, when the version is known.
    pub pythonpath: Option<PathBuf>,
    /// `"python_version 3.11.7 in /opt/python/layer-manifest.json"`, for messages.
    pub found_by: String,
}

impl LayerPython {
    /// Look at the layer under `root` (`/opt` in Lambda; a temporary folder in tests).
    pub fn find(root: &Path) -> LayerPython {
        let home = root.join("python");
        let manifest = root.join(LAYER_MANIFEST);
        let (minor, found_by) = match manifest_minor(&manifest) {
            Ok(found) => found,
            Err(why) => match highest_lib_minor(&home.join("lib")) {
                Some(minor) => (
                    Some(minor.clone()),
                    format!("{why}; found {}", home.join("lib").join(&minor).display()),
                ),
                None => (
                    None,
                    format!("{why}; no lib/python3.* under {}", home.display()),
                ),
            },
        };
        let fallback = home.join("bin").join("python3");
        let program = match &minor {
            Some(minor) => {
                let versioned = home.join("bin").join(minor);
                if versioned.exists() || !fallback.exists() {
                    versioned
                } else {
                    fallback
                }
            }
            None => fallback,
        };
        LayerPython {
            program,
            pythonpath: minor.map(|minor| home.join("lib").join(minor)),
            home,
            found_by,
        }
    }

    /// The environment the interpreter needs: `PYTHONHOME`, and `PYTHONPATH` when known.
    pub fn env(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        let mut env = vec![("PYTHONHOME".into(), self.home.clone().into_os_string())];
        if let Some(path) = &self.pythonpath {
            env.push(("PYTHONPATH".into(), path.clone().into_os_string()));
        }
        env
    }
}

/// `python3.11` from the manifest's `python_version`, or why not.
fn manifest_minor(manifest: &Path) -> Result<(Option<String>, String), String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|err| format!("cannot read {}: {err}", manifest.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| format!("{} is not JSON: {err}", manifest.display()))?;
    let version = value
        .get("python_version")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("{} has no python_version", manifest.display()))?;
    let minor = minor_of(version).ok_or_else(|| {
        format!(
            "{} has python_version {version:?}, not like 3.11.7",
            manifest.display()
        )
    })?;
    Ok((
        Some(minor),
        format!("python_version {version} in {}", manifest.display()),
    ))
}

/// `"3.11.7"` -> `"python3.11"`.
fn minor_of(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(major) && numeric(minor)).then(|| format!("python{major}.{minor}"))
}

/// The `python3.N` folder under `lib` with the highest `N`.
fn highest_lib_minor(lib: &Path) -> Option<String> {
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix("python3.")?.parse().ok()?;
            entry.path().is_dir().then_some((n, name))
        })
        .max()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, "").expect("write");
    }

    #[test]
    fn the_manifest_names_the_version() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        touch(&r.join("python/bin/python3.12"));
        touch(&r.join("python/bin/python3"));
        std::fs::write(
            r.join(LAYER_MANIFEST),
            r#"{"name": "python-litellm", "python_version": "3.12.4"}"#,
        )
        .expect("write");
        let found = LayerPython::find(r);
        assert_eq!(found.program, r.join("python/bin/python3.12"));
        assert_eq!(found.home, r.join("python"));
        assert_eq!(found.pythonpath, Some(r.join("python/lib/python3.12")));
        assert!(
            found.found_by.contains("python_version 3.12.4"),
            "{found:?}"
        );
        assert!(found.env().contains(&(
            "PYTHONPATH".into(),
            r.join("python/lib/python3.12").into_os_string()
        )));
    }

    #[test]
    fn the_real_fixture_manifest_parses() {
        let text = r#"{"name":"python-litellm","arch":"x86_64","python_version":"3.11.7","distributions":[["litellm","1.0"]]}"#;
        let root = tempfile::tempdir().expect("tempdir");
        touch(&root.path().join(LAYER_MANIFEST));
        std::fs::write(root.path().join(LAYER_MANIFEST), text).expect("write");
        let found = LayerPython::find(root.path());
        // bin/python3.11 is missing and so is bin/python3: the versioned name is kept.
        assert_eq!(found.program, root.path().join("python/bin/python3.11"));
    }

    #[test]
    fn without_a_manifest_the_lib_folder_decides() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        for minor in ["python3.9", "python3.13", "python3.x", "python2.7"] {
            std::fs::create_dir_all(r.join("python/lib").join(minor)).expect("mkdir");
        }
        touch(&r.join("python/lib/python3.99")); // a file, not a folder
        touch(&r.join("python/bin/python3.13"));
        let found = LayerPython::find(r);
        assert_eq!(found.program, r.join("python/bin/python3.13"));
        assert_eq!(found.pythonpath, Some(r.join("python/lib/python3.13")));
        assert!(found.found_by.contains("cannot read"), "{found:?}");
    }

    #[test]
    fn a_missing_versioned_binary_falls_back_to_python3() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        std::fs::create_dir_all(r.join("python/lib/python3.12")).expect("mkdir");
        touch(&r.join("python/bin/python3"));
        std::fs::write(r.join(LAYER_MANIFEST), "not json").expect("write");
        let found = LayerPython::find(r);
        assert_eq!(found.program, r.join("python/bin/python3"));
        assert_eq!(found.pythonpath, Some(r.join("python/lib/python3.12")));
        assert!(found.found_by.contains("is not JSON"), "{found:?}");
    }

    #[test]
    fn an_empty_root_means_bin_python3_without_pythonpath() {
        let root = tempfile::tempdir().expect("tempdir");
        let found = LayerPython::find(root.path());
        assert_eq!(found.program, root.path().join("python/bin/python3"));
        assert_eq!(found.pythonpath, None);
        assert_eq!(found.env().len(), 1);
    }

    #[test]
    fn versions_are_checked() {
        assert_eq!(minor_of("3.11.7").as_deref(), Some("python3.11"));
        assert_eq!(minor_of("3.13").as_deref(), Some("python3.13"));
        assert_eq!(minor_of("3"), None);
        assert_eq!(minor_of("3.x.1"), None);
        assert_eq!(minor_of("../3.1"), None);
    }
}

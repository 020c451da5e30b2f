//! The layer spec, `layer/layer.toml`: what a layer holds and for which target.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

pub mod advisories;
pub mod profiles;
mod providers;
pub mod rules;
mod sections;

pub use providers::ProvidersFile;
pub use sections::*;

pub use crate::core::{Arch, Glibc, Runtime, Sha256Hex};

/// `layer/layer.toml`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Spec {
    pub layer: LayerSection,
    pub python: PythonSection,
    pub target: TargetSection,
    pub requirements: RequirementsSection,
    /// Environment defaults that `sitecustomize.py` applies unless the caller set them.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub budget: BudgetSection,
    #[serde(default)]
    pub verify: VerifySection,
    /// The user's pruning rules and exceptions, on top of `layer/rules.toml`.
    #[serde(default)]
    pub prune: PruneSection,
    /// `[minimize]`: what the trace-driven minimization runs and keeps.
    #[serde(default)]
    pub minimize: MinimizeSection,
    /// `[clients]`: the client libraries shipped beside the interpreter.
    #[serde(default)]
    pub clients: ClientsSection,
    /// `[[patch]]`: unified diffs against single installed files, applied only when listed.
    #[serde(default)]
    pub patch: Vec<PatchDef>,

    /// The file this spec was read from.
    #[serde(skip)]
    pub path: Utf8PathBuf,
}

impl Spec {
    /// Reads and checks a spec; errors name the file, the line and what is wrong.
    pub fn load(path: &Utf8Path) -> Result<Spec> {
        let text = fs_err::read_to_string(path).context("reading the layer spec")?;
        let mut spec = Spec::parse(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        spec.path = path.to_owned();
        Ok(spec)
    }

    /// Parses spec text; the error carries the line and column.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let spec: Spec = toml::from_str(text).map_err(|e| format_toml_error(text, &e))?;
        spec.check().map_err(|e| format!("{e:#}"))?;
        Ok(spec)
    }

    fn check(&self) -> Result<()> {
        if self.layer.name.is_empty()
            || !self
                .layer
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "[layer] name `{}` must be letters, digits, `-` or `_`",
                self.layer.name
            );
        }
        if self.python_minor().is_none() {
            bail!(
                "[python] version `{}` is not a CPython version such as `3.11.16`",
                self.python.version
            );
        }
        if self.target.runtime.is_none() && self.target.glibc.is_none() {
            bail!("[target] needs `runtime` (\"al2023\" or \"al2\") or `glibc`");
        }
        if self.requirements.packages.is_empty() {
            bail!("[requirements] packages is empty");
        }
        crate::spec::rules::check_names(&self.prune.rule).context("[prune]")?;
        self.check_patches()
    }

    fn check_patches(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.patch {
            let safe = |path: &Utf8Path| {
                !path.as_str().is_empty()
                    && !path.as_str().contains('\\')
                    && path
                        .components()
                        .all(|c| matches!(c, camino::Utf8Component::Normal(_)))
            };
            if p.distribution.trim().is_empty() || p.reason.trim().is_empty() {
                bail!(
                    "[[patch]] of `{}`: distribution and reason must not be empty",
                    p.file
                );
            }
            if !safe(&p.file) || !safe(&p.diff) {
                bail!(
                    "[[patch]] of {}: file `{}` and diff `{}` must be relative paths inside site-packages and the data folder",
                    p.distribution, p.file, p.diff
                );
            }
            // PEP 503's normalization, enough to tell `Foo_Bar` and `foo-bar` are one name.
            let name: String = p.distribution.to_ascii_lowercase().replace(['_', '.'], "-");
            let key = (name, p.file.clone());
            if !seen.insert(key) {
                bail!(
                    "[[patch]]: two patches of {} {}; put both changes into one diff",
                    p.distribution,
                    p.file
                );
            }
        }
        Ok(())
    }

    /// `3.11` of `3.11.16`.
    pub fn python_minor(&self) -> Option<String> {
        let mut parts = self.python.version.split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        Some(format!("{major}.{minor}"))
    }

    /// `3.11`, for paths such as `lib/python3.11`.
    pub fn python_xy(&self) -> String {
        self.python_minor()
            .unwrap_or_else(|| self.python.version.clone())
    }

    /// The newest glibc the target offers.
    pub fn glibc(&self) -> Glibc {
        self.target
            .glibc
            .or(self.target.runtime.map(Runtime::glibc))
            .unwrap_or(Runtime::Al2023.glibc())
    }

    /// The folder of the spec file: relative paths in the spec are relative to it.
    pub fn dir(&self) -> Utf8PathBuf {
        self.path
            .parent()
            .map(Utf8Path::to_owned)
            .unwrap_or_default()
    }

    /// The folder of the shared data files (`[layer] data`, default: the spec's own folder).
    pub fn data_dir(&self) -> Utf8PathBuf {
        if self.layer.data == "." {
            return self.dir();
        }
        self.dir().join(&self.layer.data)
    }

    /// A file of the data folder, e.g. `rules.toml`.
    pub fn data_path(&self, rel: impl AsRef<Utf8Path>) -> Utf8PathBuf {
        self.data_dir().join(rel)
    }

    /// The lock is the spec's own, beside it (a second spec has its own lock).
    pub fn lock_path(&self) -> Utf8PathBuf {
        self.dir().join(&self.requirements.lock)
    }

    /// The file name of the python-build-standalone asset for `arch`.
    pub fn python_asset(&self, arch: Arch) -> String {
        let p = &self.python;
        match p.flavour {
            Flavour::InstallOnly => {
                format!(
                    "cpython-{}+{}-{}-install_only.tar.gz",
                    p.version,
                    p.release,
                    arch.triple()
                )
            }
            Flavour::InstallOnlyStripped => {
                format!(
                    "cpython-{}+{}-{}-install_only_stripped.tar.gz",
                    p.version,
                    p.release,
                    arch.triple()
                )
            }
            Flavour::Full => format!(
                "cpython-{}+{}-{}-pgo+lto-full.tar.zst",
                p.version,
                p.release,
                arch.triple()
            ),
        }
    }

    /// The download URL of the runtime for `arch`; `mirror` replaces the URL prefix.
    pub fn python_url(&self, arch: Arch, mirror: Option<&str>) -> String {
        let prefix = mirror
            .unwrap_or(&self.python.url_prefix)
            .trim_end_matches('/');
        let asset = self.python_asset(arch).replace('+', "%2B");
        if prefix.starts_with("file://") || prefix.starts_with('/') {
            // A local mirror is a plain folder of assets; `%2B` is for URLs only.
            format!("{prefix}/{}", self.python_asset(arch))
        } else {
            format!("{prefix}/{}/{asset}", self.python.release)
        }
    }

    /// Where the runtime archive for `arch` comes from, and the file name it is cached under:
    /// `explicit` (`--python-archive`, a path or URL), else the spec's download, under
    /// `LAYER_PYTHON_MIRROR` when that is set. The one reader of that variable.
    pub fn runtime_location(&self, arch: Arch, explicit: Option<&str>) -> (String, String) {
        let source = match explicit {
            Some(source) => source.to_owned(),
            None => {
                let mirror = std::env::var("LAYER_PYTHON_MIRROR")
                    .ok()
                    .filter(|m| !m.is_empty());
                self.python_url(arch, mirror.as_deref())
            }
        };
        let file_name = source
            .rsplit('/')
            .next()
            .unwrap_or("python.tar.gz")
            .replace("%2B", "+");
        (source, file_name)
    }

    pub fn python_sha256(&self, arch: Arch) -> Result<&Sha256Hex> {
        self.python
            .sha256
            .get(&arch)
            .with_context(|| format!("{}: [python.sha256] has no entry for {arch}", self.path))
    }
}

/// Formats a TOML error as `line L, column C: message`.
pub(crate) fn format_toml_error(text: &str, err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", err.message())
        }
        None => err.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[layer]
name = "python-litellm"
default-arch = "arm64"

[python]
version = "3.11.16"
release = "20260814"
flavour = "install_only_stripped"
sha256.x86_64 = "3b437f08720d3ddd9c1904532476ec9fb373e800d1598c72c907dd6d5f29b79b"
sha256.arm64 = "6a250f5c9326eebaa528d5d132cd66ebd1d7540cf45ac703f19e13f41d1be9b6"

[target]
runtime = "al2023"

[requirements]
packages = ["litellm==1.78.7"]
"#;

    #[test]
    fn parses_the_default_shape() {
        let spec = Spec::parse(GOOD).expect("valid spec");
        assert_eq!(spec.layer.name, "python-litellm");
        assert_eq!(spec.layer.default_arch, Arch::Arm64);
        assert_eq!(
            spec.glibc(),
            Glibc {
                major: 2,
                minor: 34
            }
        );
        assert_eq!(spec.python_xy(), "3.11");
        assert_eq!(
            spec.python_url(Arch::X86_64, None),
            "https://github.com/astral-sh/python-build-standalone/releases/download/20260814/\
             cpython-3.11.16%2B20260814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
        );
        assert_eq!(
            spec.python_url(Arch::Arm64, Some("http://127.0.0.1:9/mirror/")),
            "http://127.0.0.1:9/mirror/20260814/cpython-3.11.16%2B20260814-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz"
        );
    }

    /// The maintained specs: today's litellm by default, the seeds' pin beside it.
    const MAINTAINED: [(&str, &str); 2] = [
        ("layer/layer.toml", "litellm==1.110.2"),
        ("layer/specs/litellm-1.78.7/layer.toml", "litellm==1.78.7"),
    ];

    #[test]
    fn the_repository_specs_are_valid_and_share_the_data_files() {
        for (rel, litellm) in MAINTAINED {
            let path = crate::core::project_root().join(rel);
            let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{rel}: {e:#}"));
            assert_eq!(spec.layer.name, "python-litellm");
            assert_eq!(spec.glibc().to_string(), "2.34");
            assert!(
                spec.requirements.packages.iter().any(|p| p == litellm),
                "{rel}"
            );
            assert!(
                spec.data_path(&spec.prune.rules).is_file(),
                "{rel}: {}",
                spec.data_path(&spec.prune.rules)
            );
            assert_eq!(
                spec.data_dir().canonicalize_utf8().unwrap(),
                crate::core::project_root()
                    .join("layer")
                    .canonicalize_utf8()
                    .unwrap()
            );
            assert!(
                spec.lock_path().starts_with(spec.dir()),
                "{rel}: its own lock"
            );
        }
    }

    #[test]
    fn patches_parse_and_unsafe_or_doubled_ones_are_refused() {
        let one = "\n[[patch]]\ndistribution = \"idna\"\nfile = \"idna/package_data.py\"\ndiff = \"patches/idna.diff\"\nreason = \"a test\"\n";
        let spec = Spec::parse(&format!("{GOOD}{one}")).expect("a patch parses");
        assert_eq!(spec.patch[0].file, "idna/package_data.py");
        assert!(
            Spec::parse(GOOD).unwrap().patch.is_empty(),
            "none by default"
        );
        let twice = format!("{GOOD}{one}{}", one.replace("idna\"", "IDNA\""));
        let err = Spec::parse(&twice).unwrap_err();
        assert!(err.contains("two patches of"), "{err}");
        let outside = format!("{GOOD}{}", one.replace("patches/idna.diff", "../x.diff"));
        let err = Spec::parse(&outside).unwrap_err();
        assert!(err.contains("../x.diff"), "{err}");
        let no_reason = format!("{GOOD}{}", one.replace("a test", " "));
        assert!(Spec::parse(&no_reason).unwrap_err().contains("reason"));
    }

    #[test]
    fn errors_name_the_line() {
        let bad_hash = GOOD.replace("3b437f08720d3ddd", "zz");
        let err = Spec::parse(&bad_hash).unwrap_err();
        assert!(err.starts_with("line 10,"), "{err}");
        assert!(err.contains("not a sha256"), "{err}");

        let bad_arch = GOOD.replace("default-arch = \"arm64\"", "default-arch = \"riscv\"");
        let err = Spec::parse(&bad_arch).unwrap_err();
        assert!(err.starts_with("line 4,") && err.contains("riscv"), "{err}");

        let unknown = GOOD.replace("[target]", "[target]\nglibcc = \"2.34\"");
        let err = Spec::parse(&unknown).unwrap_err();
        assert!(
            err.starts_with("line 14,") && err.contains("glibcc"),
            "{err}"
        );

        let with_rule = format!(
            "{GOOD}\n[prune]\nkeep = [\"lib/python3.11/site-packages/x/**\"]\n[[prune.rule]]\nname = \"mine\"\nlevel = \"check\"\nreason = \"because\"\npaths = [\"big/**\"]\n"
        );
        let spec = Spec::parse(&with_rule).expect("a user rule parses");
        assert_eq!(spec.prune.rule[0].name, "mine");
        let bad_rule = with_rule.replace("paths = [\"big/**\"]\n", "pathz = []\n");
        assert!(Spec::parse(&bad_rule).unwrap_err().contains("pathz"));

        let not_toml = GOOD.replace("[requirements]", "[requirements");
        let err = Spec::parse(&not_toml).unwrap_err();
        assert!(err.starts_with("line 16,"), "{err}");
    }
}

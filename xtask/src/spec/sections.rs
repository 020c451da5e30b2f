//! The sections of `layer.toml` other than the spec itself, as written, with their defaults.

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use crate::core::{Arch, Glibc, Runtime, Sha256Hex};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LayerSection {
    /// Artifacts are `<name>-<arch>.zip`.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_arch")]
    pub default_arch: Arch,
    /// The profile used when `--profile` is not given (see `layer/profiles.toml`).
    #[serde(default)]
    pub profile: Option<String>,
    /// The folder of the shared data files (rules, profiles, advisories, providers,
    /// accelerators, Lambda's base libraries, `sitecustomize.py`, workloads), relative to the
    /// spec, so that a second spec in `layer/specs/NAME/` uses the same data as the default one.
    /// Every relative path of the spec but the lock resolves against it.
    #[serde(default = "default_data")]
    pub data: Utf8PathBuf,
}

fn default_data() -> Utf8PathBuf {
    Utf8PathBuf::from(".")
}

fn default_name() -> String {
    "python-litellm".to_owned()
}

fn default_arch() -> Arch {
    Arch::Arm64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PythonSection {
    /// Full CPython version, e.g. `3.11.16`.
    pub version: String,
    /// python-build-standalone release tag, e.g. `20260814`.
    pub release: String,
    /// `install_only`, `install_only_stripped` or `full`.
    pub flavour: Flavour,
    /// Where releases are downloaded from; `LAYER_PYTHON_MIRROR` replaces it.
    #[serde(default = "default_url_prefix")]
    pub url_prefix: String,
    /// The archive's sha256 for each architecture.
    pub sha256: BTreeMap<Arch, Sha256Hex>,
}

fn default_url_prefix() -> String {
    "https://github.com/astral-sh/python-build-standalone/releases/download".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Flavour {
    #[serde(rename = "install_only")]
    InstallOnly,
    #[serde(rename = "install_only_stripped")]
    InstallOnlyStripped,
    #[serde(rename = "full")]
    Full,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetSection {
    /// The Lambda base image; sets `glibc` unless that is given.
    #[serde(default)]
    pub runtime: Option<Runtime>,
    /// The newest glibc any ELF file may need.
    #[serde(default)]
    pub glibc: Option<Glibc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RequirementsSection {
    /// Top-level requirements, PEP 508 strings, pinned with `==`.
    pub packages: Vec<String>,
    /// Upper or exact bounds for transitive dependencies, given to the resolver (`openai<3`).
    #[serde(default)]
    pub constraints: Vec<String>,
    /// The lock file, relative to the spec (PEP 751 `pylock.toml`).
    #[serde(default = "default_lock")]
    pub lock: Utf8PathBuf,
    /// Known-compromised releases, relative to the spec (read when it exists; the
    /// repository's list applies always).
    #[serde(default = "default_advisories")]
    pub advisories: Utf8PathBuf,
    /// Yanked releases (PEP 592) the lock may hold anyway: `{ "pkg==1.0" = "why" }`.
    #[serde(default)]
    pub allow_yanked: BTreeMap<String, String>,
    /// Alternative pins (`openai==2.30.0`) whose import `cargo xtask bench` times beside the
    /// lock's, each locked and built with the spec's profile (`python/candidates.rs`).
    #[serde(default)]
    pub import_candidates: Vec<String>,
}

fn default_advisories() -> Utf8PathBuf {
    Utf8PathBuf::from("advisories.toml")
}

fn default_lock() -> Utf8PathBuf {
    Utf8PathBuf::from("pylock.toml")
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BudgetSection {
    /// Largest acceptable zip, in bytes.
    pub zip_bytes: Option<u64>,
    /// Largest acceptable unpacked layer, in bytes.
    pub unpacked_bytes: Option<u64>,
}

/// `[verify]`: what `cargo xtask verify` must know about this layer's packages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VerifySection {
    /// Top-level modules that legitimately cannot be imported on their own, each with the
    /// reason; verify lists them instead of importing them.
    #[serde(default)]
    pub skip_imports: BTreeMap<String, String>,
    /// A check script, relative to the spec, run in the sandbox against the loopback server
    /// (`workloads/litellm_verify.py`): what the payload must do, as named checks. None: no
    /// payload checks beyond imports and metadata.
    #[serde(default)]
    pub workload: Option<Utf8PathBuf>,
    /// Modules whose import is timed in fresh processes (`import_seconds`), e.g. `["litellm"]`.
    #[serde(default)]
    pub preload: Vec<String>,
    /// `.pth` files (by file name) that execute code and are known to be benign, on top of
    /// the `[[benign-pth]]` list of advisories.toml; verify fails on any other.
    #[serde(default)]
    pub allow_pth: Vec<String>,
}

/// `[clients]`: what the layer carries for the functions that use it. The Python side of the
/// worker protocol (`python/lib/pythonexec/worker.py`) is always shipped: both clients run it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientsSection {
    /// The Node.js package at `nodejs/node_modules/pythonexec/`, where Lambda's Node.js
    /// runtimes resolve `import "pythonexec"` (about 60 KB).
    #[serde(default = "yes")]
    pub node: bool,
}

fn yes() -> bool {
    true
}

impl Default for ClientsSection {
    fn default() -> Self {
        ClientsSection { node: true }
    }
}

/// One `[[patch]]`: a unified diff against one file of one installed distribution, applied
/// only when that file is the pristine one its RECORD names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PatchDef {
    /// The distribution that installs the file, e.g. `litellm`.
    pub distribution: String,
    /// The file, relative to site-packages, as its RECORD lists it (`litellm/main.py`).
    pub file: Utf8PathBuf,
    /// The unified diff, relative to the data folder (`patches/x.diff`).
    pub diff: Utf8PathBuf,
    /// Why the layer carries the change; printed in the plan, the report and the manifest.
    pub reason: String,
}

/// `[minimize]`: the workload `cargo xtask layer --minimize` traces, and what it keeps anyway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MinimizeSection {
    /// LiteLLM providers the function uses; the default workload exercises each.
    #[serde(default = "default_providers")]
    pub providers: Vec<String>,
    /// Workload scripts, relative to the spec; default: `workloads/litellm.py`.
    #[serde(default = "default_workloads")]
    pub workloads: Vec<Utf8PathBuf>,
    /// Globs relative to `python/` kept whatever the trace says.
    #[serde(default)]
    pub keep: Vec<String>,
    /// Distributions whose native accelerators are left out (see `accelerators.toml`).
    #[serde(default)]
    pub drop_accelerators: Vec<String>,
}

fn default_providers() -> Vec<String> {
    vec!["openai".to_owned()]
}

fn default_workloads() -> Vec<Utf8PathBuf> {
    vec![Utf8PathBuf::from("workloads/litellm.py")]
}

impl Default for MinimizeSection {
    fn default() -> Self {
        MinimizeSection {
            providers: default_providers(),
            workloads: default_workloads(),
            keep: Vec::new(),
            drop_accelerators: Vec::new(),
        }
    }
}

/// `[prune]`: where the rules and profiles are, and the user's own rules and exceptions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PruneSection {
    /// The rules file, relative to the spec.
    #[serde(default = "default_rules")]
    pub rules: Utf8PathBuf,
    /// The profiles file, relative to the spec.
    #[serde(default = "default_profiles")]
    pub profiles: Utf8PathBuf,
    /// Globs relative to `python/` that no rule deletes (exceptions, not refusals).
    #[serde(default)]
    pub keep: Vec<String>,
    /// Names of rules (of the rules file) not to apply.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Globs relative to site-packages whose sources a `sourceless` profile keeps.
    #[serde(default)]
    pub keep_source: Vec<String>,
    /// The user's own rules, applied after those of the rules file, same shape.
    #[serde(default)]
    pub rule: Vec<crate::spec::rules::RuleDef>,
}

impl Default for PruneSection {
    fn default() -> Self {
        PruneSection {
            rules: default_rules(),
            profiles: default_profiles(),
            keep: Vec::new(),
            disable: Vec::new(),
            keep_source: Vec::new(),
            rule: Vec::new(),
        }
    }
}

fn default_rules() -> Utf8PathBuf {
    Utf8PathBuf::from("rules.toml")
}

fn default_profiles() -> Utf8PathBuf {
    Utf8PathBuf::from("profiles.toml")
}

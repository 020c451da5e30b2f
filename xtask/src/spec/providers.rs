//! `layer/litellm-providers.toml`: the provider names and code folders of the payload, for when
//! the layer holds no LiteLLM to read them from.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::Utf8Path;
use serde::Deserialize;

/// `layer/litellm-providers.toml`: used when the layer holds no LiteLLM to read them from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProvidersFile {
    pub providers: Vec<String>,
    /// Model-name prefixes LiteLLM maps to a provider without a `provider/` prefix.
    #[serde(default)]
    pub bare_model_prefixes: BTreeMap<String, String>,
    /// Folders of `litellm/llms/` whose code serves providers of other names (used by
    /// minimization's hints: a removed module of `vertex_ai/` is kept by provider `gemini`).
    #[serde(default)]
    pub code_folders: BTreeMap<String, Vec<String>>,
    /// The folder of the payload's provider code, relative to site-packages (`litellm/llms`).
    // Read by minimization's hints (build/, another owner) once they stop naming the folder.
    #[allow(dead_code)]
    #[serde(default)]
    pub code_prefix: Option<String>,
    /// The payload's file that lists its providers, relative to site-packages
    /// (`litellm/types/utils.py`, `class LlmProviders`); analyze prefers it to `providers`.
    #[serde(default)]
    pub providers_source: Option<String>,
}

impl ProvidersFile {
    pub fn load(path: &Utf8Path) -> Result<ProvidersFile> {
        let text = fs_err::read_to_string(path).context("reading the provider list")?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path}: {}", super::format_toml_error(&text, &e)))
    }
}

//! `--scan-source DIR`: which LiteLLM providers and which Python modules a code base refers to.
//! The reading of each file is pure (`scan_text`); only `scan_dir` touches the disk.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

/// Folders that hold someone else's code or build output.
const SKIP_DIRS: &[&str] = &[
    "node_modules",
    "target",
    ".git",
    ".hg",
    "venv",
    ".venv",
    "env",
    ".tox",
    "__pycache__",
    "site-packages",
    "dist",
    "build",
    ".aws-sam",
    ".serverless",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    JavaScript,
    Python,
    Rust,
}

pub fn lang_of(path: &Utf8Path) -> Option<Lang> {
    match path.extension()? {
        "js" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" | "jsx" => Some(Lang::JavaScript),
        "py" => Some(Lang::Python),
        "rs" => Some(Lang::Rust),
        _ => None,
    }
}

/// The values of LiteLLM's `class LlmProviders(str, Enum)` in `litellm/types/utils.py`.
pub fn providers_from_litellm(utils_py: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in utils_py.lines() {
        if line.starts_with("class LlmProviders(") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if !line.trim().is_empty() && !line.starts_with(char::is_whitespace) {
            break;
        }
        let Some((_, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let quoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
        if let Some(v) = quoted {
            out.push(v.to_owned());
        }
    }
    out
}

/// String literals of a source text with their line numbers: `'...'`, `"..."` (one line) and
/// `` `...` `` (any number of lines). A `'` with no closing quote on its line is a Rust
/// lifetime or char, not a string.
/// `single_quotes` is false for Rust, where `'` opens a lifetime or a char, never a string.
/// Template literals are read inside too: they often hold Python code with its own strings.
pub fn string_literals(text: &str, single_quotes: bool) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if !(matches!(c, '"' | '`') || (c == '\'' && single_quotes)) {
            i += 1;
            continue;
        }
        let start_line = line;
        let mut j = i + 1;
        let mut value = String::new();
        let mut closed = false;
        while j < chars.len() {
            let d = chars[j];
            if d == '\\' {
                if let Some(&n) = chars.get(j + 1) {
                    value.push(n);
                }
                j += 2;
                continue;
            }
            if d == c {
                closed = true;
                break;
            }
            if d == '\n' {
                if c != '`' {
                    break;
                }
                line += 1;
            }
            value.push(d);
            j += 1;
        }
        if closed {
            if c == '`' {
                let inner = string_literals(&value, true);
                out.push((start_line, value));
                out.extend(inner.into_iter().map(|(l, v)| (start_line + l - 1, v)));
            } else {
                out.push((start_line, value));
            }
            i = j + 1;
        } else {
            // Not a string after all: go on from the character after the quote.
            line = start_line;
            i += 1;
        }
    }
    out
}

/// The provider a model string names: `anthropic/claude-3-5-sonnet` -> `anthropic`.
pub fn provider_of_model<'a>(
    literal: &str,
    providers: &'a BTreeSet<String>,
    bare: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    if literal.len() > 200 || literal.chars().any(char::is_whitespace) {
        return None;
    }
    if let Some((prefix, rest)) = literal.split_once('/') {
        if !rest.is_empty() {
            return providers.get(prefix).map(String::as_str);
        }
        return None;
    }
    bare.iter()
        .find(|(p, _)| literal.starts_with(p.as_str()) && literal.len() > p.len())
        .map(|(_, v)| v.as_str())
}

/// Top-level module names a line of Python imports: `import a.b, c as d` -> a, c;
/// `from x.y import z` -> x. Relative imports name nothing outside the code base. The same
/// shapes inside JavaScript or Rust (Python embedded in strings) are never valid JavaScript
/// or Rust, so the one reading serves every language.
pub fn python_imports(line: &str) -> Vec<String> {
    let line = line.trim().trim_end_matches([';', '\\']).trim();
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !s.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    };
    let top = |s: &str| s.split('.').next().unwrap_or_default().to_owned();
    if let Some(rest) = line.strip_prefix("from ") {
        let mut words = rest.split_whitespace();
        let (Some(module), Some("import")) = (words.next(), words.next()) else {
            return Vec::new();
        };
        if ident(module) && words.next().is_some() {
            return vec![top(module)];
        }
        return Vec::new();
    }
    if let Some(rest) = line.strip_prefix("import ") {
        let mut out = Vec::new();
        for part in rest.split(',') {
            let mut words = part.split_whitespace();
            let Some(module) = words.next() else {
                return Vec::new();
            };
            match (words.next(), words.next(), words.next()) {
                (None, _, _) => {}
                (Some("as"), Some(alias), None) if ident(alias) => {}
                _ => return Vec::new(),
            }
            if !ident(module) {
                return Vec::new();
            }
            out.push(top(module));
        }
        return out;
    }
    Vec::new()
}

/// Module names passed to a dynamic import: `importlib.import_module("x")`, `__import__("x")`,
/// and in Rust (PyO3) `py.import("x")` / `PyModule::import(py, "x")`.
fn dynamic_imports(text: &str, lang: Lang) -> Vec<String> {
    let mut calls = vec!["import_module(", "__import__("];
    if lang == Lang::Rust {
        calls.extend([".import(", "::import(", ".import_bound(", "::import_bound("]);
    }
    let mut out = Vec::new();
    for call in calls {
        for (at, _) in text.match_indices(call) {
            let args = &text[at + call.len()..];
            let args = args
                .trim_start()
                .strip_prefix("py,")
                .unwrap_or(args)
                .trim_start();
            let Some(q) = args.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
                continue;
            };
            if let Some(end) = args[1..].find(q) {
                let module = &args[1..1 + end];
                let first = module.split('.').next().unwrap_or_default();
                let is_name = !first.is_empty()
                    && !first.starts_with(|c: char| c.is_ascii_digit())
                    && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if is_name {
                    out.push(first.to_owned());
                }
            }
        }
    }
    out
}

/// What one file refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// (provider, line, the literal).
    pub providers: Vec<(String, usize, String)>,
    /// (top-level module, line).
    pub modules: Vec<(String, usize)>,
}

pub fn scan_text(
    text: &str,
    lang: Lang,
    providers: &BTreeSet<String>,
    bare: &BTreeMap<String, String>,
) -> Found {
    let mut found = Found::default();
    let lines: Vec<&str> = text.lines().collect();
    for (line, lit) in string_literals(text, lang != Lang::Rust) {
        if let Some(p) = provider_of_model(&lit, providers, bare) {
            found.providers.push((p.to_owned(), line, lit.clone()));
        } else if providers.contains(&lit) {
            // `custom_llm_provider="bedrock"`: a bare provider name after that keyword.
            let line_text = lines.get(line - 1).copied().unwrap_or_default();
            let before = line_text
                .find(lit.as_str())
                .map(|at| &line_text[..at])
                .unwrap_or_default();
            if before.contains("custom_llm_provider") {
                found.providers.push((lit.clone(), line, lit.clone()));
            }
        }
    }
    for (n, line) in lines.iter().enumerate() {
        for m in python_imports(line) {
            found.modules.push((m, n + 1));
        }
    }
    for m in dynamic_imports(text, lang) {
        found.modules.push((m, 0));
    }
    found
}

/// One provider the code base names.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderUse {
    pub provider: String,
    pub count: usize,
    /// `file:line: literal`, a few.
    pub examples: Vec<String>,
}

/// One module of the layer the code base imports.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleUse {
    pub module: String,
    /// The distribution that provides it in the layer.
    pub distribution: Option<String>,
    pub count: usize,
    pub example: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub dir: Utf8PathBuf,
    pub files: usize,
    /// Where the provider names came from.
    pub provider_names_from: String,
    pub providers_known: usize,
    pub providers: Vec<ProviderUse>,
    /// Modules of the layer the code imports.
    pub modules: Vec<ModuleUse>,
    /// Imported modules that are neither in the layer nor in the code base's own files
    /// (the standard library is among these; nothing here says which).
    pub modules_elsewhere: Vec<String>,
    /// Distributions the directly imported ones need (themselves included).
    pub distributions_needed: Vec<String>,
    /// Distributions of the layer nothing imported needs, with their unpacked bytes.
    pub distributions_not_needed: Vec<(String, u64)>,
}

/// Every source file under `dir`, sorted, skipping vendored and built folders.
pub fn source_files(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d)? {
            let entry = entry?;
            let path = crate::util::utf8(entry.path())?;
            let ft = entry.file_type()?;
            let name = path.file_name().unwrap_or_default();
            if ft.is_dir() {
                if !SKIP_DIRS.contains(&name) {
                    stack.push(path);
                }
            } else if ft.is_file() && lang_of(&path).is_some() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Module names the code base defines itself (`foo.py`, `foo/`), so that `import foo` of its
/// own code is not taken for a layer module of the same name.
fn own_modules(files: &[Utf8PathBuf], dir: &Utf8Path) -> BTreeSet<String> {
    files
        .iter()
        .filter(|f| f.extension() == Some("py"))
        .filter_map(|f| f.strip_prefix(dir).ok())
        .flat_map(|rel| {
            let stem = rel.file_stem().map(str::to_owned);
            let parent = rel
                .parent()
                .and_then(Utf8Path::file_name)
                .map(str::to_owned);
            stem.into_iter().chain(parent)
        })
        .collect()
}

/// The input the scan needs from the analysed layer.
pub struct LayerModules<'a> {
    /// Top-level module name -> normalized distribution.
    pub modules: &'a BTreeMap<String, String>,
    /// Distribution -> unpacked bytes.
    pub sizes: &'a BTreeMap<String, u64>,
    pub requires: &'a BTreeMap<String, Vec<super::deps::Req>>,
    pub env: &'a crate::python::marker::Env,
}

/// Scans every source file under `dir` for provider names and imports, and reports them
/// against the layer's modules. Long because it is one walk whose findings feed every part
/// of the report; the matching itself lives in the small functions above.
pub fn scan_dir(
    dir: &Utf8Path,
    provider_names: &[String],
    provider_names_from: String,
    bare: &BTreeMap<String, String>,
    layer: &LayerModules<'_>,
) -> Result<ScanReport> {
    if !dir.is_dir() {
        anyhow::bail!("{dir} is not a folder (--scan-source)");
    }
    let providers: BTreeSet<String> = provider_names.iter().cloned().collect();
    let files = source_files(dir).with_context(|| format!("listing the sources under {dir}"))?;
    let own = own_modules(&files, dir);
    let mut prov: BTreeMap<String, ProviderUse> = BTreeMap::new();
    let mut mods: BTreeMap<String, ModuleUse> = BTreeMap::new();
    let mut elsewhere = BTreeSet::new();
    for f in &files {
        let Some(lang) = lang_of(f) else { continue };
        let Ok(text) = fs_err::read_to_string(f) else {
            // Not UTF-8: not source code we can read.
            continue;
        };
        let rel = f.strip_prefix(dir).unwrap_or(f);
        let found = scan_text(&text, lang, &providers, bare);
        for (p, line, lit) in found.providers {
            let u = prov.entry(p.clone()).or_insert(ProviderUse {
                provider: p,
                count: 0,
                examples: Vec::new(),
            });
            u.count += 1;
            if u.examples.len() < 3 {
                u.examples.push(format!("{rel}:{line}: {lit}"));
            }
        }
        for (m, line) in found.modules {
            match layer.modules.get(&m) {
                Some(dist) => {
                    let u = mods.entry(m.clone()).or_insert(ModuleUse {
                        module: m,
                        distribution: Some(dist.clone()),
                        count: 0,
                        example: format!("{rel}:{line}"),
                    });
                    u.count += 1;
                }
                None if !own.contains(&m) => {
                    elsewhere.insert(m);
                }
                None => {}
            }
        }
    }
    let roots: Vec<super::deps::Req> = mods
        .values()
        .filter_map(|m| m.distribution.clone())
        .map(|name| super::deps::Req {
            name,
            extras: Vec::new(),
            marker: None,
        })
        .collect();
    let needed = super::deps::reachable(layer.requires, &roots, layer.env);
    let mut not_needed: Vec<(String, u64)> = layer
        .sizes
        .iter()
        .filter(|(d, _)| !needed.contains(*d))
        .map(|(d, b)| (d.clone(), *b))
        .collect();
    not_needed.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut providers: Vec<ProviderUse> = prov.into_values().collect();
    providers.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.provider.cmp(&b.provider))
    });
    Ok(ScanReport {
        dir: dir.to_owned(),
        files: files.len(),
        provider_names_from,
        providers_known: provider_names.len(),
        providers,
        modules: mods.into_values().collect(),
        modules_elsewhere: elsewhere.into_iter().collect(),
        distributions_needed: needed
            .into_iter()
            .filter(|d| layer.sizes.contains_key(d))
            .collect(),
        distributions_not_needed: not_needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers() -> BTreeSet<String> {
        [
            "openai",
            "anthropic",
            "bedrock",
            "azure",
            "gemini",
            "vertex_ai",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    fn bare() -> BTreeMap<String, String> {
        [("claude-", "anthropic"), ("gpt-", "openai")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect()
    }

    #[test]
    fn literals_table() {
        let table: [(&str, &[(usize, &str)]); 6] = [
            (r#"x = "a/b"; y = 'c'"#, &[(1, "a/b"), (1, "c")]),
            ("fn f<'a>(x: &'a str) -> \"s\" {}", &[(1, "s")]),
            (
                "const m = `line1\nline2`;\nz = \"q\"",
                &[(1, "line1\nline2"), (3, "q")],
            ),
            (r#""esc\"aped""#, &[(1, "esc\"aped")]),
            ("\"unclosed\nnext 'ok'", &[(2, "ok")]),
            ("c = 'x'; t = `a 'b'`", &[(1, "x"), (1, "a 'b'"), (1, "b")]),
        ];
        for (text, expected) in table {
            let got = string_literals(text, !text.starts_with("fn "));
            let expected: Vec<(usize, String)> =
                expected.iter().map(|(l, s)| (*l, s.to_string())).collect();
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn model_strings_table() {
        let (p, b) = (providers(), bare());
        let table = [
            ("anthropic/claude-3-5-sonnet-20241022", Some("anthropic")),
            ("openai/gpt-4o", Some("openai")),
            ("bedrock/anthropic.claude-v2", Some("bedrock")),
            ("vertex_ai/gemini-1.5-pro", Some("vertex_ai")),
            ("claude-3-haiku", Some("anthropic")),
            ("gpt-4o-mini", Some("openai")),
            ("gpt-", None),
            ("openai/", None),
            ("src/index.ts", None),
            ("openai/gpt 4", None),
            ("text/plain", None),
        ];
        for (lit, expected) in table {
            assert_eq!(provider_of_model(lit, &p, &b), expected, "{lit}");
        }
    }

    #[test]
    fn python_imports_table() {
        let table: [(&str, &[&str]); 11] = [
            ("import litellm", &["litellm"]),
            ("  import os.path, json as j", &["os", "json"]),
            ("from litellm.types import utils", &["litellm"]),
            ("from . import sibling", &[]),
            ("from .mod import x", &[]),
            ("import React from 'react';", &[]),
            ("import { x } from \"y\"", &[]),
            ("import * as fs from 'fs'", &[]),
            ("import 'side-effect';", &[]),
            ("important = 1", &[]),
            ("from __future__ import annotations", &["__future__"]),
        ];
        for (line, expected) in table {
            assert_eq!(python_imports(line), expected, "{line}");
        }
    }

    #[test]
    fn a_typescript_file_with_embedded_python() {
        let ts = r#"
import { spawn } from "child_process";
const litellm = require('litellm-js');
const code = `
import litellm
from tiktoken import get_encoding
resp = litellm.completion(model="anthropic/claude-3-5-sonnet", messages=[])
`;
await runPython(code, { model: 'bedrock/amazon.titan' });
const r = await litellm.completion({ custom_llm_provider: "azure" });
"#;
        let f = scan_text(ts, Lang::JavaScript, &providers(), &bare());
        let provs: Vec<&str> = f.providers.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(provs, ["anthropic", "bedrock", "azure"]);
        let mods: Vec<&str> = f.modules.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(mods, ["litellm", "tiktoken"], "require() is not Python");
        let rs =
            r#"let m = py.import("litellm")?; let t = PyModule::import(py, "tiktoken.core")?;"#;
        let f = scan_text(rs, Lang::Rust, &providers(), &bare());
        let mods: Vec<&str> = f.modules.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(mods, ["litellm", "tiktoken"]);
        let js = "const m = await import('litellm');";
        assert!(scan_text(js, Lang::JavaScript, &providers(), &bare())
            .modules
            .is_empty());
    }

    #[test]
    fn provider_enum_is_read_from_litellm() {
        let utils = "x = 1\nclass LlmProviders(str, Enum):\n    OPENAI = \"openai\"\n    \n    VERTEX_AI = 'vertex_ai'\n    # comment\n\nclass Other:\n    A = \"a\"\n";
        assert_eq!(providers_from_litellm(utils), ["openai", "vertex_ai"]);
    }
}

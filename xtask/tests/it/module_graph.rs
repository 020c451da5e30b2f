//! The module graph of `xtask/src` has no circle: every `crate::<module>` path points from one
//! top-level module to another, and following those arrows never leads back. Only `main.rs`
//! may name `flags`: commands call each other through option types, never through flags.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `main`, `flags`, `build`, ...: the first component below `src/`, without `.rs`.
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Drops `//` comments (doc comments included) so that prose naming a path is no arrow.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module a file's code names: `crate::a::...`, `crate::{a, b::c}`.
fn arrows(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of a group: the first word of each comma-separated part at depth 0.
            let mut depth = 0;
            let mut part_start = true;
            let mut word = String::new();
            for c in group.chars() {
                if c.is_alphanumeric() || c == '_' {
                    if part_start && depth == 0 {
                        word.push(c);
                    }
                    continue;
                }
                if !word.is_empty() {
                    out.insert(std::mem::take(&mut word));
                    part_start = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => part_start = true,
                    _ => {}
                }
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                out.insert(word);
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // module -> (module it names -> files that name it)
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let from = top_module(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        let entry = graph.entry(from.clone()).or_default();
        for to in arrows(&code_of(&text)) {
            if to != from {
                entry.entry(to).or_default().insert(rel.clone());
            }
        }
    }
    graph
}

/// A circle through `start`, if there is one: the modules in order, `start` first.
fn circle_through(
    graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    start: &str,
) -> Option<Vec<String>> {
    fn dfs(
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if dfs(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    dfs(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn the_parser_finds_every_arrow() {
    let got = arrows(&code_of(
        "use crate::{core::{Arch, Glibc}, spec::Spec, util};\nlet x = crate::build::zip::read();\n// crate::bench in prose\n",
    ));
    let want: BTreeSet<String> = ["build", "core", "spec", "util"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn top_level_modules_form_no_circle() {
    let graph = graph();
    assert!(graph.len() > 5, "found too few modules: {graph:?}");
    let mut circles = Vec::new();
    for module in graph.keys() {
        if let Some(circle) = circle_through(&graph, module) {
            let mut steps = Vec::new();
            for (i, from) in circle.iter().enumerate() {
                let to = &circle[(i + 1) % circle.len()];
                let files: Vec<_> = graph[from][to].iter().cloned().collect();
                steps.push(format!("{from} -> {to} ({})", files.join(", ")));
            }
            circles.push(steps.join("; "));
        }
    }
    assert!(
        circles.is_empty(),
        "the module graph has circles:\n  {}",
        circles.join("\n  ")
    );
}

#[test]
fn only_main_names_the_flags() {
    let graph = graph();
    let offenders: Vec<String> = graph
        .iter()
        .filter(|(from, _)| from.as_str() != "main")
        .filter_map(|(from, to)| {
            to.get("flags").map(|files| {
                format!(
                    "{from} ({})",
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "commands take option types, not flags; these modules name `flags`: {}",
        offenders.join(", ")
    );
}

//! Why the minimized layer failed a check, in terms of the files minimization removed.

use camino::{Utf8Path, Utf8PathBuf};

use super::*;

/// Why a check of the minimized layer failed, in terms of the files minimization removed.
pub fn explain(failures: &[(String, String)], plan: &Plan, site: &Utf8Path) -> String {
    let removed = &plan.delete;
    let mut lines = Vec::new();
    for (check, detail) in failures {
        let mut culprits: Vec<&Utf8PathBuf> = Vec::new();
        let mut hints: Vec<String> = Vec::new();
        for module in names_in(detail, "No module named '", "'")
            .into_iter()
            .chain(names_in(detail, "ModuleNotFoundError: ", " was removed"))
        {
            // The outermost removed module covering it knows the shortest way to keep it.
            if let Some(r) = plan
                .removed_modules
                .iter()
                .find(|r| module == r.module || module.starts_with(&format!("{}.", r.module)))
            {
                hints.push(r.hint.clone());
            }
            culprits.extend(removed.iter().filter(|p| {
                p.strip_prefix(site)
                    .ok()
                    .and_then(module_of)
                    .is_some_and(|m| m == module || m.starts_with(&format!("{module}.")))
            }));
        }
        for path in names_in(detail, "No such file or directory: '/opt/", "'") {
            culprits.extend(removed.iter().filter(|p| p.as_str() == path));
        }
        culprits.sort();
        culprits.dedup();
        if culprits.is_empty() {
            lines.push(format!(
                "{check} failed: {detail} (no removed file explains it)"
            ));
            continue;
        }
        let shown: Vec<&str> = culprits.iter().take(5).map(|p| p.as_str()).collect();
        let keep: Vec<String> = culprits
            .iter()
            .take(5)
            .map(|p| format!("\"{}\"", p.strip_prefix("python").unwrap_or(p).as_str()))
            .collect();
        hints.dedup();
        let how = if hints.is_empty() {
            format!("keep it with [minimize] keep = [{}]", keep.join(", "))
        } else {
            format!("to keep it {}", hints.join("; or "))
        };
        lines.push(format!(
            "removing {}{} broke {check}: {detail}; {how}",
            shown.join(", "),
            if culprits.len() > 5 {
                format!(" (and {} more)", culprits.len() - 5)
            } else {
                String::new()
            },
        ));
    }
    lines.join("\n  ")
}

/// Every substring of `text` between `start` and the next `end`.
fn names_in(text: &str, start: &str, end: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(start) {
        rest = &rest[i + start.len()..];
        if let Some(j) = rest.find(end) {
            out.push(rest[..j].to_owned());
            rest = &rest[j..];
        } else {
            break;
        }
    }
    out
}

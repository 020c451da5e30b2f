//! `[requirements] import-candidates`: alternative pins (`openai==2.30.0`) that `cargo xtask
//! bench` locks, builds with the spec's profile and times the import of, beside the spec's own
//! lock, so that the cheaper import can be chosen by measurement.
//!
//! A candidate is `NAME==VERSION`. One naming a top-level requirement replaces its pin; any
//! other becomes an extra constraint. It must be allowed by the spec's constraints on the same
//! distribution: a candidate the spec itself forbids is refused, not measured.

use anyhow::{bail, Result};

use super::index::{admits, Version};

/// One parsed candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// As the spec wrote it.
    pub text: String,
    /// The distribution, normalized (PEP 503).
    pub name: String,
    pub version: String,
}

impl Candidate {
    /// The spec's requirements with this candidate in them: (packages, constraints).
    pub fn apply(&self, packages: &[String], constraints: &[String]) -> (Vec<String>, Vec<String>) {
        let mut replaced = false;
        let packages = packages
            .iter()
            .map(|p| match split(p) {
                Some((name, head, _)) if normalize(name) == self.name => {
                    replaced = true;
                    format!("{head}=={}", self.version)
                }
                _ => p.clone(),
            })
            .collect();
        let mut constraints = constraints.to_vec();
        if !replaced {
            constraints.push(format!("{}=={}", self.name, self.version));
        }
        (packages, constraints)
    }

    /// Whether it names one of the top-level `packages` (and so replaces its pin).
    pub fn replaces_pin(&self, packages: &[String]) -> bool {
        packages
            .iter()
            .any(|p| split(p).is_some_and(|(name, _, _)| normalize(name) == self.name))
    }

    /// A folder name for its layer: `openai-2.30.0`.
    pub fn label(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// PEP 503: lowercase, runs of `-_.` as one `-`.
fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `name[extras]>=1,<2 ; marker` -> (name, `name[extras]`, `>=1,<2`).
/// The distributions whose versions a comparison of `candidates` shows: the spec's top-level
/// `packages` and every candidate's, normalized, each once, in that order.
pub fn shown_names(packages: &[String], candidates: &[Candidate]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let all = packages
        .iter()
        .filter_map(|p| split(p).map(|(name, _, _)| normalize(name)))
        .chain(candidates.iter().map(|c| c.name.clone()));
    for n in all {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

fn split(requirement: &str) -> Option<(&str, &str, &str)> {
    let req = requirement.split(';').next()?.trim();
    let name_end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(req.len());
    if name_end == 0 {
        return None;
    }
    let head_end = match req[name_end..].trim_start().strip_prefix('[') {
        Some(_) => req.find(']')? + 1,
        None => name_end,
    };
    Some((&req[..name_end], &req[..head_end], req[head_end..].trim()))
}

/// Parses and checks the candidates against the spec's constraints; the error names the
/// candidate and, when it is forbidden, the constraint.
pub fn parse(candidates: &[String], constraints: &[String]) -> Result<Vec<Candidate>> {
    let what = "[requirements] import-candidates";
    let mut out: Vec<Candidate> = Vec::new();
    for text in candidates {
        let malformed =
            || format!("{what}: `{text}` is not NAME==VERSION (such as \"openai==2.30.0\")");
        let Some((name, head, spec)) = split(text) else {
            bail!(malformed());
        };
        let version = spec.strip_prefix("==").map(str::trim).unwrap_or_default();
        if head != name || text.contains(';') || version.contains(['*', ',', '=', '<', '>']) {
            bail!(malformed());
        }
        let Some(parsed) = Version::parse(version) else {
            bail!(malformed());
        };
        let name = normalize(name);
        for c in constraints {
            if let Some((cname, _, cspec)) = split(c) {
                if normalize(cname) == name && !admits(cspec, &parsed) {
                    bail!("{what}: `{text}` is outside the spec's constraint `{c}` ([requirements] constraints)");
                }
            }
        }
        if out.iter().any(|o| o.name == name && o.version == version) {
            bail!("{what}: `{text}` is listed twice");
        }
        out.push(Candidate {
            text: text.clone(),
            name,
            version: version.to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_malformed_candidate_is_refused_naming_it() {
        for bad in [
            "openai",
            "openai>=2",
            "openai==2.*",
            "openai==two",
            "==2.0",
            "openai[x]==2.0",
            "openai==2.0; python_version>'3'",
        ] {
            let err = parse(&strings(&[bad]), &[]).expect_err(bad).to_string();
            assert!(
                err.contains(&format!("`{bad}` is not NAME==VERSION")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_candidate_outside_the_constraints_is_refused() {
        let constraints = strings(&["openai>=3.0,<3.53", "httpx<1"]);
        let err = parse(&strings(&["openai==2.30.0"]), &constraints)
            .expect_err("outside")
            .to_string();
        assert!(
            err.contains("`openai==2.30.0` is outside the spec's constraint `openai>=3.0,<3.53`"),
            "{err}"
        );
        let ok = parse(
            &strings(&["OpenAI==3.52.0", "litellm==1.78.7"]),
            &constraints,
        )
        .expect("inside");
        assert_eq!(ok[0].name, "openai");
        assert_eq!(ok[0].label(), "openai-3.52.0");
        assert!(parse(&strings(&["openai==3.52.0", "openai==3.52.0"]), &[]).is_err());
    }

    #[test]
    fn a_top_level_candidate_replaces_the_pin_and_others_constrain() {
        let c = parse(&strings(&["litellm==1.78.7", "openai==2.30.0"]), &[]).expect("parse");
        let packages = strings(&["litellm[caching]==1.110.2"]);
        let constraints = strings(&["openai>=2.20"]);
        assert!(c[0].replaces_pin(&packages) && !c[1].replaces_pin(&packages));
        let (p, k) = c[0].apply(&packages, &constraints);
        assert_eq!(p, ["litellm[caching]==1.78.7"]);
        assert_eq!(k, ["openai>=2.20"]);
        let (p, k) = c[1].apply(&packages, &constraints);
        assert_eq!(p, packages);
        assert_eq!(k, ["openai>=2.20", "openai==2.30.0"]);
    }

    #[test]
    fn the_comparison_shows_the_top_level_packages_and_the_candidates_each_once() {
        let c = parse(&strings(&["openai==2.30.0", "LiteLLM==1.78.7"]), &[]).expect("parse");
        let packages = strings(&["litellm[caching]==1.110.2", "Pydantic>=2"]);
        assert_eq!(
            shown_names(&packages, &c),
            ["litellm", "pydantic", "openai"]
        );
    }
}

//! Which distributions the requirements pull in: `Requires-Dist` of each METADATA, walked from
//! the spec's requirements (or, for a layer without a spec, from the distributions nothing
//! else requires). Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::python::marker;

/// A PEP 508 requirement, reduced to what the walk needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    /// Normalized (PEP 503).
    pub name: String,
    /// Normalized extras asked for: `litellm[proxy]`.
    pub extras: Vec<String>,
    pub marker: Option<String>,
}

/// Parses `name[extra,...] (>=1,<2) ; marker`; `None` when there is no name.
pub fn parse_requirement(s: &str) -> Option<Req> {
    let (spec, marker) = match s.split_once(';') {
        Some((a, m)) => (a, Some(m.trim().to_owned()).filter(|m| !m.is_empty())),
        None => (s, None),
    };
    let spec = spec.trim();
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(spec.len());
    let name = &spec[..end];
    if name.is_empty() {
        return None;
    }
    let rest = spec[end..].trim_start();
    let extras = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((inside, _)) => inside
            .split(',')
            .map(|e| crate::python::wheel::normalize(e.trim()))
            .filter(|e| !e.is_empty())
            .collect(),
        None => Vec::new(),
    };
    Some(Req {
        name: crate::python::wheel::normalize(name),
        extras,
        marker,
    })
}

/// The `Requires-Dist` values of a METADATA file (headers end at the first empty line).
pub fn requires_dist(metadata: &str) -> Vec<Req> {
    metadata
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("Requires-Dist:"))
        .filter_map(parse_requirement)
        .collect()
}

/// Replaces the marker variable `extra` (outside quotes) with a quoted literal, so that the
/// evaluator in `lock::marker`, which knows no extras, can decide `extra == "proxy"`.
fn with_extra(marker: &str, extra: &str) -> String {
    let mut out = String::with_capacity(marker.len() + extra.len());
    let mut quote: Option<char> = None;
    let chars: Vec<char> = marker.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            out.push(c);
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let starts_word = i == 0 || !is_word(chars[i - 1]);
        let word: String = chars[i..].iter().take_while(|c| is_word(**c)).collect();
        if starts_word && word == "extra" {
            out.push('"');
            out.push_str(extra);
            out.push('"');
            i += word.len();
        } else if !word.is_empty() {
            out.push_str(&word);
            i += word.len();
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether a requirement applies in `env` when its owner was asked for with `extras`.
/// A marker the evaluator cannot read counts as applying: better to call a distribution
/// needed than to suggest removing one that is.
pub fn marker_holds(marker: Option<&str>, extras: &[String], env: &marker::Env) -> bool {
    let Some(m) = marker else { return true };
    if !m.contains("extra") {
        return marker::evaluate(m, env).unwrap_or(true);
    }
    // With no extra asked for, `extra == "x"` is false; each extra asked for is tried in turn.
    std::iter::once(String::new())
        .chain(extras.iter().cloned())
        .any(|e| marker::evaluate(&with_extra(m, &e), env).unwrap_or(true))
}

/// Every distribution reachable from `roots`; `requires` maps a normalized name to its
/// `Requires-Dist`.
pub fn reachable(
    requires: &BTreeMap<String, Vec<Req>>,
    roots: &[Req],
    env: &marker::Env,
) -> BTreeSet<String> {
    let mut seen: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
    let mut stack: Vec<(String, Vec<String>)> = roots
        .iter()
        .filter(|r| marker_holds(r.marker.as_deref(), &[], env))
        .map(|r| (r.name.clone(), r.extras.clone()))
        .collect();
    while let Some((name, mut extras)) = stack.pop() {
        extras.sort();
        if !seen.insert((name.clone(), extras.clone())) {
            continue;
        }
        for r in requires.get(&name).into_iter().flatten() {
            if marker_holds(r.marker.as_deref(), &extras, env) {
                stack.push((r.name.clone(), r.extras.clone()));
            }
        }
    }
    seen.into_iter().map(|(n, _)| n).collect()
}

/// The distributions no other present distribution requires (without extras): for a layer
/// with no spec, these are what someone asked for.
pub fn roots_of(requires: &BTreeMap<String, Vec<Req>>, env: &marker::Env) -> Vec<String> {
    let required: BTreeSet<&str> = requires
        .iter()
        .flat_map(|(owner, reqs)| {
            reqs.iter()
                .filter(move |r| &r.name != owner && marker_holds(r.marker.as_deref(), &[], env))
                .map(|r| r.name.as_str())
        })
        .collect();
    requires
        .keys()
        .filter(|n| !required.contains(n.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> marker::Env {
        marker::Env {
            machine: "x86_64".into(),
            python_version: "3.11".into(),
            python_full_version: "3.11.16".into(),
        }
    }

    #[test]
    fn requirements_parse() {
        let table = [
            ("litellm==1.78.7", Some(("litellm", vec![], None))),
            (
                "litellm[proxy, Extra_Two]>=1.0",
                Some(("litellm", vec!["proxy", "extra-two"], None)),
            ),
            (
                "Typing_Extensions (>=4.0) ; python_version < \"3.13\"",
                Some((
                    "typing-extensions",
                    vec![],
                    Some("python_version < \"3.13\""),
                )),
            ),
            ("zope.interface", Some(("zope-interface", vec![], None))),
            ("  ", None),
        ];
        for (text, expected) in table {
            let got = parse_requirement(text);
            let expected = expected.map(|(n, e, m)| Req {
                name: n.to_owned(),
                extras: e.into_iter().map(str::to_owned).collect(),
                marker: m.map(str::to_owned),
            });
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn extras_in_markers() {
        assert_eq!(
            with_extra("extra == 'proxy'", "proxy"),
            "\"proxy\" == 'proxy'"
        );
        assert_eq!(
            with_extra("extra_x == 'extra' and extra=='a'", "a"),
            "extra_x == 'extra' and \"a\"=='a'"
        );
        let table: [(&str, &[&str], bool); 5] = [
            ("extra == \"proxy\"", &[], false),
            ("extra == \"proxy\"", &["proxy"], true),
            (
                "extra == \"proxy\" and python_version < \"3.9\"",
                &["proxy"],
                false,
            ),
            ("python_version >= \"3.8\"", &[], true),
            ("frobnicate == \"x\"", &[], true),
        ];
        for (m, extras, expected) in table {
            let extras: Vec<String> = extras.iter().map(|e| e.to_string()).collect();
            assert_eq!(marker_holds(Some(m), &extras, &env()), expected, "{m}");
        }
    }

    #[test]
    fn walks_from_roots_with_extras_and_finds_roots() {
        let metadata = |reqs: &[&str]| -> Vec<Req> {
            reqs.iter().filter_map(|r| parse_requirement(r)).collect()
        };
        let mut requires = BTreeMap::new();
        requires.insert(
            "app".to_owned(),
            metadata(&[
                "lib",
                "proxy-dep ; extra == 'proxy'",
                "winonly ; sys_platform == 'win32'",
            ]),
        );
        requires.insert("lib".to_owned(), metadata(&["app"]));
        requires.insert("proxy-dep".to_owned(), vec![]);
        requires.insert("winonly".to_owned(), vec![]);
        requires.insert("stray".to_owned(), vec![]);
        let plain = reachable(&requires, &metadata(&["app"]), &env());
        assert_eq!(plain.into_iter().collect::<Vec<_>>(), ["app", "lib"]);
        let proxy = reachable(&requires, &metadata(&["app[proxy]"]), &env());
        assert!(proxy.contains("proxy-dep"));
        assert_eq!(
            roots_of(&requires, &env()),
            ["proxy-dep", "stray", "winonly"],
            "a cycle (app <-> lib) has no root of its own; extras-only and unreachable ones do"
        );
    }
}

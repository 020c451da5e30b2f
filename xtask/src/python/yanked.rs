//! Yanked releases (PEP 592), as the index's simple JSON API (PEP 691) reports them per file:
//! `"yanked": false`, `true`, or a string, the reason. uv still installs a yanked release when a
//! requirement pins it with `==`, so `cargo xtask lock` asks the index about every locked file
//! and refuses a yanked one unless the spec accepts it with a reason.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::python::index::Page;

/// The yanked files of a project page: file name -> the index's reason (empty when it gave none).
pub fn yanked_files(page_json: &str) -> Result<BTreeMap<String, String>> {
    let page = Page::parse(page_json)?;
    Ok(page
        .files
        .iter()
        .filter_map(|f| Some((f.filename.clone(), f.yanked_reason()?.to_owned())))
        .collect())
}

/// A locked file the index says is yanked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YankedFile {
    pub package: String,
    pub version: String,
    pub file: String,
    /// The index's reason; empty when it gave none.
    pub reason: String,
}

/// Refuses yanked files the spec does not accept (`[requirements] allow-yanked =
/// { "pkg==1.0" = "why" }`); returns a note for each accepted one.
pub fn check(found: &[YankedFile], allow: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let key = |y: &YankedFile| {
        format!(
            "{}=={}",
            crate::python::wheel::normalize(&y.package),
            y.version
        )
    };
    let allowed: BTreeMap<String, &String> = allow
        .iter()
        .map(|(k, v)| {
            let (name, version) = k.split_once("==").unwrap_or((k, ""));
            (
                format!(
                    "{}=={}",
                    crate::python::wheel::normalize(name.trim()),
                    version.trim()
                ),
                v,
            )
        })
        .collect();
    let why = |y: &YankedFile| {
        if y.reason.is_empty() {
            "the index gives no reason".to_owned()
        } else {
            format!("the index says: {}", y.reason)
        }
    };
    let mut notes = Vec::new();
    let mut refused = Vec::new();
    for y in found {
        match allowed.get(&key(y)) {
            Some(accepted) => notes.push(format!(
                "{} {} ({}) is yanked ({}); accepted by the spec: {accepted}",
                y.package,
                y.version,
                y.file,
                why(y)
            )),
            None => refused.push(format!(
                "{} {} ({}) is yanked: {}",
                y.package,
                y.version,
                y.file,
                why(y)
            )),
        }
    }
    if !refused.is_empty() {
        bail!(
            "the lock would hold yanked releases:\n  {}\nchoose another version, or accept one with a reason in the spec: [requirements] allow-yanked = {{ \"pkg==version\" = \"why it is fine\" }}",
            refused.join("\n  ")
        );
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_and_a_reason_are_yanked_false_is_not() {
        let page = r#"{"meta": {"api-version": "1.1"}, "name": "litellm", "files": [
            {"filename": "litellm-0.1.2291-py3-none-any.whl", "hashes": {}, "yanked": true},
            {"filename": "litellm-1.0.0-py3-none-any.whl", "hashes": {}, "yanked": "broken metadata"},
            {"filename": "litellm-1.78.7-py3-none-any.whl", "hashes": {}, "yanked": false},
            {"filename": "litellm-1.78.8-py3-none-any.whl", "hashes": {}}
        ]}"#;
        let y = yanked_files(page).unwrap();
        assert_eq!(y.len(), 2);
        assert_eq!(y["litellm-0.1.2291-py3-none-any.whl"], "");
        assert_eq!(y["litellm-1.0.0-py3-none-any.whl"], "broken metadata");
        assert!(yanked_files("<html>").is_err());
    }

    #[test]
    fn a_yanked_release_is_refused_unless_the_spec_accepts_it() {
        let found = [YankedFile {
            package: "Some_Pkg".into(),
            version: "1.0".into(),
            file: "some_pkg-1.0-py3-none-any.whl".into(),
            reason: "broken metadata".into(),
        }];
        let err = check(&found, &BTreeMap::new()).unwrap_err().to_string();
        assert!(
            err.contains("Some_Pkg 1.0") && err.contains("the index says: broken metadata"),
            "{err}"
        );
        assert!(err.contains("allow-yanked"), "{err}");
        let allow = BTreeMap::from([("some-pkg==1.0".to_owned(), "we need its API".to_owned())]);
        let notes = check(&found, &allow).unwrap();
        assert!(
            notes[0].contains("accepted by the spec: we need its API")
                && notes[0].contains("broken metadata"),
            "{notes:?}"
        );
        let other = BTreeMap::from([("some-pkg==2.0".to_owned(), "x".to_owned())]);
        assert!(check(&found, &other).is_err());
    }
}

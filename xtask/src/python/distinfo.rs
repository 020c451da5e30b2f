//! Reading a distribution's `.dist-info`: `METADATA` (name, version, license) and `RECORD`
//! (every file with its hash), and telling license files apart. The one reader of both formats.

use camino::{Utf8Path, Utf8PathBuf};

/// `Name` and `Version` from the header of a METADATA text (core metadata, RFC 822 style:
/// the header ends at the first empty line).
pub fn name_version(metadata: &str) -> Option<(String, String)> {
    let mut name = None;
    let mut version = None;
    for line in metadata.lines().take_while(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Version:") {
            version = Some(v.trim().to_owned());
        }
    }
    Some((name?, version?))
}

/// The header fields of a METADATA text, in order, continuation lines (which start with
/// whitespace) joined to their field with a newline.
pub fn header_fields(metadata: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in metadata.lines().take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// What a distribution's METADATA says about its license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum License {
    /// `License-Expression` (core metadata 2.4): an SPDX expression.
    Expression(String),
    /// A name: the `License` field, or a Trove `License ::` classifier.
    Name(String),
}

/// The license, by the best field there is: `License-Expression`; else a short `License`
/// (its first line: some distributions paste the whole text there); else the specific
/// `License ::` classifiers (`MIT License` of `License :: OSI Approved :: MIT License`).
/// Empty when METADATA says nothing.
pub fn licenses(metadata: &str) -> Vec<License> {
    let fields = header_fields(metadata);
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    if let Some(e) = get("License-Expression") {
        return vec![License::Expression(e.to_owned())];
    }
    let classifiers: Vec<License> = fields
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Classifier"))
        .filter_map(|(_, v)| v.strip_prefix("License ::"))
        .map(|rest| rest.rsplit("::").next().unwrap_or(rest).trim())
        // `License :: OSI Approved` alone names no license.
        .filter(|name| !name.is_empty() && *name != "OSI Approved")
        .map(|name| License::Name(name.to_owned()))
        .collect();
    let short = get("License").filter(|l| !l.eq_ignore_ascii_case("UNKNOWN"));
    match short {
        Some(l) if !l.contains('\n') && l.len() <= 100 => vec![License::Name(l.to_owned())],
        Some(_) if !classifiers.is_empty() => classifiers,
        Some(l) => {
            let first = l.lines().next().unwrap_or_default().trim();
            vec![License::Name(first.chars().take(100).collect())]
        }
        None => classifiers,
    }
}

/// One line of a RECORD file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    /// As written: relative to the folder holding the `.dist-info`, `/`-separated.
    pub path: String,
    /// The urlsafe-base64 sha256 without padding, when the line has one.
    pub sha256: Option<String>,
}

/// The entries of a RECORD text (CSV: `path,hash,size`; a path holding a comma is quoted).
pub fn parse_record(text: &str) -> Vec<RecordEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let (path, rest) = match line.strip_prefix('"') {
                Some(quoted) => {
                    let (path, rest) = quoted.split_once('"')?;
                    (path.to_owned(), rest.trim_start_matches(','))
                }
                // Hash and size are the last two fields.
                None => {
                    let mut fields = line.rsplitn(3, ',');
                    let _size = fields.next();
                    let hash = fields.next().unwrap_or_default();
                    let path = fields.next()?;
                    return Some(RecordEntry {
                        path: path.to_owned(),
                        sha256: hash.strip_prefix("sha256=").map(str::to_owned),
                    });
                }
            };
            let hash = rest.split(',').next().unwrap_or_default();
            Some(RecordEntry {
                path,
                sha256: hash.strip_prefix("sha256=").map(str::to_owned),
            })
        })
        .collect()
}

/// The paths of a RECORD, relative to the site folder: `../../bin/x` resolved, paths that
/// leave the site folder dropped.
pub fn record_paths(record: &str) -> Vec<Utf8PathBuf> {
    parse_record(record)
        .into_iter()
        .filter_map(|e| {
            let mut parts: Vec<&str> = Vec::new();
            for c in e.path.split('/') {
                match c {
                    "" | "." => {}
                    ".." => {
                        parts.pop()?;
                    }
                    c => parts.push(c),
                }
            }
            Some(Utf8PathBuf::from(parts.join("/")))
        })
        .collect()
}

/// A license text by its name (`LICENSE`, `COPYING.txt`, `NOTICE`, `AUTHORS.rst`, ...) or its
/// folder (`licenses/`, PEP 639's `.dist-info/licenses/`).
pub fn is_license(path: &Utf8Path) -> bool {
    let lower = path.file_name().unwrap_or_default().to_ascii_lowercase();
    ["license", "licence", "copying", "notice", "authors"]
        .iter()
        .any(|p| lower.starts_with(p))
        || path.components().any(|c| {
            let c = c.as_str().to_ascii_lowercase();
            c == "licenses" || c == "licences"
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_header_only() {
        let text = "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\nName: not-this\n";
        assert_eq!(name_version(text), Some(("six".into(), "1.16.0".into())));
        assert_eq!(name_version("Name: x\n"), None);
    }

    #[test]
    fn the_license_from_the_best_field_there_is() {
        let m = |h: &str| licenses(&format!("Metadata-Version: 2.4\nName: x\n{h}\nbody: no\n"));
        assert_eq!(
            m("License-Expression: Apache-2.0 AND MIT\nLicense: ignored"),
            [License::Expression("Apache-2.0 AND MIT".into())]
        );
        assert_eq!(
            m("License: MIT\nClassifier: License :: OSI Approved :: MIT License"),
            [License::Name("MIT".into())]
        );
        assert_eq!(
            m("Classifier: License :: OSI Approved\nClassifier: License :: OSI Approved :: BSD License"),
            [License::Name("BSD License".into())]
        );
        // The whole text pasted into `License`: the classifier says it better ...
        let pasted =
            "License: Copyright (c) 2020 Someone\n        \n        Permission is hereby granted";
        assert_eq!(
            m(&format!(
                "{pasted}\nClassifier: License :: OSI Approved :: MIT License"
            )),
            [License::Name("MIT License".into())]
        );
        // ... and without one, its first line is all there is.
        assert_eq!(
            m(pasted),
            [License::Name("Copyright (c) 2020 Someone".into())]
        );
        assert_eq!(m("License: UNKNOWN"), []);
        assert_eq!(m("Summary: nothing"), []);
    }

    #[test]
    fn record_lines() {
        let got = parse_record(
            "six.py,sha256=abc,100\n\"we,ird.py\",sha256=def,3\nsix-1.0.dist-info/RECORD,,\n",
        );
        assert_eq!(
            got,
            [
                RecordEntry {
                    path: "six.py".into(),
                    sha256: Some("abc".into())
                },
                RecordEntry {
                    path: "we,ird.py".into(),
                    sha256: Some("def".into())
                },
                RecordEntry {
                    path: "six-1.0.dist-info/RECORD".into(),
                    sha256: None
                },
            ]
        );
    }

    #[test]
    fn licenses_by_name_and_folder() {
        for (p, want) in [
            ("x-1.dist-info/licenses/LICENSE", true),
            ("pkg/COPYING.txt", true),
            ("pkg/Licences/x", true),
            ("pkg/license_check.py", true),
            ("pkg/core.py", false),
        ] {
            assert_eq!(is_license(Utf8Path::new(p)), want, "{p}");
        }
    }
}

//! The index's simple JSON API (PEP 691): one project page lists every file with its
//! `yanked` flag (PEP 592) and `requires-python`. `lock` reads it for the yanked check and,
//! when a requirement has no wheel for the target, to say which versions would fit.

use std::cmp::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::python::wheel::{Target, WheelName};

/// One project page (the fields used here).
#[derive(Debug, Deserialize)]
pub struct Page {
    pub files: Vec<IndexFile>,
}

/// One file of a project page.
#[derive(Debug, Deserialize)]
pub struct IndexFile {
    pub filename: String,
    #[serde(default)]
    pub yanked: YankedField,
    #[serde(default, rename = "requires-python")]
    pub requires_python: Option<String>,
}

/// `false`, `true` or the reason.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum YankedField {
    #[default]
    Absent,
    Flag(bool),
    Reason(String),
}

impl IndexFile {
    /// The index's reason when the file is yanked (empty when it gave none), else `None`.
    pub fn yanked_reason(&self) -> Option<&str> {
        match &self.yanked {
            YankedField::Flag(true) => Some(""),
            YankedField::Reason(r) => Some(r),
            YankedField::Flag(false) | YankedField::Absent => None,
        }
    }
}

impl Page {
    pub fn parse(json: &str) -> Result<Page> {
        serde_json::from_str(json).context("the index's project page is not PEP 691 JSON")
    }

    /// The newest final release with a wheel for `target` whose `requires-python` admits
    /// `python` (e.g. `3.11.16`); yanked files and pre- or dev releases do not count.
    pub fn newest_fitting(&self, target: &Target, python: &str) -> Option<String> {
        let python = Version::parse(python)?;
        self.files
            .iter()
            .filter(|f| f.yanked_reason().is_none())
            .filter(|f| {
                f.requires_python
                    .as_deref()
                    .is_none_or(|spec| admits(spec, &python))
            })
            .filter_map(|f| WheelName::parse(&f.filename))
            .filter(|w| w.score(target).is_some())
            .filter_map(|w| Some((Version::parse(&w.version)?, w.version)))
            .filter(|(v, _)| v.is_final())
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, s)| s)
    }

    /// The newest final release with any wheel, as its file names spell it.
    pub fn newest(&self) -> Option<String> {
        self.files
            .iter()
            .filter_map(|f| WheelName::parse(&f.filename))
            .filter_map(|w| Some((Version::parse(&w.version)?, w.version)))
            .filter(|(v, _)| v.is_final())
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, s)| s)
    }

    /// Every `py-abi-platform` tag of the wheels of `version`, sorted.
    pub fn tags_of(&self, version: &str) -> Vec<String> {
        let want = Version::parse(version);
        let mut tags: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| WheelName::parse(&f.filename))
            .filter(|w| want.is_some() && Version::parse(&w.version) == want)
            .flat_map(|w| w.tags())
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }
}

/// The index uv resolves against: `UV_DEFAULT_INDEX`, `UV_INDEX_URL`, `PIP_INDEX_URL`, else PyPI.
pub fn index_url() -> String {
    ["UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "https://pypi.org/simple/".to_owned())
}

/// Fetches one project's page as PEP 691 JSON.
pub fn fetch_page(index: &str, name: &str) -> Result<String> {
    let url = format!(
        "{}/{}/",
        index.trim_end_matches('/'),
        crate::python::wheel::normalize(name)
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    agent
        .get(&url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .and_then(|mut r| r.body_mut().with_config().limit(64 << 20).read_to_string())
        .with_context(|| format!("fetching the index's page {url}"))
}

/// A PEP 440 version, as far as ordering releases needs: epoch, release, pre, post, dev
/// (local versions are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    /// `(0, n)` a, `(1, n)` b, `(2, n)` rc.
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let s = s.split('+').next().unwrap_or_default();
        let (epoch, rest) = match s.split_once('!') {
            Some((e, r)) => (e.parse().ok()?, r),
            None => (0, s),
        };
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (release, mut tail) = rest.split_at(end);
        let release = release.trim_end_matches('.');
        let release: Vec<u64> = release
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let mut v = Version {
            epoch,
            release,
            pre: None,
            post: None,
            dev: None,
        };
        // Each suffix: an optional separator, a word, an optional number.
        while !tail.is_empty() {
            tail = tail.trim_start_matches(['.', '-', '_']);
            let word_end = tail
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(tail.len());
            let (word, rest) = tail.split_at(word_end);
            let rest = rest.trim_start_matches(['.', '-', '_']);
            let num_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n: u64 = rest[..num_end].parse().unwrap_or(0);
            tail = &rest[num_end..];
            match word {
                "a" | "alpha" => v.pre = Some((0, n)),
                "b" | "beta" => v.pre = Some((1, n)),
                "rc" | "c" | "pre" | "preview" => v.pre = Some((2, n)),
                "post" | "rev" | "r" => v.post = Some(n),
                "dev" => v.dev = Some(n),
                // `1.0-1`: an implicit post release.
                "" if num_end > 0 => v.post = Some(n),
                _ => return None,
            }
        }
        Some(v)
    }

    /// Neither a pre- nor a dev release.
    pub fn is_final(&self) -> bool {
        self.pre.is_none() && self.dev.is_none()
    }

    fn release_padded(&self, len: usize) -> Vec<u64> {
        let mut r = self.release.clone();
        r.resize(len.max(r.len()), 0);
        r
    }

    /// The sort key of PEP 440: a dev release before its pre releases, those before the
    /// final, the final before its post releases.
    fn key(&self, len: usize) -> SortKey {
        let pre = match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => (0, 0, 0),
            (Some((kind, n)), _, _) => (1, u64::from(kind), n),
            _ => (2, 0, 0),
        };
        let post = self.post.map_or((0, 0), |n| (1, n));
        let dev = self.dev.map_or((1, 0), |n| (0, n));
        (self.epoch, self.release_padded(len), pre, post, dev)
    }
}

/// Epoch, release, (phase, pre kind, pre number), (has post, post), (not dev, dev).
type SortKey = (u64, Vec<u64>, (u8, u64, u64), (u8, u64), (u8, u64));

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.release.len().max(other.release.len());
        self.key(len).cmp(&other.key(len))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether a PEP 440 specifier set such as `>=3.10, <3.16` admits `v`. A clause this
/// reader cannot parse admits everything: the resolver (uv) is the judge of record, this
/// only suggests a version.
pub fn admits(spec: &str, v: &Version) -> bool {
    spec.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .all(|clause| {
            let op_end = clause
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(clause.len());
            let (op, rhs) = clause.split_at(op_end);
            let op = op.trim();
            if let Some(prefix) = rhs.trim().strip_suffix(".*") {
                let Some(p) = Version::parse(prefix) else {
                    return true;
                };
                let matches = v.release_padded(p.release.len())[..p.release.len()] == p.release[..];
                return match op {
                    "==" => matches,
                    "!=" => !matches,
                    _ => true,
                };
            }
            let Some(r) = Version::parse(rhs) else {
                return true;
            };
            match op {
                "==" | "===" => *v == r || v.cmp(&r) == Ordering::Equal,
                "!=" => v.cmp(&r) != Ordering::Equal,
                "<" => *v < r,
                "<=" => *v <= r,
                ">" => *v > r,
                ">=" => *v >= r,
                // `~=3.8.1`: >= 3.8.1 and == 3.8.*.
                "~=" => {
                    let n = r.release.len().saturating_sub(1).max(1);
                    *v >= r && v.release_padded(n)[..n] == r.release_padded(n)[..n]
                }
                _ => true,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Arch, Glibc};

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_order_as_pep_440_says() {
        let mut list = [
            "1.0.post1",
            "1.0",
            "1.0rc1",
            "1.0.dev0",
            "1.0a2",
            "0.9",
            "1.0b1",
            "1!0.1",
            "1.0.1",
        ]
        .map(v)
        .to_vec();
        list.sort();
        let names: Vec<String> = list.iter().map(|x| format!("{x:?}")).collect();
        assert_eq!(list[0], v("0.9"), "{names:?}");
        assert_eq!(
            list[1..8],
            [
                "1.0.dev0",
                "1.0a2",
                "1.0b1",
                "1.0rc1",
                "1.0",
                "1.0.post1",
                "1.0.1"
            ]
            .map(v)
        );
        assert_eq!(list[8], v("1!0.1"));
        assert_eq!(v("1.110.2").cmp(&v("1.91.5")), Ordering::Greater);
        assert_eq!(v("1.0").cmp(&v("1.0.0")), Ordering::Equal);
        assert!(!v("1.107.0rc2").is_final() && !v("1.107.0.dev3").is_final());
        assert!(v("2.9.0.post0").is_final());
        assert_eq!(Version::parse("not-a-version"), None);
    }

    #[test]
    fn requires_python_specifiers() {
        let py = v("3.11.16");
        for (spec, want) in [
            (">=3.10, <3.16", true),
            (">=3.12", false),
            ("<3.11", false),
            ("<=3.11", false),
            ("==3.11.*", true),
            ("!=3.11.*", false),
            (">=3.8,!=3.9.*", true),
            ("~=3.8", true),
            ("~=3.8.1", false),
            (">=3.7, <4", true),
            ("", true),
        ] {
            assert_eq!(admits(spec, &py), want, "{spec}");
        }
    }

    /// Part of litellm's page (2026-12-01): 1.110.2 ships glibc 2.28 wheels only, 1.91.5 is
    /// the last pure-Python release; a newer pre-release, a yanked file and a wheel for
    /// another Python are there to be skipped.
    const PAGE: &str = r#"{"meta": {"api-version": "1.1"}, "name": "litellm", "files": [
        {"filename": "litellm-1.91.4-py3-none-any.whl", "hashes": {}, "requires-python": ">=3.8, !=2.7.*, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*, !=3.4.*, !=3.5.*, !=3.6.*, !=3.7.*", "yanked": false},
        {"filename": "litellm-1.91.5-py3-none-any.whl", "hashes": {}, "requires-python": ">=3.9, <4.0", "yanked": false},
        {"filename": "litellm-1.91.5.tar.gz", "hashes": {}, "requires-python": ">=3.9, <4.0", "yanked": false},
        {"filename": "litellm-1.92.0-py3-none-any.whl", "hashes": {}, "requires-python": ">=3.12", "yanked": false},
        {"filename": "litellm-1.93.0-py3-none-any.whl", "hashes": {}, "yanked": "broken metadata"},
        {"filename": "litellm-1.93.1-cp311-cp311-linux_x86_64.whl", "hashes": {}, "yanked": false},
        {"filename": "litellm-1.107.0rc2-py3-none-any.whl", "hashes": {}, "yanked": false},
        {"filename": "litellm-1.110.2-cp310-abi3-manylinux_2_28_x86_64.whl", "hashes": {}, "requires-python": ">=3.10, <3.16", "yanked": false},
        {"filename": "litellm-1.110.2-cp310-abi3-manylinux_2_28_aarch64.whl", "hashes": {}, "requires-python": ">=3.10, <3.16", "yanked": false},
        {"filename": "litellm-1.110.2-cp310-abi3-musllinux_1_2_x86_64.whl", "hashes": {}, "requires-python": ">=3.10, <3.16", "yanked": false},
        {"filename": "litellm-1.110.2.tar.gz", "hashes": {}, "requires-python": ">=3.10, <3.16", "yanked": false}
    ]}"#;

    fn target(arch: Arch, minor: u32) -> Target {
        Target {
            arch,
            glibc: Glibc { major: 2, minor },
            py_minor: 11,
        }
    }

    #[test]
    fn the_newest_version_that_fits_the_target() {
        let page = Page::parse(PAGE).unwrap();
        for arch in Arch::ALL {
            assert_eq!(
                page.newest_fitting(&target(arch, 26), "3.11.16").as_deref(),
                Some("1.91.5"),
                "{arch}"
            );
            assert_eq!(
                page.newest_fitting(&target(arch, 34), "3.11.16").as_deref(),
                Some("1.110.2"),
                "{arch}"
            );
        }
        assert_eq!(
            page.newest_fitting(&target(Arch::X86_64, 26), "3.12.1")
                .as_deref(),
            Some("1.92.0")
        );
        assert_eq!(page.newest().as_deref(), Some("1.110.2"));
        assert_eq!(
            page.tags_of("1.110.2"),
            [
                "cp310-abi3-manylinux_2_28_aarch64",
                "cp310-abi3-manylinux_2_28_x86_64",
                "cp310-abi3-musllinux_1_2_x86_64"
            ]
        );
        assert!(Page::parse("<html>").is_err());
    }
}

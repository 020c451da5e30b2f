//! Where a download comes from: an `http(s)://` URL, a local `file://` URL or a plain path, and
//! the checks on the names a cache entry is stored under.

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;

/// Where a file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    Http(String),
    Path(Utf8PathBuf),
}

/// A URL or a path; `file://` URLs become paths.
pub(super) fn parse_source(source: &str) -> Result<Source> {
    if source.starts_with("http://") || source.starts_with("https://") {
        return Ok(Source::Http(source.to_owned()));
    }
    if let Some(rest) = source.strip_prefix("file://") {
        // `file:///abs/path` and `file://localhost/abs/path`; other hosts are not local.
        let path = if rest.starts_with('/') {
            rest
        } else if let Some(path) = rest.strip_prefix("localhost") {
            path
        } else {
            bail!("{source}: only local file:// URLs are supported (file:///path)");
        };
        return Ok(Source::Path(Utf8PathBuf::from(
            percent_decode(path).with_context(|| format!("reading {source}"))?,
        )));
    }
    if let Some((scheme, _)) = source.split_once("://") {
        bail!("{source}: unsupported URL scheme `{scheme}` (expected http, https or file)");
    }
    Ok(Source::Path(Utf8PathBuf::from(source)))
}

/// Decodes `%XX` escapes, as file URLs write spaces and `+`.
fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .context("a `%` escape is cut short")?;
            let hex = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.context("a `%` escape is not two hex digits")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("the decoded path is not UTF-8")
}

/// Cache folder and file names come from specs and URLs: one plain path component only.
pub(super) fn check_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("{what} `{name}` is not a plain file name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert_eq!(
            parse_source("https://x/y.whl").expect("https"),
            Source::Http("https://x/y.whl".into())
        );
        assert_eq!(
            parse_source("file:///a%20b/c%2Bd.tar.gz").expect("file url"),
            Source::Path("/a b/c+d.tar.gz".into())
        );
        assert_eq!(
            parse_source("file://localhost/a").expect("localhost"),
            Source::Path("/a".into())
        );
        assert!(parse_source("file://elsewhere/a").is_err());
        assert!(parse_source("ftp://x/y").is_err());
        assert!(percent_decode("%2").is_err());
        assert!(percent_decode("%zz").is_err());
    }

    #[test]
    fn names_are_one_plain_component() {
        assert!(check_name("a.tar.gz", "file name").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(check_name(bad, "file name").is_err(), "{bad:?}");
        }
    }
}

//! Step "patch": the spec's `[[patch]]` entries, unified diffs against single installed files.
//! A diff applies only to the pristine file (its sha256 is the one RECORD names), every context
//! and removed line must match exactly (no fuzz, no offsets), and RECORD then names the new
//! hash and size, so that verify's and analyze's RECORD checks stay true. Nothing is applied
//! unless the spec lists it.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::build::plan::ChosenWheel;
use crate::core::{AppliedPatch, Owners};
use crate::python::wheel::normalize;
use crate::spec::Spec;

/// A patch as the plan records it: which file of which locked version, and the diff's hash.
#[derive(Debug, Clone, Serialize)]
pub struct PatchPlan {
    pub distribution: String,
    /// The locked version the diff is applied to.
    pub version: String,
    pub file: Utf8PathBuf,
    /// As the spec names it, and where it was read.
    pub diff: Utf8PathBuf,
    pub diff_path: Utf8PathBuf,
    pub diff_sha256: String,
    pub reason: String,
}

/// The plan's patches: each diff read and hashed (the hash is part of the plan, so a changed
/// diff is a changed plan), each distribution one the lock installs for this target.
pub fn resolve(spec: &Spec, wheels: &[ChosenWheel]) -> Result<Vec<PatchPlan>> {
    spec.patch
        .iter()
        .map(|p| {
            let Some(wheel) = wheels
                .iter()
                .find(|w| normalize(&w.package) == normalize(&p.distribution))
            else {
                bail!(
                    "[[patch]] {}: distribution {} is not in the lock {} for this target",
                    p.file,
                    p.distribution,
                    spec.lock_path()
                );
            };
            let diff_path = spec.data_path(&p.diff);
            let bytes = fs_err::read(&diff_path)
                .with_context(|| format!("reading the diff of [[patch]] {}", p.file))?;
            Ok(PatchPlan {
                distribution: p.distribution.clone(),
                version: wheel.version.clone(),
                file: p.file.clone(),
                diff: p.diff.clone(),
                diff_path,
                diff_sha256: crate::util::sha256_hex(&bytes),
                reason: p.reason.clone(),
            })
        })
        .collect()
}

/// Applies every patch of the plan to the installed tree, in spec order.
pub fn apply_all(
    patches: &[PatchPlan],
    stage: &Utf8Path,
    owners: &Owners,
) -> Result<Vec<AppliedPatch>> {
    patches
        .iter()
        .map(|p| {
            apply_one(p, stage, owners).with_context(|| {
                format!(
                    "[[patch]] {} {} {} ({})",
                    p.distribution, p.version, p.file, p.diff
                )
            })
        })
        .collect()
}

fn apply_one(p: &PatchPlan, stage: &Utf8Path, owners: &Owners) -> Result<AppliedPatch> {
    let site = stage.join(&owners.site_packages);
    let record_rel = record_of(owners, &p.distribution)?;
    let record_path = site.join(&record_rel);
    let record = fs_err::read_to_string(&record_path)?;
    let expected = crate::python::distinfo::parse_record(&record)
        .into_iter()
        .find(|e| e.path == p.file.as_str())
        .with_context(|| format!("{record_rel} does not list {}", p.file))?
        .sha256
        .with_context(|| format!("{record_rel} gives no sha256 for {}", p.file))?;
    let target = site.join(&p.file);
    let original = fs_err::read(&target)?;
    let found = record_hash(&original);
    if found != expected {
        bail!(
            "not the pristine file of {} {}: its sha256 is {found}, RECORD says {expected}",
            p.distribution,
            p.version
        );
    }
    let diff = fs_err::read(&p.diff_path)?;
    if crate::util::sha256_hex(&diff) != p.diff_sha256 {
        bail!("{} changed since the plan was made", p.diff_path);
    }
    let original = text(original, &p.file)?;
    let diff = text(diff, &p.diff)?;
    let patched = apply_diff(&original, &diff)?;
    crate::util::rewrite_file(&target, patched.as_bytes())?;
    let new_record = update_record(&record, p.file.as_str(), patched.as_bytes())?;
    crate::util::rewrite_file(&record_path, new_record.as_bytes())?;
    Ok(AppliedPatch {
        distribution: p.distribution.clone(),
        version: p.version.clone(),
        file: p.file.to_string(),
        diff: p.diff.to_string(),
        diff_sha256: p.diff_sha256.clone(),
        reason: p.reason.clone(),
    })
}

/// The `.dist-info/RECORD` of `distribution`, relative to site-packages.
fn record_of(owners: &Owners, distribution: &str) -> Result<Utf8PathBuf> {
    let index = owners
        .dists
        .iter()
        .position(|(name, _, _)| normalize(name) == normalize(distribution))
        .with_context(|| format!("{distribution} is not installed"))?;
    owners
        .files
        .iter()
        .find(|(path, i)| {
            **i == index
                && path.file_name() == Some("RECORD")
                && path.parent().is_some_and(|d| {
                    d.as_str().ends_with(".dist-info") && !d.as_str().contains('/')
                })
        })
        .map(|(path, _)| path.clone())
        .with_context(|| format!("{distribution} has no .dist-info/RECORD"))
}

/// RECORD's form of a sha256: urlsafe base64 without padding.
fn record_hash(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// UTF-8 text with `\n` line ends, or a refusal naming the file.
fn text(bytes: Vec<u8>, name: &Utf8Path) -> Result<String> {
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{name} is not UTF-8 text; patches apply to text only"))?;
    if text.contains('\r') {
        bail!("{name} has CRLF (or CR) line ends; patches apply to `\\n` text only");
    }
    Ok(text)
}

/// RECORD with the line of `file` naming the new hash and size.
fn update_record(record: &str, file: &str, bytes: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(record.len() + 64);
    let mut found = false;
    for line in record.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let entry = crate::python::distinfo::parse_record(body);
        if entry.first().is_some_and(|e| e.path == file) {
            let path = if file.contains(',') || file.contains('"') {
                format!("\"{file}\"")
            } else {
                file.to_owned()
            };
            out.push_str(&format!(
                "{path},sha256={},{}",
                record_hash(bytes),
                bytes.len()
            ));
            out.push_str(&line[body.len()..]);
            found = true;
        } else {
            out.push_str(line);
        }
    }
    if !found {
        bail!("RECORD does not list {file}");
    }
    Ok(out)
}

/// One line of a hunk: kind (' ', '-', '+'), its text, and whether it ends in a newline.
struct HunkLine<'a> {
    kind: char,
    text: &'a str,
    newline: bool,
}

struct Hunk<'a> {
    header: &'a str,
    old_start: usize,
    old_len: usize,
    lines: Vec<HunkLine<'a>>,
}

/// `-12,3` of a hunk header: start and length (length 1 when not given).
fn range(part: &str, sign: char) -> Option<(usize, usize)> {
    let part = part.strip_prefix(sign)?;
    let (start, len) = match part.split_once(',') {
        Some((s, l)) => (s.parse().ok()?, l.parse().ok()?),
        None => (part.parse().ok()?, 1),
    };
    Some((start, len))
}

/// The hunks of a unified diff; the file headers (`---`, `+++`, `diff`, `index`) before the
/// first hunk are skipped. A diff without hunks, or with a malformed one, is refused.
fn parse_diff(diff: &str) -> Result<Vec<Hunk<'_>>> {
    let mut hunks: Vec<Hunk<'_>> = Vec::new();
    let mut lines = diff.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with("@@") {
            if hunks.is_empty() || line.starts_with("--- ") || line.starts_with("diff ") {
                if !hunks.is_empty() {
                    bail!("the diff changes more than one file (`{line}`); one [[patch]] per file");
                }
                continue;
            }
            bail!("unexpected line outside a hunk: `{line}`");
        }
        let number = hunks.len() + 1;
        let bad = || anyhow::anyhow!("hunk {number}: malformed header `{line}`");
        let mut parts = line.split_whitespace().skip(1);
        let (old_start, old_len) = parts.next().and_then(|p| range(p, '-')).ok_or_else(bad)?;
        let (_, new_len) = parts.next().and_then(|p| range(p, '+')).ok_or_else(bad)?;
        let (mut old_seen, mut new_seen) = (0, 0);
        let mut body = Vec::new();
        while old_seen < old_len || new_seen < new_len {
            let Some(l) = lines.next() else {
                bail!("hunk {number} (`{line}`) ends early: the diff is cut short");
            };
            // An empty line is an empty context line whose leading space an editor dropped.
            let (kind, text) = match l.chars().next() {
                None => (' ', ""),
                Some(k @ (' ' | '-' | '+')) => (k, &l[1..]),
                Some(_) => bail!("hunk {number} (`{line}`): unexpected line `{l}`"),
            };
            if kind != '+' {
                old_seen += 1;
            }
            if kind != '-' {
                new_seen += 1;
            }
            body.push(HunkLine {
                kind,
                text,
                newline: true,
            });
            if lines.peek().is_some_and(|n| n.starts_with('\\')) {
                lines.next();
                if let Some(last) = body.last_mut() {
                    last.newline = false;
                }
            }
        }
        if old_seen != old_len || new_seen != new_len {
            bail!("hunk {number} (`{line}`): its lines do not add up to the header's counts");
        }
        hunks.push(Hunk {
            header: line,
            old_start,
            old_len,
            lines: body,
        });
    }
    if hunks.is_empty() {
        bail!("the diff has no hunks");
    }
    Ok(hunks)
}

/// Applies a unified diff to `original`. Every context and removed line must be the file's
/// line at the header's position exactly; otherwise the error names the hunk and the line.
pub fn apply_diff(original: &str, diff: &str) -> Result<String> {
    let hunks = parse_diff(diff)?;
    let old: Vec<(&str, bool)> = original
        .split_inclusive('\n')
        .map(|l| match l.strip_suffix('\n') {
            Some(t) => (t, true),
            None => (l, false),
        })
        .collect();
    let mut out = String::with_capacity(original.len() + diff.len());
    let push = |out: &mut String, text: &str, newline: bool| {
        out.push_str(text);
        if newline {
            out.push('\n');
        }
    };
    let mut next = 0; // index of the first original line not yet copied
    for (i, hunk) in hunks.iter().enumerate() {
        let number = i + 1;
        // A hunk that removes nothing and has no context (`-N,0`) inserts after line N.
        let start = if hunk.old_len == 0 {
            hunk.old_start
        } else {
            hunk.old_start.saturating_sub(1)
        };
        if start < next {
            bail!(
                "hunk {number} (`{}`) overlaps the hunk before it",
                hunk.header
            );
        }
        if start + hunk.old_len > old.len() {
            bail!(
                "hunk {number} (`{}`) reaches past the end of the file ({} lines)",
                hunk.header,
                old.len()
            );
        }
        for &(t, nl) in &old[next..start] {
            push(&mut out, t, nl);
        }
        let mut at = start;
        for line in &hunk.lines {
            if line.kind == '+' {
                push(&mut out, line.text, line.newline);
                continue;
            }
            let (t, nl) = old[at];
            if t != line.text || nl != line.newline {
                bail!(
                    "hunk {number} (`{}`): line {} of the file is `{t}`, the diff expects `{}`{}",
                    hunk.header,
                    at + 1,
                    line.text,
                    if t == line.text {
                        " (the newline at its end differs)"
                    } else {
                        ""
                    }
                );
            }
            if line.kind == ' ' {
                push(&mut out, t, nl);
            }
            at += 1;
        }
        next = at;
    }
    for &(t, nl) in &old[next..] {
        push(&mut out, t, nl);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "a\nb\nc\nd\ne\nf\ng\nh\n";

    #[test]
    fn a_clean_hunk_applies() {
        let diff = "--- a/x.py\n+++ b/x.py\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n";
        assert_eq!(apply_diff(FILE, diff).unwrap(), "a\nb\nC\nd\ne\nf\ng\nh\n");
    }

    #[test]
    fn several_hunks_apply_in_order() {
        let diff = "@@ -1,2 +1,3 @@\n a\n+a2\n b\n@@ -6,2 +7,1 @@\n f\n-g\n";
        assert_eq!(apply_diff(FILE, diff).unwrap(), "a\na2\nb\nc\nd\ne\nf\nh\n");
    }

    #[test]
    fn lines_are_added_and_removed_at_the_start_and_the_end() {
        let at_start = "@@ -1,2 +1,2 @@\n-a\n+first\n b\n";
        assert!(apply_diff(FILE, at_start)
            .unwrap()
            .starts_with("first\nb\n"));
        let insert_at_top = "@@ -0,0 +1 @@\n+# patched\n";
        assert_eq!(apply_diff("x\n", insert_at_top).unwrap(), "# patched\nx\n");
        let at_end = "@@ -7,2 +7,2 @@\n g\n-h\n+last\n\\ No newline at end of file\n";
        assert!(apply_diff(FILE, at_end).unwrap().ends_with("g\nlast"));
        let append = "@@ -8 +8,2 @@\n h\n+i\n";
        assert!(apply_diff(FILE, append).unwrap().ends_with("h\ni\n"));
    }

    #[test]
    fn a_context_mismatch_names_the_hunk_and_the_line() {
        let diff = "@@ -1,1 +1,1 @@\n-a\n+A\n@@ -5,2 +5,2 @@\n e\n-x\n+X\n";
        let err = format!("{:#}", apply_diff(FILE, diff).unwrap_err());
        assert!(err.contains("hunk 2 (`@@ -5,2 +5,2 @@`)"), "{err}");
        assert!(
            err.contains("line 6 of the file is `f`, the diff expects `x`"),
            "{err}"
        );
        let offset = "@@ -3,1 +3,1 @@\n-b\n+B\n";
        assert!(apply_diff(FILE, offset).is_err(), "no fuzz, no offsets");
        let past_end = "@@ -8,2 +8,2 @@\n h\n-z\n+Z\n";
        let err = format!("{:#}", apply_diff(FILE, past_end).unwrap_err());
        assert!(err.contains("past the end"), "{err}");
        assert!(apply_diff(FILE, "not a diff\n").is_err());
        assert!(
            apply_diff(FILE, "@@ -1,2 +1,2 @@\n a\n").is_err(),
            "cut short"
        );
    }

    fn tree(record_hash_of: &[u8]) -> (tempfile::TempDir, Owners, PatchPlan) {
        let tmp = tempfile::tempdir().unwrap();
        let stage = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        let site_rel = Utf8PathBuf::from("python/lib/python3.11/site-packages");
        let site = stage.join(&site_rel);
        fs_err::create_dir_all(site.join("six-1.0.dist-info")).unwrap();
        fs_err::write(site.join("six.py"), "A = 1\n").unwrap();
        let record = format!(
            "six.py,sha256={},6\nsix-1.0.dist-info/RECORD,,\n",
            record_hash(record_hash_of)
        );
        fs_err::write(site.join("six-1.0.dist-info/RECORD"), record).unwrap();
        let diff = "--- a/six.py\n+++ b/six.py\n@@ -1 +1 @@\n-A = 1\n+A = 2\n";
        fs_err::write(stage.join("six.diff"), diff).unwrap();
        let mut owners = Owners::new(site_rel);
        owners.add(
            "six",
            "1.0",
            "six-1.0-py3-none-any.whl",
            &["six.py".into(), "six-1.0.dist-info/RECORD".into()],
        );
        let plan = PatchPlan {
            distribution: "six".into(),
            version: "1.0".into(),
            file: "six.py".into(),
            diff: "six.diff".into(),
            diff_path: stage.join("six.diff"),
            diff_sha256: crate::util::sha256_hex(diff.as_bytes()),
            reason: "because".into(),
        };
        (tmp, owners, plan)
    }

    #[test]
    fn a_patch_rewrites_the_file_and_its_record_line() {
        let (tmp, owners, plan) = tree(b"A = 1\n");
        let stage = Utf8Path::from_path(tmp.path()).unwrap();
        let applied = apply_all(&[plan], stage, &owners).unwrap();
        assert_eq!(applied[0].diff, "six.diff");
        let site = stage.join(&owners.site_packages);
        assert_eq!(
            fs_err::read_to_string(site.join("six.py")).unwrap(),
            "A = 2\n"
        );
        let record = fs_err::read_to_string(site.join("six-1.0.dist-info/RECORD")).unwrap();
        assert_eq!(
            record,
            format!(
                "six.py,sha256={},6\nsix-1.0.dist-info/RECORD,,\n",
                record_hash(b"A = 2\n")
            )
        );
    }

    #[test]
    fn a_file_that_is_not_the_pristine_one_is_refused_with_both_hashes() {
        let (tmp, owners, plan) = tree(b"something else\n");
        let stage = Utf8Path::from_path(tmp.path()).unwrap();
        let err = format!("{:#}", apply_all(&[plan], stage, &owners).unwrap_err());
        assert!(err.contains("[[patch]] six 1.0 six.py (six.diff)"), "{err}");
        assert!(err.contains(&record_hash(b"A = 1\n")), "{err}");
        assert!(err.contains(&record_hash(b"something else\n")), "{err}");
        let site = stage.join(&owners.site_packages);
        assert_eq!(
            fs_err::read_to_string(site.join("six.py")).unwrap(),
            "A = 1\n"
        );
    }

    #[test]
    fn crlf_and_non_utf8_files_are_refused() {
        let err = text(b"a\r\nb\r\n".to_vec(), "x.py".into()).unwrap_err();
        assert!(err.to_string().contains("x.py has CRLF"), "{err}");
        let err = text(vec![0xff, 0xfe], "y.py".into()).unwrap_err();
        assert!(err.to_string().contains("y.py is not UTF-8"), "{err}");
    }
}

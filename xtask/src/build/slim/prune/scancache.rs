//! The import scans of a build, kept in the stage cache (stage "imports") so that a rebuild
//! whose sources did not change scans nothing: one entry per distribution (and one for the
//! files no distribution owns), keyed by the scanner's own source text and every scanned
//! file's path and sha256. A distribution that changed is scanned again; the others are read.
//!
//! An entry is plain text, one block per file: `F <path>` then one line per import,
//! `<dots> <top-level 0|1> <module or -> <names, comma-separated, or ->`. Module and names are
//! ASCII identifiers (the scanner keeps nothing else), so spaces and commas never occur in them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use camino::Utf8PathBuf;

use super::imports::{scan, Import};
use super::Entry;
use crate::build::cache::{key, Stage, StageCache};

/// The scanner's source: what decides an entry's content. A changed scanner finds no old entry.
const SCANNER: &str = include_str!("imports.rs");

/// The imports of each source (`(index into entries, text)`): from the cache where the entry
/// of the source's distribution exists, else scanned (on two threads: the scan is most of
/// pruning's time) and stored. A cache that cannot be written only costs the next build a
/// scan; it never fails this one.
pub fn scan_all(
    sources: Vec<(usize, String)>,
    entries: &[Entry],
    cache: Option<&StageCache>,
) -> Vec<(usize, Vec<Import>)> {
    let Some(cache) = cache else {
        return scan_parallel(&sources);
    };
    let mut groups: BTreeMap<Option<&str>, Vec<(usize, String)>> = BTreeMap::new();
    for (i, source) in sources {
        groups
            .entry(entries[i].dist.as_deref())
            .or_default()
            .push((i, source));
    }
    let mut out = Vec::new();
    let mut todo: Vec<(String, Vec<(usize, String)>)> = Vec::new();
    for (_, mut files) in groups {
        // Usually in path order already: one comparison per file.
        files.sort_by(|a, b| entries[a.0].path.cmp(&entries[b.0].path));
        let key = group_key(&files, entries);
        match cache
            .get_file(Stage::Imports, &key)
            .and_then(|bytes| decode(&bytes, &files, entries))
        {
            Some(found) => out.extend(found),
            None => todo.push((key, files)),
        }
    }
    for (key, files) in &todo {
        let scanned = scan_parallel(files);
        let text = encode(
            scanned
                .iter()
                .map(|(i, imports)| (&entries[*i].path, imports)),
        );
        let _ = cache.put_file(Stage::Imports, key, text.as_bytes());
        out.extend(scanned);
    }
    out
}

/// The key of one group: the scanner, then each file's path and content hash, in path order.
fn group_key(files: &[(usize, String)], entries: &[Entry]) -> String {
    let mut parts: Vec<Vec<u8>> = vec![crate::util::sha256_hex(SCANNER.as_bytes()).into_bytes()];
    for (i, source) in files {
        parts.push(entries[*i].path.as_str().as_bytes().to_vec());
        parts.push(crate::util::sha256_hex(source.as_bytes()).into_bytes());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    key(Stage::Imports, &refs)
}

fn encode<'a>(files: impl Iterator<Item = (&'a Utf8PathBuf, &'a Vec<Import>)>) -> String {
    let mut text = String::new();
    for (path, imports) in files {
        let _ = writeln!(text, "F {path}");
        for i in imports {
            let or_dash = |s: &str| {
                if s.is_empty() {
                    "-".to_owned()
                } else {
                    s.to_owned()
                }
            };
            let _ = writeln!(
                text,
                "{} {} {} {}",
                i.dots,
                u8::from(i.top_level),
                or_dash(&i.module),
                or_dash(&i.names.join(","))
            );
        }
    }
    text
}

/// An entry's imports, when it holds exactly `files` (same paths, same order); else `None`,
/// and the group is scanned again.
fn decode(
    bytes: &[u8],
    files: &[(usize, String)],
    entries: &[Entry],
) -> Option<Vec<(usize, Vec<Import>)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut out: Vec<(usize, Vec<Import>)> = Vec::with_capacity(files.len());
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("F ") {
            let expected = files.get(out.len())?.0;
            if path != entries[expected].path.as_str() {
                return None;
            }
            out.push((expected, Vec::new()));
            continue;
        }
        let mut fields = line.split(' ');
        let dots = fields.next()?.parse().ok()?;
        let top_level = match fields.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let undash = |s: &str| {
            if s == "-" {
                String::new()
            } else {
                s.to_owned()
            }
        };
        let module = undash(fields.next()?);
        let names = match fields.next()? {
            "-" => Vec::new(),
            names => names.split(',').map(str::to_owned).collect(),
        };
        if fields.next().is_some() {
            return None;
        }
        out.last_mut()?.1.push(Import {
            dots,
            module,
            names,
            top_level,
        });
    }
    (out.len() == files.len()).then_some(out)
}

/// Scans the sources on two threads.
fn scan_parallel(sources: &[(usize, String)]) -> Vec<(usize, Vec<Import>)> {
    let (a, b) = sources.split_at(sources.len() / 2);
    let scan_part = |part: &[(usize, String)]| -> Vec<(usize, Vec<Import>)> {
        part.iter().map(|(i, s)| (*i, scan(s))).collect()
    };
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| scan_part(b));
        let a = scan_part(a);
        // A panic there is a bug in the scanner: it goes on here as one.
        (
            a,
            other
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    a.into_iter().chain(b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (Vec<Entry>, Vec<(usize, String)>) {
        let e = |p: &str, d: Option<&str>| Entry {
            path: p.into(),
            bytes: 1,
            dist: d.map(str::to_owned),
        };
        let entries = vec![
            e("sp/a/__init__.py", Some("a")),
            e("sp/a/b.py", Some("a")),
            e("sp/a/empty.py", Some("a")),
            e("sp/d.py", None),
        ];
        let sources = vec![
            (0, "from . import b\nimport os.path as p, sys\n".into()),
            (1, "def f():\n    from ..c import (x, y as z)\n".into()),
            (2, String::new()),
            (3, "x = 1\n".into()),
        ];
        (entries, sources)
    }

    fn sorted(mut v: Vec<(usize, Vec<Import>)>) -> Vec<(usize, Vec<Import>)> {
        v.sort_by_key(|(i, _)| *i);
        v
    }

    #[test]
    fn a_second_scan_reads_the_cache_and_gives_the_same_imports() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = StageCache::new(camino::Utf8Path::from_path(tmp.path()).unwrap());
        let (entries, sources) = files();
        let plain = sorted(scan_all(sources.clone(), &entries, None));
        assert!(plain[0].1.len() == 3 && plain[1].1.len() == 1, "{plain:?}");
        let first = sorted(scan_all(sources.clone(), &entries, Some(&cache)));
        let second = sorted(scan_all(sources.clone(), &entries, Some(&cache)));
        assert_eq!(first, plain);
        assert_eq!(second, plain);
        let counts = cache.counts();
        assert_eq!((counts[0].hits, counts[0].misses), (2, 2), "{counts:?}");

        // One changed source: its distribution is scanned again, the other still read.
        let mut changed = sources;
        changed[1].1 = "import json\n".into();
        let third = sorted(scan_all(changed.clone(), &entries, Some(&cache)));
        assert_eq!(third, sorted(scan_all(changed, &entries, None)));
        assert_eq!(third[1].1[0].module, "json");
        let counts = cache.counts();
        assert_eq!((counts[0].hits, counts[0].misses), (3, 3), "{counts:?}");
    }

    #[test]
    fn an_entry_for_other_files_or_a_damaged_one_is_not_used() {
        let (entries, files) = files();
        let scanned: Vec<(usize, Vec<Import>)> = files.iter().map(|(i, s)| (*i, scan(s))).collect();
        let text = encode(
            scanned
                .iter()
                .map(|(i, imports)| (&entries[*i].path, imports)),
        );
        assert_eq!(decode(text.as_bytes(), &files, &entries).unwrap(), scanned);
        assert!(decode(text.as_bytes(), &files[..3], &entries).is_none());
        let renamed = text.replace("F sp/d.py", "F sp/e.py");
        assert!(decode(renamed.as_bytes(), &files, &entries).is_none());
        let damaged = text.replace(" 1 os.path", " 2 os.path");
        assert!(decode(damaged.as_bytes(), &files, &entries).is_none());
    }
}

//! `python3X.zip`: the standard library's bytecode in the zip CPython itself puts on `sys.path`
//! before the `lib/python3.X` folder (`python/lib/python311.zip`; no `sitecustomize` needed).
//! Whole packages and top-level modules only: a package moves when every file under it is
//! sourceless bytecode and none names one of `[site-zip] split-unless-names` (see `split.rs`);
//! a top-level module when it names none. `[stdlib-zip] keep` (the interpreter's landmark
//! `os`, `site`, `sitecustomize`) and everything else stays in the folder.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use super::split::names_in_pyc;

/// `python311.zip` for `3.11`, in `python/lib/`.
pub fn file_name(xy: &str) -> String {
    format!("python{}.zip", xy.replace('.', ""))
}

/// What moves into the zip.
#[derive(Debug, Default)]
pub struct Plan {
    /// Paths relative to the standard library folder; the zip uses the same names.
    pub zipped: Vec<Utf8PathBuf>,
    /// Top-level names that stay, with why.
    pub stayed: BTreeMap<String, String>,
}

/// `files`: the standard library's files relative to its folder, without site-packages and
/// lib-dynload; `reads` returns the names a `.pyc` holds (of the unless-names); pure but for it.
pub fn plan(
    files: &[Utf8PathBuf],
    keep: &[String],
    reads: &mut dyn FnMut(&Utf8Path) -> Result<Vec<String>>,
) -> Result<Plan> {
    let mut tops: BTreeMap<String, Vec<&Utf8PathBuf>> = BTreeMap::new();
    for f in files {
        let top = f.components().next().map(|c| c.as_str().to_owned());
        if let Some(top) = top {
            tops.entry(top).or_default().push(f);
        }
    }
    let mut out = Plan::default();
    for (top, members) in tops {
        let module = top.strip_suffix(".pyc").unwrap_or(&top);
        if keep.iter().any(|k| k == module) {
            out.stayed.insert(top, "listed in [stdlib-zip] keep".into());
            continue;
        }
        match why_it_stays(&top, &members, reads)? {
            Some(why) => {
                out.stayed.insert(top, why);
            }
            None => out.zipped.extend(members.into_iter().cloned()),
        }
    }
    out.zipped.sort();
    Ok(out)
}

fn why_it_stays(
    top: &str,
    members: &[&Utf8PathBuf],
    reads: &mut dyn FnMut(&Utf8Path) -> Result<Vec<String>>,
) -> Result<Option<String>> {
    let single = members.len() == 1 && members[0].as_str() == top;
    if single && !top.ends_with(".pyc") {
        return Ok(Some("not bytecode".into()));
    }
    if !single
        && !members
            .iter()
            .any(|m| m.as_str() == format!("{top}/__init__.pyc"))
    {
        return Ok(Some("not a package with sourceless bytecode".into()));
    }
    if let Some(other) = members.iter().find(|m| {
        m.extension() != Some("pyc") || m.components().any(|c| c.as_str() == "__pycache__")
    }) {
        return Ok(Some(format!(
            "holds {other}, which is not sourceless bytecode"
        )));
    }
    let mut names = BTreeSet::new();
    for m in members {
        names.extend(reads(m)?);
    }
    Ok((!names.is_empty()).then(|| {
        format!(
            "its bytecode names {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        )
    }))
}

/// The standard library's files that `plan` considers: relative to `stdlib`, without
/// site-packages, lib-dynload and what `cargo xtask layer` put beside them.
pub fn candidates(stdlib: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let skip = [
        "site-packages",
        "lib-dynload",
        super::FILE_NAME,
        super::split::LIST_FILE,
    ];
    Ok(crate::util::files_under(stdlib)?
        .into_iter()
        .filter(|r| {
            let top = r.components().next().map(|c| c.as_str()).unwrap_or("");
            !skip.contains(&top)
        })
        .collect())
}

/// Reads a `.pyc` under `stdlib` and returns which of `names` it holds.
pub fn reader<'a>(
    stdlib: &'a Utf8Path,
    names: &'a [String],
) -> impl FnMut(&Utf8Path) -> Result<Vec<String>> + 'a {
    move |rel| {
        let bytes = fs_err::read(stdlib.join(rel))?;
        Ok(names_in_pyc(&bytes, names)
            .into_iter()
            .map(str::to_owned)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_packages_and_plain_modules_move_the_rest_stays() {
        let files: Vec<Utf8PathBuf> = [
            "os.pyc",
            "json/__init__.pyc",
            "json/decoder.pyc",
            "pydoc_data/__init__.pyc",
            "pydoc_data/topics.pyc",
            "pydoc_data/_pydoc.css",
            "zoneinfo/__init__.pyc",
            "zoneinfo/_tzpath.pyc",
            "abc.pyc",
            "inspect.pyc",
            "LICENSE.txt",
            "nsdir/mod.pyc",
        ]
        .map(Utf8PathBuf::from)
        .to_vec();
        let mut reads = |f: &Utf8Path| -> Result<Vec<String>> {
            Ok(match f.as_str() {
                "zoneinfo/_tzpath.pyc" => vec!["resources".into()],
                "inspect.pyc" => vec!["__file__".into()],
                _ => vec![],
            })
        };
        let p = plan(&files, &["os".into()], &mut reads).unwrap();
        let zipped: Vec<&str> = p.zipped.iter().map(|f| f.as_str()).collect();
        assert_eq!(zipped, ["abc.pyc", "json/__init__.pyc", "json/decoder.pyc"]);
        assert!(p.stayed["os.pyc"].contains("keep"));
        assert!(p.stayed["pydoc_data"].contains("_pydoc.css"));
        assert!(p.stayed["zoneinfo"].contains("resources"));
        assert!(p.stayed["inspect.pyc"].contains("__file__"));
        assert!(p.stayed["LICENSE.txt"].contains("not bytecode"));
        assert!(p.stayed["nsdir"].contains("not a package"));
    }
}

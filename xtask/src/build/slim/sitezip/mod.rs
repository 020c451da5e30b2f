//! `site-packages.zip`: the distributions that can run from a zip, moved into one zip that
//! `sitecustomize.py` puts on `sys.path`. Bytecode goes where zipimport looks (the legacy place),
//! every folder gets a directory entry so namespace packages resolve. The plain modules of the
//! distributions that stay unpacked can join them (`split`).

pub mod split;
pub mod stdlib;
mod step;

pub use step::site_packages_zip_step;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::slim::prune::{classify, FileKind};
use crate::spec::rules::KeepOut;
use crate::util::zipinfo::EntryStat;

/// The zip's name, beside site-packages in `python/lib/python3.X/`.
pub const FILE_NAME: &str = "site-packages.zip";

/// What goes into the zip and what stays out; computed without touching the disk.
#[derive(Debug, Default)]
pub struct Plan {
    /// (path relative to site-packages on disk, name in the zip).
    pub zipped: Vec<(Utf8PathBuf, String)>,
    /// Distributions that stay unpacked, with why.
    pub kept_out: BTreeMap<String, String>,
    /// Modules of distributions that stay unpacked, moved into the zip anyway.
    pub split: split::Split,
}

impl Plan {
    /// Adds the modules `split` moves to what the zip holds.
    pub fn add_split(&mut self, split: split::Split) {
        self.zipped.extend(
            split
                .moved
                .iter()
                .map(|c| (c.rel.clone(), c.rel.to_string())),
        );
        self.zipped.sort_by(|a, b| a.1.cmp(&b.1));
        self.split = split;
    }
}

/// `pkg/__pycache__/mod.cpython-311.pyc` -> `pkg/mod.pyc` (where zipimport looks); other
/// paths unchanged.
fn zip_name(rel: &Utf8Path) -> String {
    let parent = rel.parent().unwrap_or(Utf8Path::new(""));
    match (parent.file_name(), rel.file_name()) {
        (Some("__pycache__"), Some(file)) if file.ends_with(".pyc") => {
            let stem = file.split('.').next().unwrap_or(file);
            parent
                .parent()
                .unwrap_or(Utf8Path::new(""))
                .join(format!("{stem}.pyc"))
                .into_string()
        }
        _ => rel.to_string(),
    }
}

/// The source a `.pyc` was compiled from (the owner of bytecode written after install).
fn source_of(rel: &Utf8Path) -> Option<Utf8PathBuf> {
    let name = zip_name(rel);
    Some(Utf8PathBuf::from(
        name.strip_suffix(".pyc")?.to_owned() + ".py",
    ))
}

/// `files` are paths relative to site-packages; `owner` maps an installed path to its
/// distribution's name; pure.
pub fn plan(
    files: &[Utf8PathBuf],
    owner: &dyn Fn(&Utf8Path) -> Option<String>,
    keep_out: &[KeepOut],
) -> Plan {
    let owned: Vec<(Utf8PathBuf, String)> = files
        .iter()
        .filter_map(|f| {
            let dist = owner(f).or_else(|| source_of(f).and_then(|s| owner(&s)))?;
            Some((f.clone(), dist))
        })
        .collect();
    let mut out = Plan::default();
    for k in keep_out {
        out.kept_out.insert(
            crate::python::wheel::normalize(&k.distribution),
            k.reason.clone(),
        );
    }
    for (f, dist) in &owned {
        if matches!(
            classify(f),
            FileKind::ExtensionModule | FileKind::SharedLibrary
        ) && !out.kept_out.contains_key(dist)
        {
            out.kept_out.insert(
                dist.clone(),
                format!("native code ({f}); zipimport cannot load .so files"),
            );
        }
    }
    // Keep-out entries for distributions that are not installed would only confuse the report.
    let installed: BTreeSet<&String> = owned.iter().map(|(_, d)| d).collect();
    out.kept_out.retain(|d, _| installed.contains(d));
    out.zipped = owned
        .into_iter()
        .filter(|(_, d)| !out.kept_out.contains_key(d))
        .map(|(f, _)| {
            let name = zip_name(&f);
            (f, name)
        })
        .collect();
    out.zipped.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Writes the zip (reproducibly: sorted, fixed times and modes, a directory entry for every
/// folder), deletes what it holds from site-packages, and returns its entries as if they were
/// files of site-packages, for the report.
pub fn write(
    site_packages: &Utf8Path,
    dest: &Utf8Path,
    plan: &Plan,
    cache: Option<&crate::build::cache::StageCache>,
) -> Result<Vec<EntryStat>> {
    write_zip(site_packages, dest, &plan.zipped, cache)?;
    if !plan.split.packages.is_empty() {
        let list = dest.with_file_name(split::LIST_FILE);
        crate::util::write_atomic(&list, |file| {
            use std::io::Write;
            file.write_all(split::list_text(&plan.split.packages).as_bytes())
                .map_err(Into::into)
        })
        .with_context(|| format!("writing {list}"))?;
    }

    crate::util::remove_files_and_empty_dirs(
        site_packages,
        plan.zipped.iter().map(|(disk, _)| disk),
        |path| format!("removing {path}, now in {dest}"),
    )?;
    let stats = crate::util::zipinfo::read_stats(dest)?;
    Ok(stats.entries)
}

/// Writes `dest` with `zipped` ((path under `root`, name in the zip)) and a directory entry for
/// every folder: reproducibly (sorted, fixed times and modes).
pub fn write_zip(
    root: &Utf8Path,
    dest: &Utf8Path,
    zipped: &[(Utf8PathBuf, String)],
    cache: Option<&crate::build::cache::StageCache>,
) -> Result<()> {
    let mut names: BTreeMap<String, Option<&Utf8Path>> = BTreeMap::new();
    for (disk, name) in zipped {
        let mut p = Utf8Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_str().is_empty()) {
            names.entry(format!("{d}/")).or_insert(None);
            p = d.parent();
        }
        names.insert(name.clone(), Some(disk));
    }
    crate::util::write_atomic(dest, |file| {
        crate::build::zip::write_in_order(&mut *file, &zip_entries(&names, root), 9, cache)
    })
    .with_context(|| format!("writing {dest}"))
}

/// The entries of a zip, in name order (folders are the names without a file).
fn zip_entries(
    names: &BTreeMap<String, Option<&Utf8Path>>,
    site_packages: &Utf8Path,
) -> Vec<crate::build::zip::Entry> {
    use crate::build::zip::{Entry, Kind};
    names
        .iter()
        .map(|(name, disk)| match disk {
            None => Entry {
                name: name.trim_end_matches('/').to_owned(),
                kind: Kind::Dir,
            },
            Some(disk) => Entry {
                name: name.clone(),
                kind: Kind::File {
                    path: site_packages.join(disk),
                    mode: 0o644,
                    large: false,
                },
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_table(f: &Utf8Path) -> Option<String> {
        let top = f.components().next()?.as_str();
        match top {
            "nat" | "nat-1.0.dist-info" => Some("nat".into()),
            "pure" | "pure-1.0.dist-info" => Some("pure".into()),
            "ns" => Some("ns".into()),
            "bypath" => Some("bypath".into()),
            _ => None,
        }
    }

    fn files() -> Vec<Utf8PathBuf> {
        [
            "nat/__init__.pyc",
            "nat/_speed.cpython-311-x86_64-linux-gnu.so",
            "nat-1.0.dist-info/METADATA",
            "pure/__init__.py",
            "pure/__pycache__/__init__.cpython-311.pyc",
            "pure-1.0.dist-info/METADATA",
            "ns/sub/mod.pyc",
            "bypath/__init__.pyc",
        ]
        .map(Utf8PathBuf::from)
        .to_vec()
    }

    #[test]
    fn native_and_listed_distributions_stay_out() {
        let keep = [KeepOut {
            distribution: "bypath".into(),
            reason: "opens data by path".into(),
            split: true,
        }];
        let p = plan(&files(), &owner_table, &keep);
        assert!(p.kept_out["nat"].contains("native code"));
        assert_eq!(p.kept_out["bypath"], "opens data by path");
        let names: Vec<&str> = p.zipped.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ns/sub/mod.pyc",
                "pure-1.0.dist-info/METADATA",
                "pure/__init__.py",
                "pure/__init__.pyc"
            ]
        );
    }

    /// A namespace package (no `__init__`) and dist-info metadata work from the written zip.
    #[test]
    fn a_namespace_package_imports_from_the_zip() {
        let python = Utf8Path::new("/root/.pyenv/versions/3.11.7/bin/python3.11");
        if !python.exists() {
            eprintln!("skipped: no host CPython 3.11");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let sp = root.join("site-packages");
        for (path, text) in [
            ("ns/sub/mod.py", "VALUE = 42\n"),
            ("pure/__init__.py", "from ns.sub.mod import VALUE\n"),
            (
                "pure-1.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: pure\nVersion: 1.0\n",
            ),
            ("nat/__init__.py", ""),
            ("nat/_speed.cpython-311-x86_64-linux-gnu.so", "not really"),
        ] {
            fs_err::create_dir_all(sp.join(path).parent().unwrap()).unwrap();
            fs_err::write(sp.join(path), text).unwrap();
        }
        let files: Vec<Utf8PathBuf> = crate::util::files_under(&sp).unwrap();
        let p = plan(&files, &owner_table, &[]);
        let dest = root.join(FILE_NAME);
        write(&sp, &dest, &p, None).unwrap();
        assert!(
            sp.join("nat/_speed.cpython-311-x86_64-linux-gnu.so")
                .exists(),
            "the .so package stays out"
        );
        assert!(!sp.join("ns").exists() && !sp.join("pure").exists());
        let out = duct::cmd!(
            python.as_std_path(),
            "-I",
            "-S",
            "-c",
            "import sys, importlib.metadata as m; sys.path.append(sys.argv[1]); import pure, ns.sub.mod; print(pure.VALUE, m.version('pure'), ns.sub.mod.__file__)",
            &dest
        )
        .read()
        .unwrap();
        assert!(out.starts_with("42 1.0 "), "{out}");
        assert!(out.contains("site-packages.zip"), "{out}");
        let a = fs_err::read(&dest).unwrap();
        write(&sp, &root.join("again.zip"), &Plan::default(), None).unwrap();
        assert!(!a.is_empty());
    }
}

//! Split packages: the plain modules of a distribution that stays unpacked (it holds native
//! code, or opens data by path) go into `site-packages.zip` too, while the package folders, their
//! `__init__`, data files, extension modules and every module that may locate files by path stay
//! in site-packages. The layer's `sitecustomize.py` reads [`LIST_FILE`] and gives each listed
//! package a second `__path__` entry, its folder inside the zip, after the unpacked one.
//!
//! Whether a module may locate files by path is read from its bytecode: every name and string
//! constant a code object uses is marshalled whole at least once (later uses are references), so
//! a module that names `__file__`, `os.walk`'s `walk`, `importlib.resources` or `get_data`
//! carries that exact string, with its length, in its `.pyc`. The names come from the rules file
//! (`[site-zip] split-unless-names`); a match keeps the module unpacked.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

/// Beside `site-packages.zip`: the packages whose modules are partly in the zip, one dotted name
/// per line.
pub const LIST_FILE: &str = "site-packages-split.txt";

/// A plain module of a distribution that stays unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The sourceless `.pyc`, relative to site-packages.
    pub rel: Utf8PathBuf,
    pub distribution: String,
    /// The package it belongs to (dotted), `None` at the top of site-packages.
    pub package: Option<String>,
}

/// Modules that may move: sourceless `X.pyc` outside `__pycache__` with no `X.py` beside it
/// (kept sources mean something reads them), not `__init__` or `__main__`, under folders that
/// are all importable names; of the distributions `split` allows. Its package is the nearest
/// folder above it with an `__init__`: the folders in between are namespace packages, whose
/// `__path__` Python derives from that package's, so that one gets the zip folder. With no such
/// folder (a namespace package at the top), the module stays.
pub fn candidates(
    files: &[Utf8PathBuf],
    owner: &dyn Fn(&Utf8Path) -> Option<String>,
    split: &dyn Fn(&str) -> bool,
) -> Vec<Candidate> {
    let present: HashSet<&Utf8Path> = files.iter().map(Utf8PathBuf::as_path).collect();
    let is_package = |d: &Utf8Path| {
        present.contains(d.join("__init__.pyc").as_path())
            || present.contains(d.join("__init__.py").as_path())
    };
    let mut out = Vec::new();
    for f in files {
        let (Some(stem), Some("pyc")) = (f.file_stem(), f.extension()) else {
            continue;
        };
        if stem == "__init__" || stem == "__main__" || !is_identifier(stem) {
            continue;
        }
        let dir = f.parent().unwrap_or(Utf8Path::new(""));
        if !dir.components().all(|c| is_identifier(c.as_str()))
            || dir.components().any(|c| c.as_str() == "__pycache__")
            || present.contains(f.with_extension("py").as_path())
        {
            continue;
        }
        let package = dir
            .ancestors()
            .filter(|d| !d.as_str().is_empty())
            .find(|d| is_package(d))
            .map(|d| d.as_str().replace('/', "."));
        // A namespace package at the top is a plug-in point (tiktoken_ext: tiktoken lists it
        // with pkgutil): its modules stay where the distribution put them.
        if package.is_none() && !dir.as_str().is_empty() {
            continue;
        }
        let Some(dist) = owner(f).or_else(|| owner(&f.with_extension("py"))) else {
            continue;
        };
        if split(&dist) {
            out.push(Candidate {
                rel: f.clone(),
                distribution: dist,
                package,
            });
        }
    }
    out
}

/// A name Python can import: ASCII letters, digits and `_`, not starting with a digit.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Which of `names` the marshalled bytecode `pyc` holds as a whole string (short form: type
/// byte, one length byte; long form: type byte, four length bytes), in `names`' order.
pub fn names_in_pyc<'n>(pyc: &[u8], names: &'n [String]) -> Vec<&'n str> {
    // marshal.c: TYPE_ASCII 'a', TYPE_ASCII_INTERNED 'A', TYPE_SHORT_ASCII 'z',
    // TYPE_SHORT_ASCII_INTERNED 'Z', TYPE_UNICODE 'u', TYPE_INTERNED 't'; FLAG_REF (0x80) may
    // be set on each.
    // Each name is searched for (memchr's searcher, fast even in a debug build) and an
    // occurrence counts when the bytes before it are a string's type and exact length.
    const SHORT: [u8; 2] = [b'z', b'Z'];
    const LONG: [u8; 4] = [b'a', b'A', b'u', b't'];
    let is_string = |at: usize, n: usize| {
        let short =
            at >= 2 && usize::from(pyc[at - 1]) == n && SHORT.contains(&(pyc[at - 2] & 0x7f));
        let long = at >= 5
            && n <= 256
            && u32::from_le_bytes([pyc[at - 4], pyc[at - 3], pyc[at - 2], pyc[at - 1]])
                == u32::try_from(n).unwrap_or(u32::MAX)
            && LONG.contains(&(pyc[at - 5] & 0x7f));
        short || long
    };
    let found: HashSet<&[u8]> = names
        .iter()
        .map(|n| n.as_bytes())
        .filter(|n| !n.is_empty())
        .filter(|n| memchr::memmem::find_iter(pyc, n).any(|at| is_string(at, n.len())))
        .collect();
    names
        .iter()
        .filter(|n| found.contains(n.as_bytes()))
        .map(String::as_str)
        .collect()
}

/// The split, decided: the modules that move, the packages that gain a zip folder, and per
/// distribution what moved and what stayed.
#[derive(Debug, Default)]
pub struct Split {
    pub moved: Vec<Candidate>,
    pub packages: BTreeSet<String>,
    /// distribution -> (modules moved, modules kept unpacked, the names that kept them).
    pub by_distribution: BTreeMap<String, (usize, usize, BTreeSet<String>)>,
}

/// Reads each candidate's bytecode and keeps unpacked those that name one of `names`.
pub fn decide(
    site_packages: &Utf8Path,
    candidates: Vec<Candidate>,
    names: &[String],
) -> Result<Split> {
    let mut out = Split::default();
    for c in candidates {
        let bytes = fs_err::read(site_packages.join(&c.rel))?;
        let hits = names_in_pyc(&bytes, names);
        let entry = out
            .by_distribution
            .entry(c.distribution.clone())
            .or_default();
        if hits.is_empty() {
            entry.0 += 1;
            if let Some(p) = &c.package {
                out.packages.insert(p.clone());
            }
            out.moved.push(c);
        } else {
            entry.1 += 1;
            entry.2.extend(hits.into_iter().map(str::to_owned));
        }
    }
    Ok(out)
}

/// The text of [`LIST_FILE`].
pub fn list_text(packages: &BTreeSet<String>) -> String {
    let mut s = String::from(
        "# Packages of site-packages whose plain modules are in site-packages.zip (cargo xtask layer);\n\
         # the layer's sitecustomize.py appends the zip's folder of each to its __path__.\n",
    );
    for p in packages {
        s.push_str(p);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON: &str = "/root/.pyenv/versions/3.11.7/bin/python3.11";

    fn paths(v: &[&str]) -> Vec<Utf8PathBuf> {
        v.iter().map(Utf8PathBuf::from).collect()
    }

    #[test]
    fn only_sourceless_plain_modules_of_regular_packages_are_candidates() {
        let files = paths(&[
            "pkg/__init__.pyc",
            "pkg/plain.pyc",
            "pkg/__main__.pyc",
            "pkg/kept.py",
            "pkg/__pycache__/kept.cpython-311.pyc",
            "pkg/withsource.pyc",
            "pkg/withsource.py",
            "pkg/_speed.cpython-311-x86_64-linux-gnu.so",
            "pkg/ns/loose.pyc",
            "pkg/sub/__init__.pyc",
            "pkg/sub/deep.pyc",
            "pkg/sub/ns/deeper.pyc",
            "pkg/not-a-name/x.pyc",
            "pkg/__pycache__/stray.pyc",
            "top.pyc",
            "plugins_ns/plugin.pyc",
            "other/__init__.pyc",
            "other/mod.pyc",
        ]);
        let owner = |f: &Utf8Path| {
            Some(
                if f.as_str().starts_with("other") {
                    "other"
                } else {
                    "pkg"
                }
                .to_owned(),
            )
        };
        let c = candidates(&files, &owner, &|d| d == "pkg");
        let got: Vec<(&str, Option<&str>)> = c
            .iter()
            .map(|c| (c.rel.as_str(), c.package.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("pkg/plain.pyc", Some("pkg")),
                ("pkg/ns/loose.pyc", Some("pkg")),
                ("pkg/sub/deep.pyc", Some("pkg.sub")),
                ("pkg/sub/ns/deeper.pyc", Some("pkg.sub")),
                ("top.pyc", None)
            ]
        );
    }

    /// Compiles `source` with the host CPython 3.11 and returns the `.pyc` bytes.
    fn compiled(dir: &Utf8Path, name: &str, source: &str) -> Vec<u8> {
        let py = dir.join(format!("{name}.py"));
        fs_err::write(&py, source).unwrap();
        let pyc = dir.join(format!("{name}.pyc"));
        duct::cmd!(
            PYTHON,
            "-I",
            "-c",
            "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
            py.as_str(),
            pyc.as_str()
        )
        .run()
        .unwrap();
        fs_err::read(&pyc).unwrap()
    }

    #[test]
    fn names_are_found_whole_in_real_bytecode() {
        if !Utf8Path::new(PYTHON).exists() {
            eprintln!("skipped: no host CPython 3.11");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let names: Vec<String> = ["__file__", "walk", "importlib.resources", "resources"]
            .map(String::from)
            .to_vec();
        let by_path = compiled(dir, "a", "import os\nHERE = os.path.dirname(__file__)\n");
        assert_eq!(names_in_pyc(&by_path, &names), ["__file__"]);
        let walks = compiled(
            dir,
            "b",
            "import os\ndef f(d):\n    return list(os.walk(d))\n",
        );
        assert_eq!(names_in_pyc(&walks, &names), ["walk"]);
        let data = compiled(dir, "c", "from importlib import resources\nX = 1\n");
        assert_eq!(names_in_pyc(&data, &names), ["resources"]);
        let files = compiled(dir, "d", "from importlib.resources import files\n");
        assert_eq!(names_in_pyc(&files, &names), ["importlib.resources"]);
        // A docstring that mentions a name is not the name; a longer name is not it either.
        let plain = compiled(
            dir,
            "e",
            "'''Uses __file__ and os.walk in prose only.'''\nwalker = 1\ndef walking(): return walker\n",
        );
        assert!(names_in_pyc(&plain, &names).is_empty());
    }

    /// The layer's sitecustomize gives a split package its zip folder: a moved module imports
    /// from the zip, a module that stayed and the package's data still come from the folder.
    #[test]
    fn a_split_package_imports_from_both_places() {
        if !Utf8Path::new(PYTHON).exists() {
            eprintln!("skipped: no host CPython 3.11");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let stdlib = Utf8Path::from_path(tmp.path())
            .unwrap()
            .join("lib/python3.11");
        let sp = stdlib.join("site-packages");
        fs_err::create_dir_all(sp.join("pkg/sub")).unwrap();
        fs_err::create_dir_all(sp.join("pkg/ns")).unwrap();
        let sources = [
            ("pkg/__init__", "from . import plain\n"),
            ("pkg/plain", "from .sub import deep\nVALUE = deep.VALUE + 1\n"),
            ("pkg/here", "import os\nDATA = open(os.path.join(os.path.dirname(__file__), 'data.txt')).read()\n"),
            ("pkg/sub/__init__", ""),
            ("pkg/sub/deep", "VALUE = 41\n"),
            // A namespace folder with a module that moves and one that stays.
            ("pkg/ns/loose", "X = 'loose'\n"),
            ("pkg/ns/stays", "import os\nX = os.path.basename(__file__)\n"),
        ];
        for (name, text) in sources {
            let dir = sp.join(name).parent().unwrap().to_owned();
            let stem = Utf8Path::new(name).file_name().unwrap();
            compiled(&dir, stem, text);
            fs_err::remove_file(dir.join(format!("{stem}.py"))).unwrap();
        }
        fs_err::write(sp.join("pkg/data.txt"), "data").unwrap();
        let files: Vec<Utf8PathBuf> = crate::util::files_under(&sp).unwrap();
        let owner = |_: &Utf8Path| Some("pkg".to_owned());
        let keep = [crate::spec::rules::KeepOut {
            distribution: "pkg".into(),
            reason: "opens data by path".into(),
            split: true,
        }];
        let mut plan = super::super::plan(&files, &owner, &keep);
        let names = vec!["__file__".to_owned()];
        let split = decide(&sp, candidates(&files, &owner, &|_| true), &names).unwrap();
        assert_eq!(
            split.by_distribution["pkg"].0, 3,
            "plain, sub.deep, ns.loose move"
        );
        assert_eq!(split.by_distribution["pkg"].1, 2, "here and ns.stays stay");
        plan.add_split(split);
        super::super::write(&sp, &stdlib.join(super::super::FILE_NAME), &plan, None).unwrap();
        assert!(!sp.join("pkg/plain.pyc").exists() && sp.join("pkg/here.pyc").exists());
        let template = include_str!("../../../../../layer/sitecustomize.py");
        fs_err::write(
            stdlib.join("sitecustomize.py"),
            template.replace("__LAYER_ENV__", "{}"),
        )
        .unwrap();
        let script =
            "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import sitecustomize; \
                      import pkg, pkg.here, pkg.sub.deep, pkg.ns.loose, pkg.ns.stays; \
                      print(pkg.plain.VALUE, pkg.here.DATA, pkg.ns.loose.X, pkg.ns.stays.X, \
                            pkg.plain.__file__, pkg.sub.deep.__file__, pkg.ns.loose.__file__)";
        let out = duct::cmd!(
            PYTHON,
            "-I",
            "-S",
            "-c",
            script,
            stdlib.as_str(),
            sp.as_str()
        )
        .read()
        .unwrap();
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(&words[..4], ["42", "data", "loose", "stays.pyc"], "{out}");
        assert!(
            words[4].ends_with("site-packages.zip/pkg/plain.pyc"),
            "{out}"
        );
        assert!(
            words[5].ends_with("site-packages.zip/pkg/sub/deep.pyc"),
            "{out}"
        );
        assert!(
            words[6].ends_with("site-packages.zip/pkg/ns/loose.pyc"),
            "{out}"
        );
    }
}

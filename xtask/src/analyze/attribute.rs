//! Attribution: each file of a read layer assigned to the distribution that installed it, from
//! the `.dist-info` folders found anywhere in the tree (RECORD, else top-level names).

use std::collections::{BTreeMap, BTreeSet};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::deps;
use super::read::{self, RawLayer};
use crate::build::slim::prune::{classify, FileKind};

/// The kinds of file the analysis counts bytes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bytecode,
    Sources,
    Native,
    Data,
    Docs,
    Tests,
    Metadata,
    Licenses,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Bytecode,
        Kind::Sources,
        Kind::Native,
        Kind::Data,
        Kind::Docs,
        Kind::Tests,
        Kind::Metadata,
        Kind::Licenses,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bytecode => "bytecode",
            Kind::Sources => "sources",
            Kind::Native => "native",
            Kind::Data => "data",
            Kind::Docs => "docs",
            Kind::Tests => "tests",
            Kind::Metadata => "metadata",
            Kind::Licenses => "licenses",
        }
    }
}

/// The analysis' coarser view of `prune::classify`.
pub fn kind_of(path: &Utf8Path) -> Kind {
    match classify(path) {
        FileKind::Bytecode => Kind::Bytecode,
        FileKind::ModuleSource | FileKind::TypeStub | FileKind::CSource => Kind::Sources,
        FileKind::ExtensionModule | FileKind::SharedLibrary => Kind::Native,
        FileKind::DistMetadata | FileKind::DistRecord | FileKind::DistOther => Kind::Metadata,
        FileKind::License => Kind::Licenses,
        FileKind::Doc => Kind::Docs,
        FileKind::Test => Kind::Tests,
        FileKind::PackageData => Kind::Data,
    }
}

/// A file of the layer after attribution.
#[derive(Debug, Clone)]
pub struct File {
    pub path: Utf8PathBuf,
    pub bytes: u64,
    pub compressed: u64,
    pub kind: Kind,
    /// Index into `Layer::dists`.
    pub dist: Option<usize>,
    /// Index into `Layer::sites` when the file is under a site-packages folder.
    pub site: Option<usize>,
}

/// One installed distribution.
#[derive(Debug, Clone)]
pub struct Dist {
    pub name: String,
    pub norm: String,
    pub version: String,
    pub site: usize,
    pub requires: Vec<deps::Req>,
    /// How its files were found: `RECORD` or `top-level names`.
    pub attributed_by: &'static str,
}

/// A layer read and attributed.
#[derive(Debug)]
pub struct Layer {
    pub raw_zip_bytes: Option<u64>,
    pub unpacked_on_disk: u64,
    pub compressed_estimated: bool,
    pub files: Vec<File>,
    pub dists: Vec<Dist>,
    /// Folders (relative to the layer root) holding `.dist-info` folders or named site-packages.
    pub sites: Vec<Utf8PathBuf>,
    /// `3.11`, from `lib/python3.X/` in the tree.
    pub python_xy: Option<String>,
    /// `x86_64` or `aarch64`, from the extension modules' names.
    pub machine: Option<String>,
    pub contents: BTreeMap<Utf8PathBuf, Vec<u8>>,
    pub inner_zips: Vec<Utf8PathBuf>,
}

/// `Name`, `Version` of a METADATA text.
/// Whether `first` (the first component of a path in site-packages) is the top-level module
/// `name`: the package folder, `name.py`, `name.cpython-311-x86_64-linux-gnu.so`, `name.libs`.
pub(super) fn is_top_level(first: &str, name: &str) -> bool {
    first == name
        || first
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Module names a distribution commonly installs besides its own name, for layers whose
/// RECORD and top_level.txt are gone: `python-dotenv` -> `dotenv`, `rpds-py` -> `rpds`,
/// `pyyaml` -> `yaml`, `_yaml`; `tiktoken` -> `tiktoken_ext`; `attrs` -> `attr`.
pub(super) fn guessed_modules(norm: &str) -> Vec<String> {
    let n = norm.replace('-', "_");
    let mut stems = vec![n.clone()];
    for p in ["python_", "py_", "py"] {
        if let Some(rest) = n.strip_prefix(p).filter(|r| r.len() > 2) {
            stems.push(rest.to_owned());
        }
    }
    for suffix in ["_py", "_python", "s"] {
        if let Some(rest) = n.strip_suffix(suffix).filter(|r| r.len() > 2) {
            stems.push(rest.to_owned());
        }
    }
    stems
        .iter()
        .flat_map(|s| [s.clone(), format!("_{s}"), format!("{s}_ext")])
        .collect()
}

/// The top-level modules an `entry_points.txt` points into (`litellm = litellm_cli.main:cli`
/// -> `litellm_cli`): a distribution's console scripts and plug-ins name its own modules.
pub(super) fn entry_point_modules(entry_points: &str) -> Vec<String> {
    let mut out: Vec<String> = entry_points
        .lines()
        .filter(|l| !l.trim_start().starts_with(['[', '#', ';']))
        .filter_map(|l| l.split_once('='))
        .filter_map(|(_, target)| {
            let module = target.trim().split([':', '.', ' ', '[']).next()?;
            let ok = !module.is_empty()
                && module.chars().all(|c| c.is_alphanumeric() || c == '_')
                && !module.starts_with(|c: char| c.is_ascii_digit());
            ok.then(|| module.to_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The module name a first path component stands for: `six.py` -> `six`, `yaml/` -> `yaml`.
pub(super) fn module_of(first: &str) -> Option<&str> {
    if first.ends_with(".dist-info") || first.ends_with(".data") || first == "__pycache__" {
        return None;
    }
    let stem = first.split('.').next()?;
    (!stem.is_empty() && !first.ends_with(".pth")).then_some(stem)
}

pub(super) fn python_xy(files: &[read::RawFile]) -> Option<String> {
    for f in files {
        let mut comps = f.path.components().map(|c| c.as_str());
        while let Some(c) = comps.next() {
            if c == "lib" {
                if let Some(next) = comps.next() {
                    if let Some(xy) = next.strip_prefix("python") {
                        if xy.starts_with("3.") && xy[2..].chars().all(|c| c.is_ascii_digit()) {
                            return Some(xy.to_owned());
                        }
                    }
                }
            }
        }
    }
    None
}

pub(super) fn machine(files: &[read::RawFile]) -> Option<String> {
    for f in files {
        let p = f.path.as_str();
        if p.contains("x86_64-linux-gnu") || p.contains("manylinux") && p.contains("x86_64") {
            return Some("x86_64".into());
        }
        if p.contains("aarch64-linux-gnu") {
            return Some("aarch64".into());
        }
    }
    None
}

/// In a site folder that is not named site-packages (Lambda's classic `/opt/python`), the
/// interpreter's own folders (`bin/`, `lib/`...) are the runtime, not packages.
pub(super) fn runtime_below(site: &Utf8Path, path: &Utf8Path) -> bool {
    let named = matches!(
        site.file_name(),
        Some("site-packages" | "site-packages.zip")
    );
    let first = path
        .strip_prefix(site)
        .ok()
        .and_then(|r| r.components().next())
        .map(|c| c.as_str());
    !named && matches!(first, Some("bin" | "lib" | "lib64" | "include" | "share"))
}

/// Assigns every file to a distribution; pure.
///
/// Long on purpose: its stages (site folders, dist-info, RECORD, top-level names, bytecode)
/// share the indexes built along the way and each is one commented block, read top to bottom.
pub fn attribute(raw: RawLayer) -> Layer {
    let python_xy = python_xy(&raw.files);
    let machine = machine(&raw.files);
    // Site folders: where `.dist-info` folders are, plus anything named site-packages.
    let mut sites: BTreeSet<Utf8PathBuf> = BTreeSet::new();
    let mut infos: BTreeMap<Utf8PathBuf, Utf8PathBuf> = BTreeMap::new();
    for f in &raw.files {
        for anc in f.path.ancestors().skip(1) {
            let name = anc.file_name().unwrap_or_default();
            if name.ends_with(".dist-info") && f.path.file_name() == Some("METADATA") {
                let site = anc.parent().unwrap_or(Utf8Path::new("")).to_owned();
                infos.insert(anc.to_owned(), site.clone());
                sites.insert(site);
            }
            if name == "site-packages" || name == "site-packages.zip" {
                sites.insert(anc.to_owned());
            }
        }
    }
    let sites: Vec<Utf8PathBuf> = sites.into_iter().collect();
    let site_index = |p: &Utf8Path| -> Option<usize> {
        // The deepest site folder holding the path: `python/` is a site in Lambda's classic
        // layout, and `python/lib/python3.11/site-packages` is below it.
        sites
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_str().is_empty() || p.starts_with(s))
            .filter(|(_, s)| !runtime_below(s, p))
            .max_by_key(|(_, s)| s.components().count())
            .map(|(i, _)| i)
    };
    let mut files: Vec<File> = raw
        .files
        .iter()
        .map(|f| File {
            path: f.path.clone(),
            bytes: f.bytes,
            compressed: f.compressed,
            kind: kind_of(&f.path),
            dist: None,
            site: site_index(&f.path),
        })
        .collect();
    let mut by_path: BTreeMap<Utf8PathBuf, usize> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        by_path.insert(f.path.clone(), i);
    }
    let text = |p: &Utf8Path| {
        raw.contents
            .get(p)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };

    let mut dists = Vec::new();
    let mut top_levels: Vec<Vec<String>> = Vec::new();
    let mut entry_points: Vec<Vec<String>> = Vec::new();
    for (info, site) in &infos {
        let metadata = text(&info.join("METADATA")).unwrap_or_default();
        let dir_name = info.file_name().unwrap_or_default();
        let (name, version) =
            crate::python::distinfo::name_version(&metadata).unwrap_or_else(|| {
                let stem = dir_name.trim_end_matches(".dist-info");
                let (n, v) = stem.split_once('-').unwrap_or((stem, "?"));
                (n.to_owned(), v.to_owned())
            });
        let norm = crate::python::wheel::normalize(&name);
        let Some(site) = sites.iter().position(|s| s == site) else {
            continue;
        };
        let record = text(&info.join("RECORD"));
        let d = dists.len();
        // The dist-info folder is the distribution's own, whatever RECORD says.
        for (p, &i) in by_path.range(info.clone()..) {
            if !p.starts_with(info) {
                break;
            }
            files[i].dist = Some(d);
        }
        let mut by_record = false;
        if let Some(record) = &record {
            for rel in crate::python::distinfo::record_paths(record) {
                if let Some(&i) = by_path.get(&sites[site].join(&rel)) {
                    files[i].dist.get_or_insert(d);
                    by_record = true;
                }
            }
        }
        let mut tops: Vec<String> = text(&info.join("top_level.txt"))
            .map(|t| {
                t.lines()
                    .map(|l| l.trim().split('/').next().unwrap_or_default().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if tops.is_empty() {
            tops.push(norm.replace('-', "_"));
        }
        top_levels.push(tops);
        entry_points.push(
            text(&info.join("entry_points.txt"))
                .map(|t| entry_point_modules(&t))
                .unwrap_or_default(),
        );
        dists.push(Dist {
            name,
            norm,
            version,
            site,
            requires: deps::requires_dist(&metadata),
            attributed_by: if by_record {
                "RECORD"
            } else {
                "top-level names"
            },
        });
    }
    // Files no RECORD lists (RECORD pruned, or never there): by top-level name, first the names
    // the distribution declares, then names guessed from its own, then the modules its entry
    // points name (litellm's wheel has no top_level.txt, and its `litellm_cli` is named only
    // by its console scripts).
    let guesses: Vec<Vec<String>> = dists.iter().map(|d| guessed_modules(&d.norm)).collect();
    for names in [&top_levels, &guesses, &entry_points] {
        for f in files.iter_mut().filter(|f| f.dist.is_none()) {
            let Some(site) = f.site else { continue };
            let Ok(rel) = f.path.strip_prefix(&sites[site]) else {
                continue;
            };
            let Some(first) = rel.components().next().map(|c| c.as_str()) else {
                continue;
            };
            let owns = |tops: &Vec<String>| tops.iter().any(|t| is_top_level(first, t));
            // Same site first; then any: a split package's modules sit in site-packages.zip
            // while its distribution (and RECORD) stays in the folder.
            f.dist = dists
                .iter()
                .zip(names.iter())
                .position(|(d, tops)| d.site == site && owns(tops))
                .or_else(|| names.iter().position(owns));
        }
    }
    // Bytecode compiled after installation belongs to its source's distribution.
    for i in 0..files.len() {
        if files[i].dist.is_some() || files[i].kind != Kind::Bytecode {
            continue;
        }
        let Some(site) = files[i].site else { continue };
        let Ok(rel) = files[i].path.strip_prefix(&sites[site]) else {
            continue;
        };
        let owner = crate::core::source_of_pyc(rel)
            .and_then(|src| by_path.get(&sites[site].join(src)))
            .and_then(|&j| files[j].dist);
        files[i].dist = owner;
    }
    Layer {
        raw_zip_bytes: raw.zip_bytes,
        unpacked_on_disk: raw.unpacked_on_disk,
        compressed_estimated: raw.compressed_estimated,
        files,
        dists,
        sites,
        python_xy,
        machine,
        contents: raw.contents,
        inner_zips: raw.inner_zips,
    }
}

impl Layer {
    /// Top-level module name -> normalized distribution, for the scan.
    pub(super) fn modules(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for f in &self.files {
            let (Some(d), Some(site)) = (f.dist, f.site) else {
                continue;
            };
            let Ok(rel) = f.path.strip_prefix(&self.sites[site]) else {
                continue;
            };
            if let Some(m) = rel.components().next().and_then(|c| module_of(c.as_str())) {
                out.entry(m.to_owned())
                    .or_insert_with(|| self.dists[d].norm.clone());
            }
        }
        out
    }

    pub(super) fn requires(&self) -> BTreeMap<String, Vec<deps::Req>> {
        let mut out: BTreeMap<String, Vec<deps::Req>> = BTreeMap::new();
        for d in &self.dists {
            out.entry(d.norm.clone())
                .or_default()
                .extend(d.requires.iter().cloned());
        }
        out
    }

    pub(super) fn env(&self, spec: Option<&crate::spec::Spec>) -> crate::python::marker::Env {
        let xy = self
            .python_xy
            .clone()
            .or_else(|| spec.map(|s| s.python_xy()))
            .unwrap_or_else(|| "3.11".into());
        let full = spec
            .map(|s| s.python.version.clone())
            .filter(|v| v.starts_with(&format!("{xy}.")))
            .unwrap_or_else(|| format!("{xy}.0"));
        crate::python::marker::Env {
            machine: self.machine.clone().unwrap_or_else(|| "x86_64".into()),
            python_version: xy,
            python_full_version: full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::report::{requirements, summarize};

    fn raw(files: &[(&str, u64)], contents: &[(&str, &str)]) -> RawLayer {
        RawLayer {
            files: files
                .iter()
                .map(|(p, b)| read::RawFile {
                    path: (*p).into(),
                    bytes: *b,
                    compressed: b / 2,
                })
                .collect(),
            contents: contents
                .iter()
                .map(|(p, c)| ((*p).into(), c.as_bytes().to_vec()))
                .collect(),
            ..RawLayer::default()
        }
    }

    #[test]
    fn record_paths_table() {
        let record = "six.py,sha256=abc,100\n\"we,ird.py\",,\n../../bin/tool,,\n../../../../../escape,,\nsix-1.0.dist-info/RECORD,,\n";
        let got: Vec<String> = crate::python::distinfo::record_paths(record)
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(got, ["six.py", "we,ird.py", "six-1.0.dist-info/RECORD"]);
    }

    #[test]
    fn top_level_names_table() {
        let table = [
            ("yaml", "yaml", true),
            ("six.py", "six", true),
            ("_yaml.cpython-311-x86_64-linux-gnu.so", "_yaml", true),
            ("numpy.libs", "numpy", true),
            ("sixty.py", "six", false),
            ("six_extra", "six", false),
        ];
        for (first, name, expected) in table {
            assert_eq!(is_top_level(first, name), expected, "{first} {name}");
        }
        assert_eq!(module_of("six.py"), Some("six"));
        for (dist, module) in [
            ("python-dotenv", "dotenv"),
            ("rpds-py", "rpds"),
            ("pyyaml", "_yaml"),
            ("pyyaml", "yaml"),
            ("tiktoken", "tiktoken_ext"),
            ("attrs", "attr"),
        ] {
            assert!(guessed_modules(dist).contains(&module.to_owned()), "{dist}");
        }
        assert_eq!(module_of("six-1.0.dist-info"), None);
        assert_eq!(
            entry_point_modules(
                "[console_scripts]\nlite=litellm_cli.main:cli\nlitellm = litellm_cli.main:proxy_server\n# x = y:z\n\n[a.b]\nplug = pkg_x [extra]\nbad = 9x:y\n"
            ),
            ["litellm_cli", "pkg_x"]
        );
        assert_eq!(module_of("distutils-precedence.pth"), None);
    }

    #[test]
    fn attribution_by_record_by_name_and_bytecode_follows_source() {
        let sp = "python/lib/python3.11/site-packages";
        let files = [
            (format!("{sp}/a-1.0.dist-info/METADATA"), 10),
            (format!("{sp}/a-1.0.dist-info/RECORD"), 10),
            (format!("{sp}/a/__init__.py"), 100),
            (format!("{sp}/a/__pycache__/__init__.cpython-311.pyc"), 50),
            (format!("{sp}/b-2.0.dist-info/METADATA"), 10),
            (format!("{sp}/b_pkg/mod.pyc"), 30),
            (format!("{sp}/b_cli/main.pyc"), 9),
            (format!("{sp}/stray.py"), 7),
            ("python/lib/python3.11/os.py".to_owned(), 1000),
            // Lambda's classic layout beside it: `python/` itself is a site folder.
            ("python/c-3.0.dist-info/METADATA".to_owned(), 10),
            ("python/c.py".to_owned(), 20),
        ];
        let files: Vec<(&str, u64)> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let meta_a = "Name: A\nVersion: 1.0\nRequires-Dist: b\n\nbody";
        let record_a = "a/__init__.py,,\na-1.0.dist-info/METADATA,,\n";
        let meta_b = "Name: b\nVersion: 2.0\n";
        let meta_c = "Name: c\nVersion: 3.0\n";
        let contents = [
            (format!("{sp}/a-1.0.dist-info/METADATA"), meta_a),
            (format!("{sp}/a-1.0.dist-info/RECORD"), record_a),
            (format!("{sp}/b-2.0.dist-info/METADATA"), meta_b),
            (format!("{sp}/b-2.0.dist-info/top_level.txt"), "b_pkg\n"),
            (
                format!("{sp}/b-2.0.dist-info/entry_points.txt"),
                "[console_scripts]\nb = b_cli.main:run\n",
            ),
            ("python/c-3.0.dist-info/METADATA".to_owned(), meta_c),
        ];
        let contents: Vec<(&str, &str)> = contents.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        let layer = attribute(raw(&files, &contents));
        let owner = |path: &str| -> Option<&str> {
            let f = layer.files.iter().find(|f| f.path == path).unwrap();
            f.dist.map(|d| layer.dists[d].norm.as_str())
        };
        assert_eq!(owner(&format!("{sp}/a/__init__.py")), Some("a"));
        assert_eq!(
            owner(&format!("{sp}/a/__pycache__/__init__.cpython-311.pyc")),
            Some("a")
        );
        assert_eq!(
            owner(&format!("{sp}/b_pkg/mod.pyc")),
            Some("b"),
            "top_level.txt"
        );
        assert_eq!(
            owner(&format!("{sp}/b_cli/main.pyc")),
            Some("b"),
            "named by an entry point"
        );
        assert_eq!(owner(&format!("{sp}/stray.py")), None);
        assert_eq!(owner("python/lib/python3.11/os.py"), None);
        assert_eq!(owner("python/c.py"), Some("c"));
        assert_eq!(layer.python_xy.as_deref(), Some("3.11"));
        let a = summarize(&layer, Utf8Path::new("x.zip"), 3);
        let names: Vec<&str> = a.distributions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["A", "b", "c"]);
        assert_eq!(a.distributions[0].bytes, 170);
        assert_eq!(a.distributions[0].attributed_by, "RECORD");
        assert_eq!(a.unattributed.files, 1);
        assert_eq!(a.outside_site_packages.bytes, 1000);
        assert_eq!(a.largest[0].path, "python/lib/python3.11/os.py");
        let req = requirements(&layer, None);
        assert_eq!(req.roots, ["a", "c"]);
    }

    #[test]
    fn kinds_table() {
        let table = [
            ("x/__pycache__/m.cpython-311.pyc", Kind::Bytecode),
            ("x/m.py", Kind::Sources),
            ("x/m.pyi", Kind::Sources),
            ("x/_m.abi3.so", Kind::Native),
            ("x/data.json", Kind::Data),
            ("x/README.md", Kind::Docs),
            ("x/tests/test_m.py", Kind::Tests),
            ("x-1.dist-info/RECORD", Kind::Metadata),
            ("x-1.dist-info/LICENSE", Kind::Licenses),
        ];
        for (p, k) in table {
            assert_eq!(kind_of(Utf8Path::new(p)), k, "{p}");
        }
    }
}

//! `cargo xtask analyze`: what any layer (a zip or an unpacked folder, this tool's or anybody's)
//! is made of, what the pruning rules would still remove, and, with `--diff`, what changed
//! between two layers.
//!
//! Reading (`read`) gives a flat file list; `attribute` assigns each file to a distribution
//! from the `.dist-info` folders found anywhere in the tree; the rest is arithmetic over that.

mod deps;
mod diff;
mod html;
mod read;
pub(crate) mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::build::slim::prune::{classify, FileKind};
use crate::util::fmt::mb;
use read::RawLayer;

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
fn is_top_level(first: &str, name: &str) -> bool {
    first == name
        || first
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Module names a distribution commonly installs besides its own name, for layers whose
/// RECORD and top_level.txt are gone: `python-dotenv` -> `dotenv`, `rpds-py` -> `rpds`,
/// `pyyaml` -> `yaml`, `_yaml`; `tiktoken` -> `tiktoken_ext`; `attrs` -> `attr`.
fn guessed_modules(norm: &str) -> Vec<String> {
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

/// The module name a first path component stands for: `six.py` -> `six`, `yaml/` -> `yaml`.
fn module_of(first: &str) -> Option<&str> {
    if first.ends_with(".dist-info") || first.ends_with(".data") || first == "__pycache__" {
        return None;
    }
    let stem = first.split('.').next()?;
    (!stem.is_empty() && !first.ends_with(".pth")).then_some(stem)
}

fn python_xy(files: &[read::RawFile]) -> Option<String> {
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

fn machine(files: &[read::RawFile]) -> Option<String> {
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
fn runtime_below(site: &Utf8Path, path: &Utf8Path) -> bool {
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
    // the distribution declares, then names guessed from its own.
    let guesses: Vec<Vec<String>> = dists.iter().map(|d| guessed_modules(&d.norm)).collect();
    for names in [&top_levels, &guesses] {
        for f in files.iter_mut().filter(|f| f.dist.is_none()) {
            let Some(site) = f.site else { continue };
            let Ok(rel) = f.path.strip_prefix(&sites[site]) else {
                continue;
            };
            let Some(first) = rel.components().next().map(|c| c.as_str()) else {
                continue;
            };
            f.dist = dists.iter().zip(names.iter()).position(|(d, tops)| {
                d.site == site && tops.iter().any(|t| is_top_level(first, t))
            });
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
    fn modules(&self) -> BTreeMap<String, String> {
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

    fn requires(&self) -> BTreeMap<String, Vec<deps::Req>> {
        let mut out: BTreeMap<String, Vec<deps::Req>> = BTreeMap::new();
        for d in &self.dists {
            out.entry(d.norm.clone())
                .or_default()
                .extend(d.requires.iter().cloned());
        }
        out
    }

    fn env(&self, spec: Option<&crate::spec::Spec>) -> crate::python::marker::Env {
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

// ---------------------------------------------------------------------------------------------
// What the analysis reports.

#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    pub name: String,
    pub files: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
}

impl Bucket {
    fn add(&mut self, f: &File) {
        self.files += 1;
        self.bytes += f.bytes;
        self.compressed_bytes += f.compressed;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DistReport {
    pub name: String,
    pub normalized: String,
    pub version: String,
    pub site: Utf8PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
    pub kinds: BTreeMap<Kind, u64>,
    pub attributed_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: Utf8PathBuf,
    pub bytes: u64,
    pub compressed_bytes: u64,
    pub kind: Kind,
    pub distribution: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub name: String,
    /// `version at site`.
    pub copies: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Requirements {
    /// `spec PATH` or `distributions no other one requires`.
    pub roots_from: String,
    pub roots: Vec<String>,
    /// Present, but nothing the roots require pulls them in (empty when the roots were
    /// derived from the layer itself).
    pub not_required: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleSaving {
    pub rule: String,
    pub reason: String,
    pub files: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelSaving {
    pub level: String,
    pub files: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
    pub rules: Vec<RuleSaving>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pruning {
    pub rules_file: Utf8PathBuf,
    pub levels: Vec<LevelSaving>,
    /// Files a rule matched that protections keep.
    pub refused_files: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub layer: Utf8PathBuf,
    pub zip_bytes: Option<u64>,
    /// Unpacked as Lambda counts it (a site-packages.zip counts as one file).
    pub unpacked_bytes: u64,
    /// Sum over every file, site-packages.zip's members counted unpacked.
    pub files_bytes: u64,
    pub compressed_bytes: u64,
    /// True for a folder: compressed bytes are estimated by deflating each file at level 6.
    pub compressed_estimated: bool,
    pub files: u64,
    pub python: Option<String>,
    pub machine: Option<String>,
    pub sites: Vec<Utf8PathBuf>,
    pub distributions: Vec<DistReport>,
    /// Files outside every site-packages folder: the interpreter and standard library, or
    /// whatever else the layer carries.
    pub outside_site_packages: Bucket,
    /// Files in a site-packages folder that no distribution claims.
    pub unattributed: Bucket,
    pub folders: Vec<Bucket>,
    pub kinds: Vec<Bucket>,
    pub largest: Vec<FileReport>,
    pub duplicates: Vec<Duplicate>,
    pub requirements: Requirements,
    pub pruning: Option<Pruning>,
    pub scan: Option<scan::ScanReport>,
    pub notes: Vec<String>,
}

/// The folder a file counts under: `<site>/<top-level name>` inside site-packages, else the
/// first three folders of its path (`python/lib/python3.11`, `python/bin`).
fn folder_of(f: &File, sites: &[Utf8PathBuf]) -> String {
    if let Some(site) = f.site {
        if let Ok(rel) = f.path.strip_prefix(&sites[site]) {
            let first = rel.components().next().map(|c| c.as_str()).unwrap_or("");
            return if sites[site].as_str().is_empty() {
                first.to_owned()
            } else {
                format!("{}/{first}", sites[site])
            };
        }
    }
    let dirs: Vec<&str> = f
        .path
        .parent()
        .map(|p| p.components().map(|c| c.as_str()).take(3).collect())
        .unwrap_or_default();
    if dirs.is_empty() {
        "(layer root)".into()
    } else {
        dirs.join("/")
    }
}

/// The numbers every analysis has (no rules, no requirements, no scan); pure.
fn summarize(layer: &Layer, source: &Utf8Path, top: usize) -> Analysis {
    let mut per_dist: Vec<(Bucket, BTreeMap<Kind, u64>)> =
        vec![Default::default(); layer.dists.len()];
    let mut outside = Bucket {
        name: "(outside site-packages)".into(),
        ..Bucket::default()
    };
    let mut unattributed = Bucket {
        name: "(unattributed)".into(),
        ..Bucket::default()
    };
    let mut folders: BTreeMap<String, Bucket> = BTreeMap::new();
    let mut kinds: BTreeMap<Kind, Bucket> = BTreeMap::new();
    for f in &layer.files {
        match (f.dist, f.site) {
            (Some(d), _) => {
                per_dist[d].0.add(f);
                *per_dist[d].1.entry(f.kind).or_default() += f.bytes;
            }
            (None, Some(_)) => unattributed.add(f),
            (None, None) => outside.add(f),
        }
        let folder = folder_of(f, &layer.sites);
        folders
            .entry(folder.clone())
            .or_insert_with(|| Bucket {
                name: folder,
                ..Bucket::default()
            })
            .add(f);
        kinds
            .entry(f.kind)
            .or_insert_with(|| Bucket {
                name: f.kind.as_str().into(),
                ..Bucket::default()
            })
            .add(f);
    }
    let mut distributions: Vec<DistReport> = layer
        .dists
        .iter()
        .zip(per_dist)
        .map(|(d, (b, k))| DistReport {
            name: d.name.clone(),
            normalized: d.norm.clone(),
            version: d.version.clone(),
            site: layer.sites[d.site].clone(),
            files: b.files,
            bytes: b.bytes,
            compressed_bytes: b.compressed_bytes,
            kinds: k,
            attributed_by: d.attributed_by.into(),
        })
        .collect();
    distributions.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    let by_size = |mut v: Vec<Bucket>| {
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        v
    };
    let mut largest: Vec<&File> = layer.files.iter().collect();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    let largest = largest
        .into_iter()
        .take(top)
        .map(|f| FileReport {
            path: f.path.clone(),
            bytes: f.bytes,
            compressed_bytes: f.compressed,
            kind: f.kind,
            distribution: f.dist.map(|d| layer.dists[d].name.clone()),
        })
        .collect();
    let mut copies: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in &layer.dists {
        copies
            .entry(&d.norm)
            .or_default()
            .push(format!("{} at {}", d.version, layer.sites[d.site]));
    }
    let duplicates = copies
        .into_iter()
        .filter(|(_, c)| c.len() > 1)
        .map(|(n, c)| Duplicate {
            name: n.to_owned(),
            copies: c,
        })
        .collect();
    let mut notes = Vec::new();
    if layer.compressed_estimated {
        notes.push("compressed sizes are estimated: each file deflated at level 6".into());
    }
    for z in &layer.inner_zips {
        notes.push(format!(
            "{z} was opened: its members are counted one by one, unpacked and compressed as stored in it"
        ));
    }
    if unattributed.files > 0 {
        notes.push(format!(
            "{} files in site-packages belong to no distribution found (no RECORD lists them and no top-level name matches)",
            unattributed.files
        ));
    }
    Analysis {
        layer: source.to_owned(),
        zip_bytes: layer.raw_zip_bytes,
        unpacked_bytes: layer.unpacked_on_disk,
        files_bytes: layer.files.iter().map(|f| f.bytes).sum(),
        compressed_bytes: layer.files.iter().map(|f| f.compressed).sum(),
        compressed_estimated: layer.compressed_estimated,
        files: layer.files.len() as u64,
        python: layer.python_xy.clone(),
        machine: layer.machine.clone(),
        sites: layer.sites.clone(),
        distributions,
        outside_site_packages: outside,
        unattributed,
        folders: by_size(folders.into_values().collect()),
        kinds: by_size(kinds.into_values().collect()),
        largest,
        duplicates,
        requirements: Requirements {
            roots_from: String::new(),
            roots: Vec::new(),
            not_required: Vec::new(),
        },
        pruning: None,
        scan: None,
        notes,
    }
}

fn requirements(layer: &Layer, spec: Option<&crate::spec::Spec>) -> Requirements {
    let env = layer.env(spec);
    let requires = layer.requires();
    match spec {
        Some(spec) => {
            let roots: Vec<deps::Req> = spec
                .requirements
                .packages
                .iter()
                .filter_map(|r| deps::parse_requirement(r))
                .collect();
            let reached = deps::reachable(&requires, &roots, &env);
            Requirements {
                roots_from: format!("spec {}", spec.path),
                roots: spec.requirements.packages.clone(),
                not_required: requires
                    .keys()
                    .filter(|n| !reached.contains(*n))
                    .cloned()
                    .collect(),
            }
        }
        None => Requirements {
            roots_from: "distributions no other one requires".into(),
            roots: deps::roots_of(&requires, &env),
            not_required: Vec::new(),
        },
    }
}

/// The libraries `python/bin/python3.X` needs, as layer paths: the rules may not remove them.
fn interpreter_needs(layer: &Layer) -> Vec<Utf8PathBuf> {
    let mut out = Vec::new();
    for (path, bytes) in &layer.contents {
        if path.parent().and_then(Utf8Path::file_name) != Some("bin") {
            continue;
        }
        let Ok(elf) = crate::util::elf::inspect(bytes) else {
            continue;
        };
        out.push(path.clone());
        let lib = path
            .parent()
            .and_then(Utf8Path::parent)
            .map(|p| p.join("lib"))
            .unwrap_or_default();
        out.extend(elf.needed.iter().map(|l| lib.join(l)));
    }
    out
}

/// What the rules would still remove, grouped by level. Files of every site folder are seen
/// by the rules as if they were in `python/lib/python3.X/site-packages`, where the rules look.
fn pruning(
    layer: &Layer,
    rules_path: &Utf8Path,
    spec: Option<&crate::spec::Spec>,
) -> Result<Pruning> {
    use crate::build::slim::prune::{Entry, Protections, Rule};
    use crate::core::Layout;
    use crate::spec::rules::RulesFile;
    let rules_file = RulesFile::load(rules_path)?;
    let xy = layer
        .python_xy
        .clone()
        .or_else(|| spec.map(|s| s.python_xy()))
        .unwrap_or_else(|| "3.11".into());
    let layout = Layout { xy };
    let disabled: &[String] = spec.map(|s| s.prune.disable.as_slice()).unwrap_or(&[]);
    let defs: Vec<crate::spec::rules::RuleDef> = rules_file
        .rules
        .iter()
        .filter(|r| !disabled.contains(&r.name))
        .chain(spec.map(|s| s.prune.rule.as_slice()).unwrap_or(&[]))
        .cloned()
        .collect();
    let rules = defs
        .iter()
        .map(|d| Rule::compile(d, &layout))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("compiling the rules of {rules_path}"))?;
    let protections = Protections::new(
        &layout,
        &rules_file.protect.paths,
        &rules_file.protect.startup_modules,
        &interpreter_needs(layer),
        spec.map(|s| s.prune.keep.as_slice()).unwrap_or(&[]),
    )
    .with_context(|| format!("the protections of {rules_path}"))?;
    let canonical_sp = layout.site_packages();
    let mut compressed: BTreeMap<Utf8PathBuf, u64> = BTreeMap::new();
    let entries: Vec<Entry> = layer
        .files
        .iter()
        .map(|f| {
            let path = match f.site {
                Some(s) => {
                    canonical_sp.join(f.path.strip_prefix(&layer.sites[s]).unwrap_or(&f.path))
                }
                None => f.path.clone(),
            };
            *compressed.entry(path.clone()).or_default() += f.compressed;
            Entry {
                path,
                bytes: f.bytes,
                dist: f.dist.map(|d| layer.dists[d].norm.clone()),
            }
        })
        .collect();
    let plan = crate::build::slim::prune::plan(&entries, &rules, &protections);
    let mut per_rule: Vec<u64> = vec![0; rules.len()];
    for (path, &i) in &plan.delete {
        per_rule[i] += compressed.get(path).copied().unwrap_or(0);
    }
    let mut levels: BTreeMap<crate::spec::rules::Level, LevelSaving> = BTreeMap::new();
    for (i, def) in defs.iter().enumerate() {
        let (_, files, bytes) = &plan.totals[i];
        if *files == 0 {
            continue;
        }
        let level = levels.entry(def.level).or_insert_with(|| LevelSaving {
            level: format!("{:?}", def.level).to_lowercase(),
            files: 0,
            bytes: 0,
            compressed_bytes: 0,
            rules: Vec::new(),
        });
        level.files += files;
        level.bytes += bytes;
        level.compressed_bytes += per_rule[i];
        level.rules.push(RuleSaving {
            rule: def.name.clone(),
            reason: def.reason.clone(),
            files: *files,
            bytes: *bytes,
            compressed_bytes: per_rule[i],
        });
    }
    for l in levels.values_mut() {
        l.rules.sort_by_key(|r| std::cmp::Reverse(r.bytes));
    }
    Ok(Pruning {
        rules_file: rules_path.to_owned(),
        levels: levels.into_values().collect(),
        refused_files: plan.refused.len() as u64,
    })
}

/// Provider names: from the layer's LiteLLM when it has one, else the data file.
fn provider_names(
    layer: &Layer,
    data: &crate::spec::ProvidersFile,
    data_path: &Utf8Path,
) -> (Vec<String>, String) {
    for (path, bytes) in &layer.contents {
        if path.as_str().ends_with("litellm/types/utils.py") {
            let names = scan::providers_from_litellm(&String::from_utf8_lossy(bytes));
            if !names.is_empty() {
                return (names, format!("{path} (LlmProviders)"));
            }
        }
    }
    (data.providers.clone(), format!("{data_path}"))
}

// ---------------------------------------------------------------------------------------------
// Text for people.

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

impl Analysis {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let est = if self.compressed_estimated {
            " (estimated)"
        } else {
            ""
        };
        let _ = writeln!(s, "layer       {}", self.layer);
        if let Some(z) = self.zip_bytes {
            let _ = writeln!(s, "zip         {}", mb(z));
        }
        let _ = writeln!(
            s,
            "unpacked    {} in {} files; compressed {}{est}",
            mb(self.unpacked_bytes),
            self.files,
            mb(self.compressed_bytes)
        );
        if let Some(py) = &self.python {
            let _ = writeln!(
                s,
                "python      {py} ({})",
                self.machine.as_deref().unwrap_or("architecture unknown")
            );
        }
        for site in &self.sites {
            let _ = writeln!(
                s,
                "site        {}",
                if site.as_str().is_empty() {
                    "(layer root)"
                } else {
                    site.as_str()
                }
            );
        }
        let total = self.files_bytes;
        let _ = writeln!(s, "\nby distribution");
        let _ = writeln!(
            s,
            "  {:<32} {:>12} {:>7} {:>10} {:>10} {:>6}",
            "name", "version", "files", "unpacked", "zipped", "share"
        );
        let other = [&self.outside_site_packages, &self.unattributed];
        for d in &self.distributions {
            let _ = writeln!(
                s,
                "  {:<32} {:>12} {:>7} {:>10} {:>10} {:>6}",
                d.name,
                d.version,
                d.files,
                mb(d.bytes),
                mb(d.compressed_bytes),
                pct(d.bytes, total)
            );
        }
        for b in other.into_iter().filter(|b| b.files > 0) {
            let _ = writeln!(
                s,
                "  {:<32} {:>12} {:>7} {:>10} {:>10} {:>6}",
                b.name,
                "",
                b.files,
                mb(b.bytes),
                mb(b.compressed_bytes),
                pct(b.bytes, total)
            );
        }
        let table = |s: &mut String, title: &str, rows: &[Bucket], limit: usize| {
            let _ = writeln!(s, "\n{title}");
            for b in rows.iter().take(limit) {
                let _ = writeln!(
                    s,
                    "  {:<56} {:>7} {:>10} {:>10} {:>6}",
                    b.name,
                    b.files,
                    mb(b.bytes),
                    mb(b.compressed_bytes),
                    pct(b.bytes, total)
                );
            }
            if rows.len() > limit {
                let _ = writeln!(s, "  ... {} more", rows.len() - limit);
            }
        };
        table(&mut s, "by kind of file", &self.kinds, usize::MAX);
        table(&mut s, "by top-level folder", &self.folders, 25);
        let _ = writeln!(s, "\nlargest files");
        for f in &self.largest {
            let _ = writeln!(
                s,
                "  {:>10}  {:<9} {}{}",
                mb(f.bytes),
                f.kind.as_str(),
                f.path,
                f.distribution
                    .as_ref()
                    .map(|d| format!("  ({d})"))
                    .unwrap_or_default()
            );
        }
        if let Some(p) = &self.pruning {
            let _ = writeln!(s, "\nwhat the rules ({}) would still remove", p.rules_file);
            if p.levels.is_empty() {
                let _ = writeln!(s, "  nothing: every rule's files are already gone");
            }
            for l in &p.levels {
                let _ = writeln!(
                    s,
                    "  level {:<6} {:>7} files {:>10} unpacked {:>10} zipped",
                    l.level,
                    l.files,
                    mb(l.bytes),
                    mb(l.compressed_bytes)
                );
                for r in &l.rules {
                    let _ = writeln!(
                        s,
                        "    {:<36} {:>7} {:>10} {:>10}",
                        r.rule,
                        r.files,
                        mb(r.bytes),
                        mb(r.compressed_bytes)
                    );
                }
            }
            if p.refused_files > 0 {
                let _ = writeln!(
                    s,
                    "  ({} more files matched a rule but are protected)",
                    p.refused_files
                );
            }
        }
        if !self.duplicates.is_empty() {
            let _ = writeln!(s, "\ndistributions present more than once");
            for d in &self.duplicates {
                let _ = writeln!(s, "  {}: {}", d.name, d.copies.join("; "));
            }
        }
        let r = &self.requirements;
        let _ = writeln!(s, "\nrequirements ({})", r.roots_from);
        let _ = writeln!(s, "  roots: {}", r.roots.join(", "));
        if r.roots_from.starts_with("spec") {
            if r.not_required.is_empty() {
                let _ = writeln!(s, "  every distribution is pulled in by the requirements");
            } else {
                let _ = writeln!(
                    s,
                    "  nothing in the requirements pulls in: {}",
                    r.not_required.join(", ")
                );
            }
        }
        if let Some(scan) = &self.scan {
            let _ = writeln!(s, "\nsource scan of {} ({} files)", scan.dir, scan.files);
            let _ = writeln!(
                s,
                "  LiteLLM providers referenced ({} known, from {}):",
                scan.providers_known, scan.provider_names_from
            );
            if scan.providers.is_empty() {
                let _ = writeln!(s, "    none");
            }
            for p in &scan.providers {
                let _ = writeln!(
                    s,
                    "    {:<20} {:>4}x  e.g. {}",
                    p.provider,
                    p.count,
                    p.examples.first().map(String::as_str).unwrap_or("")
                );
            }
            let _ = writeln!(s, "  layer modules imported directly:");
            if scan.modules.is_empty() {
                let _ = writeln!(s, "    none");
            }
            for m in &scan.modules {
                let _ = writeln!(
                    s,
                    "    {:<20} {:>4}x  from {}  e.g. {}",
                    m.module,
                    m.count,
                    m.distribution.as_deref().unwrap_or("?"),
                    m.example
                );
            }
            if !scan.modules_elsewhere.is_empty() {
                let _ = writeln!(
                    s,
                    "  imported, not in the layer (standard library or missing): {}",
                    scan.modules_elsewhere.join(", ")
                );
            }
            let _ = writeln!(
                s,
                "  distributions nothing imported needs (candidates to leave out):"
            );
            if scan.distributions_not_needed.is_empty() {
                let _ = writeln!(s, "    none");
            }
            for (d, b) in &scan.distributions_not_needed {
                let _ = writeln!(s, "    {:<32} {:>10}", d, mb(*b));
            }
            let _ = writeln!(
                s,
                "  (LiteLLM imports every provider's code at start-up: the provider list says what the code uses, not what can be deleted)"
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The command.

/// The last layer built: the spec's default architecture first, else the newest report.json
/// under target/layer/.
fn default_layer(spec: &crate::spec::Spec) -> Result<Utf8PathBuf> {
    let mut candidates = vec![crate::core::default_out_dir(spec.layer.default_arch)];
    let layer_dir = crate::core::target_dir().join("layer");
    if let Ok(dirs) = fs_err::read_dir(&layer_dir) {
        let mut others: Vec<(std::time::SystemTime, Utf8PathBuf)> = dirs
            .filter_map(|d| d.ok())
            .filter_map(|d| crate::util::utf8(d.path()).ok())
            .filter_map(|p| {
                let t = fs_err::metadata(p.join("report.json"))
                    .ok()?
                    .modified()
                    .ok()?;
                Some((t, p))
            })
            .collect();
        others.sort();
        candidates.extend(others.into_iter().rev().map(|(_, p)| p));
    }
    for dir in candidates {
        let report = dir.join("report.json");
        if let Ok(text) = fs_err::read_to_string(&report) {
            let r: crate::build::report::Report =
                serde_json::from_str(&text).with_context(|| format!("reading {report}"))?;
            if r.zip_path.exists() {
                return Ok(r.zip_path);
            }
        }
    }
    anyhow::bail!(
        "no layer given and none built under {layer_dir}: run `cargo xtask layer` or pass a zip or folder"
    )
}

/// `report.json` written by this tool beside a zip (or beside the `tree/` folder it built from).
fn own_report(layer: &Utf8Path) -> Option<(Utf8PathBuf, crate::build::report::Report)> {
    let dir = layer.parent()?;
    let path = dir.join("report.json");
    let text = fs_err::read_to_string(&path).ok()?;
    let report = serde_json::from_str(&text).ok()?;
    Some((path, report))
}

impl crate::flags::Analyze {
    pub fn run(self) -> Result<ExitCode> {
        if let Some(pair) = &self.diff {
            let [old, new] = pair.as_slice() else {
                anyhow::bail!("--diff takes two layers: OLD NEW");
            };
            return diff::run(old, new, self.json);
        }
        let default_spec_path = crate::core::project_root().join("layer/layer.toml");
        let layer_path = match &self.layer {
            Some(p) => p.clone(),
            None => {
                let spec_path = self.spec.clone().unwrap_or(default_spec_path.clone());
                default_layer(&crate::spec::Spec::load(&spec_path)?)?
            }
        };
        let own = own_report(&layer_path);
        // The spec applies when given, or when this tool built the layer from the default one.
        let spec = match &self.spec {
            Some(p) => Some(crate::spec::Spec::load(p)?),
            None => own.as_ref().and_then(|(_, r)| {
                crate::spec::Spec::load(&default_spec_path)
                    .ok()
                    .filter(|s| s.layer.name == r.name)
            }),
        };
        let raw = read::read_layer(&layer_path)
            .with_context(|| format!("reading the layer {layer_path}"))?;
        let layer = attribute(raw);
        let mut analysis = summarize(&layer, &layer_path, self.top);
        analysis.requirements = requirements(&layer, spec.as_ref());
        let rules_path = match &spec {
            Some(s) => s.dir().join(&s.prune.rules),
            None => crate::core::project_root().join("layer/rules.toml"),
        };
        analysis.pruning = Some(pruning(&layer, &rules_path, spec.as_ref())?);
        if let Some(dir) = &self.scan_source {
            let data_path = crate::core::project_root().join("layer/litellm-providers.toml");
            let data = crate::spec::ProvidersFile::load(&data_path)?;
            let (names, from) = provider_names(&layer, &data, &data_path);
            let sizes: BTreeMap<String, u64> = analysis
                .distributions
                .iter()
                .map(|d| (d.normalized.clone(), d.bytes))
                .collect();
            let modules = layer.modules();
            let requires = layer.requires();
            let env = layer.env(spec.as_ref());
            analysis.scan = Some(scan::scan_dir(
                dir,
                &names,
                from,
                &data.bare_model_prefixes,
                &scan::LayerModules {
                    modules: &modules,
                    sizes: &sizes,
                    requires: &requires,
                    env: &env,
                },
            )?);
        }
        let text = analysis.to_text();
        if let Some((report_path, _)) = &own {
            if layer_path.extension() == Some("zip") {
                let dest = report_path.with_file_name("layer-size-analysis.txt");
                crate::util::write_bytes_atomic(&dest, text.as_bytes())
                    .with_context(|| format!("writing {dest}"))?;
                eprintln!("wrote {dest}");
            }
        }
        if let Some(html_path) = &self.html {
            let page = html::page(&analysis, &layer);
            crate::util::write_bytes_atomic(html_path, page.as_bytes())
                .with_context(|| format!("writing {html_path}"))?;
            eprintln!("wrote {html_path}");
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&analysis)?);
        } else {
            print!("{text}");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Reads and attributes a layer and gives its plain numbers (for `--diff`).
pub fn analyse_plain(path: &Utf8Path) -> Result<Analysis> {
    let raw = read::read_layer(path).with_context(|| format!("reading the layer {path}"))?;
    let layer = attribute(raw);
    Ok(summarize(&layer, path, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

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

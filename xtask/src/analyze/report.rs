//! What the analysis reports, and the numbers every analysis has: per distribution, folder
//! and kind, the largest files, duplicates, and which distributions the requirements reach.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::attribute::{File, Kind, Layer};
use super::{deps, scan};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    pub name: String,
    pub files: u64,
    pub bytes: u64,
    pub compressed_bytes: u64,
}

impl Bucket {
    pub(super) fn add(&mut self, f: &File) {
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
    /// Every `.pth` file, with the line `site` would execute and why that is allowed.
    pub pth_files: Vec<PthReport>,
    pub notes: Vec<String>,
}

/// One `.pth` file of the layer.
#[derive(Debug, Clone, Serialize)]
pub struct PthReport {
    pub path: Utf8PathBuf,
    /// The first line that executes code, if one does.
    pub executes: Option<String>,
    /// Why executing it is allowed (spec or advisories.toml); None for one that executes
    /// unknown code, which `verify` fails.
    pub allowed: Option<String>,
}

/// The layer's `.pth` files, judged like `verify` judges them.
pub(super) fn pth_files(
    layer: &Layer,
    spec: Option<&crate::spec::Spec>,
) -> anyhow::Result<Vec<PthReport>> {
    use crate::verify::pth;
    let data = match spec {
        Some(s) => crate::spec::advisories::AdvisoriesFile::for_spec(s)?,
        None => crate::spec::advisories::AdvisoriesFile::built_in()?,
    };
    let allow: &[String] = spec.map(|s| s.verify.allow_pth.as_slice()).unwrap_or(&[]);
    Ok(layer
        .contents
        .iter()
        .filter(|(p, _)| p.extension() == Some("pth"))
        .map(|(p, bytes)| {
            let f = pth::inspect(p.clone(), bytes);
            PthReport {
                allowed: f
                    .executes
                    .as_ref()
                    .and_then(|_| pth::allowed(&f, allow, &data)),
                path: f.path,
                executes: f.executes,
            }
        })
        .collect())
}

/// The folder a file counts under: `<site>/<top-level name>` inside site-packages, else the
/// first three folders of its path (`python/lib/python3.11`, `python/bin`).
pub(super) fn folder_of(f: &File, sites: &[Utf8PathBuf]) -> String {
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
///
/// Long on purpose: one pass fills every bucket, then each report field is built in turn.
pub(super) fn summarize(layer: &Layer, source: &Utf8Path, top: usize) -> Analysis {
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
        pth_files: Vec::new(),
        notes,
    }
}

pub(super) fn requirements(layer: &Layer, spec: Option<&crate::spec::Spec>) -> Requirements {
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

/// Provider names: from the layer's own provider list (the data's `providers-source`) when it
/// has one, else the data file's.
pub(super) fn provider_names(
    layer: &Layer,
    data: &crate::spec::ProvidersFile,
    data_path: &Utf8Path,
) -> (Vec<String>, String) {
    let Some(source) = &data.providers_source else {
        return (data.providers.clone(), format!("{data_path}"));
    };
    for (path, bytes) in &layer.contents {
        if path.as_str().ends_with(source.as_str()) {
            let names = scan::providers_from_litellm(&String::from_utf8_lossy(bytes));
            if !names.is_empty() {
                return (names, format!("{path} (LlmProviders)"));
            }
        }
    }
    (data.providers.clone(), format!("{data_path}"))
}

//! `cargo xtask layer --split`: a layer too big for one direct-upload zip, written as up to
//! five zips that Lambda stacks into one `/opt` (see `core::stack` for the stack file).
//!
//! The package step has already written the layer as one zip; its table of contents gives the
//! exact bytes every entry takes (local header, compressed data, central record), and the same
//! file deflated the same way takes the same bytes in a part. So the parts are packed from
//! those sizes, written by the same writer on subsets of the tree's entries (reproducible like
//! the single zip), and each is measured again afterwards.
//!
//! Order: the runtime (everything outside site-packages) first, then site-packages by
//! top-level folder or file in path order; a group goes whole into a part where it fits, and
//! is split by file only when it fits no part alone. Every file and link is in exactly one
//! part; a folder is in every part that holds something under it (Lambda merges folders).

mod pack;

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::build::cache::StageCache;
use crate::build::plan::BuildPlan;
use crate::build::zip::{Entry, Kind};
use crate::core::stack::{self, Marker, Stack, StackPart, MAX_LAYERS};
use crate::core::{LayerPaths, LAMBDA_UNPACKED_LIMIT, LAMBDA_ZIP_LIMIT};
use crate::spec::{Arch, Spec};
use crate::util::fmt::mb;
use crate::util::progress::Progress;
use pack::{groups, pack, Item};

/// Room kept in every part for its marker and the marker's folder (a few hundred bytes) and
/// the zip64 records a part might need.
pub(super) const RESERVE: u64 = 4096;
/// The end-of-central-directory record every zip ends with.
pub(super) const END_RECORD: u64 = 22;

/// What `--split` will write; part of the `BuildPlan`.
#[derive(Debug, Clone, Serialize)]
pub struct SplitPlan {
    pub max_parts: usize,
    /// Each part at most this many bytes zipped: Lambda's direct upload or the spec's
    /// `[budget] zip-bytes`, whichever is smaller.
    pub part_zip_bytes: u64,
    /// All parts together at most this many bytes unpacked (Lambda's limit counts every layer).
    pub unpacked_bytes: u64,
    /// `<out>/<name>-<arch>-K-of-N.zip`.
    pub parts: Utf8PathBuf,
    pub stack_file: Utf8PathBuf,
}

impl SplitPlan {
    pub fn new(spec: &Spec, paths: &LayerPaths, arch: Arch) -> SplitPlan {
        let min = |limit: u64, budget: Option<u64>| budget.map_or(limit, |b| b.min(limit));
        SplitPlan {
            max_parts: MAX_LAYERS,
            part_zip_bytes: min(LAMBDA_ZIP_LIMIT, spec.budget.zip_bytes),
            unpacked_bytes: min(LAMBDA_UNPACKED_LIMIT, spec.budget.unpacked_bytes),
            parts: paths
                .out
                .join(format!("{}-{arch}-K-of-N.zip", spec.layer.name)),
            stack_file: paths.out.join(stack::STACK_FILE),
        }
    }
}

/// The package step's hook: parts from an earlier split build are removed whatever this build
/// does (they would not match the new zip); with `--split`, the parts and `layers.json` are
/// written. On a failure no part is left, nor the single zip, which `--split` does not keep.
pub fn package_step(
    plan: &BuildPlan,
    stage: &Utf8Path,
    site_rel: &Utf8Path,
    cache: Option<&StageCache>,
    progress: &Progress,
) -> Result<Option<Stack>> {
    remove_stale(plan)?;
    let Some(split) = &plan.split else {
        return Ok(None);
    };
    let parts = Parts {
        plan,
        split,
        stage,
        cache,
    };
    match write_parts(&parts, site_rel, progress) {
        Ok(stack) => Ok(Some(stack)),
        Err(err) => {
            let _ = remove_stale(plan);
            let _ = fs_err::remove_file(&plan.paths.zip);
            Err(err)
        }
    }
}

/// After everything that needs the single zip (the minimized layer's proof) has run: removes
/// it, since `--split` writes only the parts (and the tree).
pub fn drop_single_zip(plan: &BuildPlan) -> Result<()> {
    if plan.split.is_some() && plan.paths.zip.exists() {
        fs_err::remove_file(&plan.paths.zip)?;
    }
    Ok(())
}

/// Deletes `layers.json` and every `<name>-<arch>-K-of-N.zip` in the output folder.
fn remove_stale(plan: &BuildPlan) -> Result<()> {
    let out = &plan.paths.out;
    let arch = plan.arch.to_string();
    for entry in fs_err::read_dir(out)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == stack::STACK_FILE || stack::is_part_file_name(name, &plan.layer, &arch) {
            fs_err::remove_file(out.join(name))?;
        }
    }
    Ok(())
}

/// Packs, marks and writes the parts, then the stack file.
/// What every part is written from; the stage cache holds the single zip's deflated entries,
/// so the parts copy them instead of compressing again.
struct Parts<'a> {
    plan: &'a BuildPlan,
    split: &'a SplitPlan,
    stage: &'a Utf8Path,
    cache: Option<&'a StageCache>,
}

fn write_parts(ctx: &Parts<'_>, site_rel: &Utf8Path, progress: &Progress) -> Result<Stack> {
    let Parts {
        plan, split, stage, ..
    } = *ctx;
    let whole = &plan.paths.zip;
    let costs = entry_costs(whole)?;
    let walked = crate::util::walk(stage)?;
    let entries = crate::build::zip::classify(stage, &walked)?;
    let items =
        items(&entries, &costs).with_context(|| format!("matching {stage} with {whole}"))?;
    let unpacked: u64 = items.iter().map(|i| i.unpacked).sum();
    if unpacked > split.unpacked_bytes {
        bail!(
            "the layer is {} unpacked, over {} (Lambda's limit or the spec's budget): that limit counts all of a function's layers together, so --split cannot help; slim the layer (a smaller profile, `cargo xtask analyze`)",
            mb(unpacked),
            mb(split.unpacked_bytes)
        );
    }
    let groups = groups(&items, site_rel);
    let parts = pack(&items, &groups, split.part_zip_bytes, split.max_parts)?;
    let n = parts.len();
    let id = crate::util::sha256_file(whole)?;
    let arch = plan.arch.to_string();
    let mut stack = Stack {
        layer: plan.layer.clone(),
        arch: arch.clone(),
        id: id.clone(),
        how: "publish each zip as a layer version (`aws lambda publish-layer-version --zip-file fileb://<file>`), then give their ARNs to `aws lambda update-function-configuration --layers` in this order, part 1 first; no path is in two parts, and Lambda merges them into one /opt"
            .to_owned(),
        parts: Vec::new(),
    };
    for (k, members) in parts.iter().enumerate() {
        let marker = Marker {
            layer: plan.layer.clone(),
            arch: arch.clone(),
            id: id.clone(),
            part: k + 1,
            parts: n,
        };
        let part = write_part(ctx, &entries, &items, members, &marker)?;
        stack.parts.push(part);
    }
    let json = serde_json::to_string_pretty(&stack)? + "\n";
    crate::util::write_bytes_atomic(&split.stack_file, json.as_bytes())?;
    let sizes: Vec<String> = stack.parts.iter().map(|p| mb(p.zip_bytes)).collect();
    progress.line(format!(
        "split into {n} layers ({}), stacked in the order of {}",
        sizes.join(", "),
        split.stack_file
    ));
    Ok(stack)
}

/// Writes part `marker.part`: its marker into the tree, then its zip; measures it again.
fn write_part(
    parts: &Parts<'_>,
    entries: &[Entry],
    items: &[Item],
    members: &BTreeSet<usize>,
    marker: &Marker,
) -> Result<StackPart> {
    let Parts {
        plan,
        split,
        stage,
        cache,
    } = *parts;
    let marker_rel = stack::marker_path(marker.part, marker.parts);
    fs_err::create_dir_all(stage.join(stack::MARKER_DIR))?;
    fs_err::write(
        stage.join(&marker_rel),
        serde_json::to_string_pretty(marker)? + "\n",
    )?;
    let part_entries = part_entries(stage, entries, items, members, &marker_rel);
    let file = stack::part_file_name(&marker.layer, &marker.arch, marker.part, marker.parts);
    let path = plan.paths.out.join(&file);
    crate::util::write_atomic(&path, |out| {
        crate::build::zip::write_in_order(&mut *out, &part_entries, 9, cache)
    })
    .with_context(|| format!("writing {path}"))?;
    let stats = crate::util::zipinfo::read_stats(&path)?;
    if stats.zip_bytes > split.part_zip_bytes {
        bail!(
            "{path} came out at {}, over the {} a part may take (the packing estimate was wrong: a bug)",
            mb(stats.zip_bytes),
            mb(split.part_zip_bytes)
        );
    }
    let files: Vec<&Entry> = part_entries
        .iter()
        .filter(|e| !matches!(e.kind, Kind::Dir))
        .collect();
    // First and last of what the part carries, its marker aside.
    let payload: Vec<&&Entry> = files.iter().filter(|e| e.name != marker_rel).collect();
    Ok(StackPart {
        part: marker.part,
        file,
        zip_bytes: stats.zip_bytes,
        unpacked_bytes: stats.entries.iter().map(|e| e.uncompressed).sum(),
        files: files.len() as u64,
        sha256: crate::util::sha256_file(&path)?,
        first: payload.first().map(|e| e.name.clone()).unwrap_or_default(),
        last: payload.last().map(|e| e.name.clone()).unwrap_or_default(),
    })
}

/// Bytes per entry of the single zip (keyed by entry name, a folder's with its `/`), and the
/// unpacked size of each.
fn entry_costs(zip_path: &Utf8Path) -> Result<HashMap<String, (u64, u64)>> {
    let file = fs_err::File::open(zip_path)?;
    let len = file.metadata()?.len();
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("{zip_path} is not a valid zip"))?;
    let mut rows = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let e = zip.by_index_raw(i)?;
        rows.push((
            e.name()?.into_owned(),
            e.header_start(),
            e.central_header_start(),
            if e.is_dir() { 0 } else { e.size() },
        ));
    }
    // Each span ends where the next begins: local records at the central directory, central
    // records at the end record (the zip64 records, if any, count to the last entry: more,
    // never less, than it takes).
    let end_of_central = len - END_RECORD - zip.comment().len() as u64;
    let ends = |starts: Vec<u64>, end: u64| -> HashMap<u64, u64> {
        let mut sorted = starts;
        sorted.sort_unstable();
        let mut next = sorted.iter().skip(1).copied().chain([end]);
        sorted
            .iter()
            .map(|&s| (s, next.next().unwrap_or(end) - s))
            .collect()
    };
    let local = ends(
        rows.iter().map(|r| r.1).collect(),
        zip.central_directory_start(),
    );
    let central = ends(rows.iter().map(|r| r.2).collect(), end_of_central);
    Ok(rows
        .into_iter()
        .map(|(name, h, c, size)| (name, (local[&h] + central[&c], size)))
        .collect())
}

/// The packer's view of the tree's entries, from the single zip's costs.
fn items(entries: &[Entry], costs: &HashMap<String, (u64, u64)>) -> Result<Vec<Item>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut items = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let key = match e.kind {
            Kind::Dir => format!("{}/", e.name),
            _ => e.name.clone(),
        };
        let &(cost, unpacked) = costs
            .get(&key)
            .with_context(|| format!("{key} is not in the zip"))?;
        let parent = Utf8Path::new(&e.name)
            .parent()
            .and_then(|p| index.get(p.as_str()).copied());
        items.push(Item {
            name: e.name.clone(),
            cost,
            unpacked,
            parent,
        });
        index.insert(&e.name, i);
    }
    Ok(items)
}

/// A part's zip entries in path order: its members and its marker with the marker's folder.
fn part_entries(
    stage: &Utf8Path,
    entries: &[Entry],
    items: &[Item],
    members: &BTreeSet<usize>,
    marker_rel: &str,
) -> Vec<Entry> {
    let mut out: Vec<Entry> = members.iter().map(|&i| copy(&entries[i])).collect();
    let mut have: BTreeSet<String> = members.iter().map(|&i| items[i].name.clone()).collect();
    let mut folder = Utf8PathBuf::new();
    for c in Utf8Path::new(stack::MARKER_DIR).components() {
        folder.push(c.as_str());
        if have.insert(folder.to_string()) {
            out.push(Entry {
                name: folder.to_string(),
                kind: Kind::Dir,
            });
        }
    }
    out.push(Entry {
        name: marker_rel.to_owned(),
        kind: Kind::File {
            path: stage.join(marker_rel),
            mode: 0o644,
            large: false,
        },
    });
    out.sort_by(|a, b| Utf8Path::new(&a.name).cmp(Utf8Path::new(&b.name)));
    out
}

fn copy(e: &Entry) -> Entry {
    Entry {
        name: e.name.clone(),
        kind: match &e.kind {
            Kind::Dir => Kind::Dir,
            Kind::Link(target) => Kind::Link(target.clone()),
            Kind::File { path, mode, large } => Kind::File {
                path: path.clone(),
                mode: *mode,
                large: *large,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_of_the_single_zip_add_up_to_its_size() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        fs_err::create_dir_all(dir.join("t/python/lib")).unwrap();
        for i in 0..20 {
            fs_err::write(
                dir.join(format!("t/python/lib/m{i}.py")),
                format!("x = {i}\n").repeat(i * 50),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink("m1.py", dir.join("t/python/lib/link.py")).unwrap();
        let zip = dir.join("l.zip");
        crate::build::zip::write_zip(&dir.join("t"), &zip, 9).unwrap();
        let costs = entry_costs(&zip).unwrap();
        let total: u64 = costs.values().map(|c| c.0).sum();
        assert_eq!(total + END_RECORD, fs_err::metadata(&zip).unwrap().len());
        // A subset written on its own takes exactly the sum of its entries' costs.
        let walked = crate::util::walk(&dir.join("t")).unwrap();
        let entries = crate::build::zip::classify(&dir.join("t"), &walked).unwrap();
        let items = items(&entries, &costs).unwrap();
        let some: Vec<Entry> = entries.iter().step_by(3).map(copy).collect();
        let want: u64 = (0..entries.len()).step_by(3).map(|i| items[i].cost).sum();
        let mut out = std::io::Cursor::new(Vec::new());
        crate::build::zip::write_in_order(&mut out, &some, 9, None).unwrap();
        assert_eq!(out.get_ref().len() as u64, want + END_RECORD);
    }
}

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

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::build::plan::BuildPlan;
use crate::build::zip::{Entry, Kind};
use crate::core::stack::{self, Marker, Stack, StackPart, MAX_LAYERS};
use crate::core::{LayerPaths, LAMBDA_UNPACKED_LIMIT, LAMBDA_ZIP_LIMIT};
use crate::spec::{Arch, Spec};
use crate::util::fmt::mb;
use crate::util::progress::Progress;

/// Room kept in every part for its marker and the marker's folder (a few hundred bytes) and
/// the zip64 records a part might need.
const RESERVE: u64 = 4096;
/// The end-of-central-directory record every zip ends with.
const END_RECORD: u64 = 22;

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
    progress: &Progress,
) -> Result<Option<Stack>> {
    remove_stale(plan)?;
    let Some(split) = &plan.split else {
        return Ok(None);
    };
    match write_parts(plan, split, stage, site_rel, progress) {
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
fn write_parts(
    plan: &BuildPlan,
    split: &SplitPlan,
    stage: &Utf8Path,
    site_rel: &Utf8Path,
    progress: &Progress,
) -> Result<Stack> {
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
        let part = k + 1;
        let marker = Marker {
            layer: plan.layer.clone(),
            arch: arch.clone(),
            id: id.clone(),
            part,
            parts: n,
        };
        let marker_rel = stack::marker_path(part, n);
        fs_err::create_dir_all(stage.join(stack::MARKER_DIR))?;
        fs_err::write(
            stage.join(&marker_rel),
            serde_json::to_string_pretty(&marker)? + "\n",
        )?;
        let part_entries = part_entries(stage, &entries, &items, members, &marker_rel);
        let file = stack::part_file_name(&plan.layer, &arch, part, n);
        let path = plan.paths.out.join(&file);
        crate::util::write_atomic(&path, |out| {
            crate::build::zip::write_in_order(&mut *out, &part_entries, 9)
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
        stack.parts.push(StackPart {
            part,
            file,
            zip_bytes: stats.zip_bytes,
            unpacked_bytes: stats.entries.iter().map(|e| e.uncompressed).sum(),
            files: files.len() as u64,
            sha256: crate::util::sha256_file(&path)?,
            first: files.first().map(|e| e.name.clone()).unwrap_or_default(),
            last: files.last().map(|e| e.name.clone()).unwrap_or_default(),
        });
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

/// One entry of the layer, as the packer sees it.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    /// Bytes it takes in a zip: local header, data, central record.
    cost: u64,
    /// Bytes it takes unpacked (0 for a folder).
    unpacked: u64,
    /// Its folder's index, when the folder is an entry.
    parent: Option<usize>,
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

/// The runtime (everything outside site-packages) first, then one group per top-level
/// entry of site-packages, in path order.
fn groups(items: &[Item], site_rel: &Utf8Path) -> Vec<Vec<usize>> {
    let mut runtime = Vec::new();
    let mut site: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match Utf8Path::new(&item.name).strip_prefix(site_rel) {
            Ok(rest) if !rest.as_str().is_empty() => {
                let top = rest.components().next().map_or("", |c| c.as_str());
                match site.last_mut() {
                    Some((name, members)) if name == top => members.push(i),
                    _ => site.push((top.to_owned(), vec![i])),
                }
            }
            _ => runtime.push(i),
        }
    }
    std::iter::once(runtime)
        .chain(site.into_iter().map(|(_, m)| m))
        .filter(|g| !g.is_empty())
        .collect()
}

/// One part being filled: its entries (with their folders) and the bytes they take.
#[derive(Debug, Clone)]
struct Part {
    members: BTreeSet<usize>,
    cost: u64,
}

impl Part {
    fn new() -> Part {
        Part {
            members: BTreeSet::new(),
            cost: END_RECORD + RESERVE,
        }
    }

    /// The entries `group` would add, with the folders above them the part lacks.
    fn added(&self, items: &[Item], group: &[usize]) -> (Vec<usize>, u64) {
        let mut new = BTreeSet::new();
        for &i in group {
            let mut at = Some(i);
            while let Some(j) = at {
                if self.members.contains(&j) || !new.insert(j) {
                    break;
                }
                at = items[j].parent;
            }
        }
        let cost = new.iter().map(|&j| items[j].cost).sum();
        (new.into_iter().collect(), cost)
    }

    fn add(&mut self, new: Vec<usize>, cost: u64) {
        self.members.extend(new);
        self.cost += cost;
    }
}

/// Packs the groups into at most `max` parts of at most `capacity` bytes each: by group where
/// that fits in `max` parts, else file by file (fewest parts for the order).
fn pack(
    items: &[Item],
    groups: &[Vec<usize>],
    capacity: u64,
    max: usize,
) -> Result<Vec<BTreeSet<usize>>> {
    let by_group = pack_with(items, groups, capacity, true)?;
    let parts = if by_group.len() <= max {
        by_group
    } else {
        pack_with(items, groups, capacity, false)?
    };
    if parts.len() > max {
        let total: u64 = items.iter().map(|i| i.cost).sum();
        bail!(
            "the layer needs {} parts of at most {} zipped ({} in all), more than the {max} layers Lambda attaches to a function: slim the layer (a smaller profile, `cargo xtask analyze`) or raise [budget] zip-bytes",
            parts.len(),
            mb(capacity),
            mb(total)
        );
    }
    Ok(parts)
}

fn pack_with(
    items: &[Item],
    groups: &[Vec<usize>],
    capacity: u64,
    by_group: bool,
) -> Result<Vec<BTreeSet<usize>>> {
    let mut parts = vec![Part::new()];
    for group in groups {
        let current = parts.last_mut().expect("one part at least");
        let (new, cost) = current.added(items, group);
        if current.cost + cost <= capacity {
            current.add(new, cost);
            continue;
        }
        let fresh = Part::new();
        let (new, cost) = fresh.added(items, group);
        if by_group && !current.members.is_empty() && fresh.cost + cost <= capacity {
            let mut part = fresh;
            part.add(new, cost);
            parts.push(part);
            continue;
        }
        for &i in group {
            let current = parts.last_mut().expect("one part at least");
            let (new, cost) = current.added(items, &[i]);
            if current.cost + cost <= capacity {
                current.add(new, cost);
                continue;
            }
            let mut part = Part::new();
            let (new, cost) = part.added(items, &[i]);
            if part.cost + cost > capacity {
                bail!(
                    "{} alone takes {} zipped, more than a part may hold ({}): no split can fit it; raise [budget] zip-bytes (at most Lambda's {})",
                    items[i].name,
                    mb(cost),
                    mb(capacity),
                    mb(LAMBDA_ZIP_LIMIT)
                );
            }
            part.add(new, cost);
            parts.push(part);
        }
    }
    Ok(parts
        .into_iter()
        .map(|p| p.members)
        .filter(|m| !m.is_empty())
        .collect())
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

    /// `(name, cost)`: folders end in `/` and cost 10.
    fn layer(entries: &[(&str, u64)]) -> Vec<Item> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut items = Vec::new();
        for (i, (name, cost)) in entries.iter().enumerate() {
            let name = name.trim_end_matches('/').to_owned();
            let parent = Utf8Path::new(&name)
                .parent()
                .and_then(|p| index.get(p.as_str()).copied());
            index.insert(name.clone(), i);
            items.push(Item {
                name,
                cost: *cost,
                unpacked: *cost * 3,
                parent,
            });
        }
        items
    }

    fn names(items: &[Item], parts: &[BTreeSet<usize>]) -> Vec<Vec<String>> {
        parts
            .iter()
            .map(|p| p.iter().map(|&i| items[i].name.clone()).collect())
            .collect()
    }

    const OVERHEAD: u64 = END_RECORD + RESERVE;

    fn site_layer() -> Vec<Item> {
        layer(&[
            ("python/", 10),
            ("python/bin/", 10),
            ("python/bin/python3.11", 3000),
            ("python/lib/", 10),
            ("python/lib/python3.11/", 10),
            ("python/lib/python3.11/os.py", 1000),
            ("python/lib/python3.11/site-packages/", 10),
            ("python/lib/python3.11/site-packages/a/", 10),
            ("python/lib/python3.11/site-packages/a/x.py", 1500),
            ("python/lib/python3.11/site-packages/big/", 10),
            ("python/lib/python3.11/site-packages/big/1.so", 3000),
            ("python/lib/python3.11/site-packages/big/2.so", 3000),
            ("python/lib/python3.11/site-packages/z.py", 500),
        ])
    }

    #[test]
    fn the_runtime_goes_first_groups_stay_whole_and_a_big_one_is_split_by_file() {
        let items = site_layer();
        let groups = groups(&items, Utf8Path::new("python/lib/python3.11/site-packages"));
        assert_eq!(groups.len(), 4, "runtime, a, big, z.py");
        let parts = pack(&items, &groups, OVERHEAD + 5000, 5).unwrap();
        let got = names(&items, &parts);
        // The runtime (4050) leaves no room for a/ (1510), which starts part 2 whole; big/
        // (6010) fits no part whole, so it is split by file, each part getting the folders
        // above its files.
        let site = "python/lib/python3.11/site-packages";
        let has = |k: usize, name: &str| got[k].contains(&name.to_owned());
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(has(0, "python/bin/python3.11") && has(0, "python/lib/python3.11/os.py"));
        assert!(has(1, &format!("{site}/a/x.py")) && has(1, &format!("{site}/big/1.so")));
        assert!(
            has(1, &format!("{site}/big")) && has(1, "python"),
            "{got:#?}"
        );
        assert!(has(2, &format!("{site}/big/2.so")) && has(2, &format!("{site}/z.py")));
        assert!(
            has(2, &format!("{site}/big")),
            "a folder is in every part under it"
        );
        // Every file in exactly one part; no part over its capacity.
        let files = items.iter().filter(|i| {
            i.name.ends_with(".py") || i.name.ends_with(".so") || i.name.ends_with("bin/python3.11")
        });
        for item in files {
            let n = got.iter().filter(|p| p.contains(&item.name)).count();
            assert_eq!(n, 1, "{}", item.name);
        }
        for p in &parts {
            let cost: u64 = p.iter().map(|&i| items[i].cost).sum();
            assert!(cost <= 5000, "{cost}");
        }
        assert_eq!(
            pack(&items, &groups, OVERHEAD + 5000, 5).unwrap(),
            parts,
            "deterministic"
        );
    }

    #[test]
    fn too_many_parts_or_a_file_too_big_for_any_part_is_an_error_naming_why() {
        let items = site_layer();
        let groups = groups(&items, Utf8Path::new("python/lib/python3.11/site-packages"));
        let err = pack(&items, &groups, OVERHEAD + 3100, 2).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("more than the 2 layers"), "{msg}");
        let err = pack(&items, &groups, OVERHEAD + 2000, 5).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("python/bin/python3.11 alone takes"), "{msg}");
    }

    #[test]
    fn file_by_file_when_groups_would_need_too_many_parts() {
        // Three groups of 810 into parts of 1250: whole, one part each; file by file, two.
        let mut entries = vec![("python/", 10u64), ("python/s/", 10)];
        let names: Vec<(String, String, String)> = (1..=3)
            .map(|g| {
                let d = format!("python/s/g{g}/");
                (d.clone(), format!("{d}a.py"), format!("{d}b.py"))
            })
            .collect();
        for (d, a, b) in &names {
            entries.extend([(d.as_str(), 10), (a.as_str(), 400), (b.as_str(), 400)]);
        }
        let items = layer(&entries);
        let groups = groups(&items, Utf8Path::new("python/s"));
        assert_eq!(groups.len(), 4);
        let whole = pack(&items, &groups, OVERHEAD + 1250, 3).unwrap();
        assert_eq!(whole.len(), 3, "{:?}", names_of(&items, &whole));
        let tight = pack(&items, &groups, OVERHEAD + 1250, 2).unwrap();
        let got = names_of(&items, &tight);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains(&"python/s/g2/a.py".to_owned()), "{got:?}");
        assert!(got[1].contains(&"python/s/g2/b.py".to_owned()), "{got:?}");
    }

    fn names_of(items: &[Item], parts: &[BTreeSet<usize>]) -> Vec<Vec<String>> {
        names(items, parts)
    }

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
        crate::build::zip::write_in_order(&mut out, &some, 9).unwrap();
        assert_eq!(out.get_ref().len() as u64, want + END_RECORD);
    }
}

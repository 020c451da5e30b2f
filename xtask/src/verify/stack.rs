//! The layers verify runs: one zip, or the parts of a split layer (`cargo xtask layer
//! --split`) stacked into one `/opt` in the order given, as Lambda merges a function's layers
//! (a later layer overwriting the files of an earlier one).
//!
//! A split layer's parts carry markers (`core::stack`): from them verify knows which part is
//! which, so a part left out, swapped or taken from another build fails its check by name,
//! even when the merged `/opt` would still run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::Check;
use crate::core::stack::{self, Marker, Stack};
use crate::spec::{Arch, Spec};

/// What was given to verify: the zips in stack order, and how to name them.
pub(super) struct Layers {
    /// The zip, or the folder of `layers.json`, or the first part.
    pub label: Utf8PathBuf,
    pub zips: Vec<Utf8PathBuf>,
    /// `layers.json`, when the parts were found through it.
    pub stack_file: Option<(Utf8PathBuf, Stack)>,
}

/// Resolves `--layer` (none: the last build for `arch`, one zip, a folder with
/// `layers.json`, or several zips in stack order).
pub(super) fn resolve(spec: &Spec, given: &[Utf8PathBuf], arch: Arch) -> Result<Layers> {
    let single = |zip: Utf8PathBuf| Layers {
        label: zip.clone(),
        zips: vec![zip],
        stack_file: None,
    };
    match given {
        [] => {
            let zip = super::default_layer(spec, arch);
            let dir = zip.parent().map(Utf8Path::to_owned).unwrap_or_default();
            if zip.is_file() {
                Ok(single(zip))
            } else if dir.join(stack::STACK_FILE).is_file() {
                from_stack_file(&dir)
            } else {
                bail!(
                    "no layer at {zip} (nor a split layer's {} beside it): build one with `cargo xtask layer --arch {arch}` or pass --layer",
                    stack::STACK_FILE
                )
            }
        }
        [one] if one.is_dir() => from_stack_file(one),
        zips => {
            for zip in zips {
                if !zip.is_file() {
                    bail!("no layer at {zip}: pass a zip, several zips in stack order, or a folder with {}", stack::STACK_FILE);
                }
            }
            Ok(Layers {
                label: zips[0].clone(),
                zips: zips.to_vec(),
                stack_file: None,
            })
        }
    }
}

fn from_stack_file(dir: &Utf8Path) -> Result<Layers> {
    let path = dir.join(stack::STACK_FILE);
    if !path.is_file() {
        bail!(
            "{dir} is a folder without {}: pass a layer zip, or the folder of a split layer",
            stack::STACK_FILE
        );
    }
    let stack: Stack = serde_json::from_str(&fs_err::read_to_string(&path)?)
        .with_context(|| format!("{path} is not a stack file of `cargo xtask layer --split`"))?;
    let zips = stack.parts.iter().map(|p| dir.join(&p.file)).collect();
    Ok(Layers {
        label: dir.to_owned(),
        zips,
        stack_file: Some((path, stack)),
    })
}

/// What one zip holds, read before anything is unpacked.
struct Listing {
    /// Files and links.
    paths: BTreeSet<String>,
    folders: BTreeSet<String>,
    markers: Vec<Marker>,
}

fn list(zip_path: &Utf8Path) -> Result<Listing> {
    let mut zip = zip::ZipArchive::new(fs_err::File::open(zip_path)?)
        .with_context(|| format!("{zip_path} is not a valid zip"))?;
    let mut listing = Listing {
        paths: BTreeSet::new(),
        folders: BTreeSet::new(),
        markers: Vec::new(),
    };
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = entry.name()?.into_owned();
        if entry.is_dir() {
            listing
                .folders
                .insert(name.trim_end_matches('/').to_owned());
            continue;
        }
        if name.starts_with(&format!("{}/part-", stack::MARKER_DIR)) {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .with_context(|| format!("reading {name} in {zip_path}"))?;
            let marker = serde_json::from_str(&text)
                .with_context(|| format!("{name} in {zip_path} is not a stack marker"))?;
            listing.markers.push(marker);
        }
        listing.paths.insert(name);
    }
    Ok(listing)
}

/// Unpacks the layers in order into `root`, a later one overwriting an earlier one's files as
/// Lambda does; returns the stack's checks (none for one zip that is not a part).
pub(super) fn unpack(layers: &Layers, root: &Utf8Path) -> Result<Vec<Check>> {
    let mut listings = Vec::new();
    for zip in &layers.zips {
        listings.push(list(zip)?);
    }
    for zip in &layers.zips {
        super::unpack::unzip(zip, root).with_context(|| format!("unpacking {zip}"))?;
    }
    let is_part = listings.iter().any(|l| !l.markers.is_empty());
    if layers.zips.len() == 1 && !is_part {
        return Ok(Vec::new());
    }
    let mut checks = vec![order_check(layers, &listings)?];
    checks.push(clash_check(&layers.zips, &listings));
    Ok(checks)
}

fn file_name(path: &Utf8Path) -> &str {
    path.file_name().unwrap_or(path.as_str())
}

/// "stack: order": the parts of one build, every one of them, first to last (and, through
/// `layers.json`, the very files it lists).
fn order_check(layers: &Layers, listings: &[Listing]) -> Result<Check> {
    const NAME: &str = "stack: order";
    if let Some(detail) = not_as_listed(layers)? {
        return Ok(Check::new(NAME, false, detail));
    }
    let given: Vec<(&Utf8Path, &Marker)> = layers
        .zips
        .iter()
        .zip(listings)
        .flat_map(|(zip, l)| l.markers.iter().map(move |m| (zip.as_path(), m)))
        .collect();
    let Some(&(_, first)) = given.first() else {
        return Ok(Check::new(
            NAME,
            true,
            format!(
                "{} layers stacked in the order given (none is a part of a `--split` layer)",
                layers.zips.len()
            ),
        ));
    };
    for (zip, m) in &given {
        if m.id != first.id || m.parts != first.parts || m.layer != first.layer {
            return Ok(Check::new(
                NAME,
                false,
                format!(
                    "{} is part {} of {} of another build than {} (stack ids {} and {}): all parts must come from one build",
                    file_name(zip), m.part, m.parts, file_name(given[0].0), m.id, first.id
                ),
            ));
        }
    }
    let n = first.parts;
    let present: BTreeSet<usize> = given.iter().map(|(_, m)| m.part).collect();
    let missing: Vec<String> = (1..=n)
        .filter(|k| !present.contains(k))
        .map(|k| {
            format!(
                "part {k} of {n} ({})",
                stack::part_file_name(&first.layer, &first.arch, k, n)
            )
        })
        .collect();
    if !missing.is_empty() {
        return Ok(Check::new(
            NAME,
            false,
            format!(
                "{} missing: Lambda must stack all {n} parts of {} {}",
                missing.join(", "),
                first.layer,
                first.arch
            ),
        ));
    }
    let order: Vec<usize> = given.iter().map(|(_, m)| m.part).collect();
    if order.windows(2).any(|w| w[0] >= w[1]) {
        let order: Vec<String> = order.iter().map(usize::to_string).collect();
        return Ok(Check::new(
            NAME,
            false,
            format!(
                "parts given in the order {}: Lambda must stack them as 1 to {n} (layers.json), part 1 first",
                order.join(", ")
            ),
        ));
    }
    let names: Vec<&str> = layers.zips.iter().map(|z| file_name(z)).collect();
    Ok(Check::new(
        NAME,
        true,
        format!("all {n} parts of one build, in order: {}", names.join(", ")),
    ))
}

/// Through `layers.json`: the first part that is not the file it lists (by sha256).
fn not_as_listed(layers: &Layers) -> Result<Option<String>> {
    let Some((path, stack)) = &layers.stack_file else {
        return Ok(None);
    };
    for (part, zip) in stack.parts.iter().zip(&layers.zips) {
        let sha = crate::util::sha256_file(zip)?;
        if sha != part.sha256 {
            return Ok(Some(format!(
                "{zip} is not the part {path} lists (sha256 {sha}, listed {})",
                part.sha256
            )));
        }
    }
    Ok(None)
}

/// "stack: no path in two layers": on a clash the later layer would silently replace the
/// earlier one's file; a split of this tool never has one.
fn clash_check(zips: &[Utf8PathBuf], listings: &[Listing]) -> Check {
    const NAME: &str = "stack: no path in two layers";
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    let mut clashes = Vec::new();
    for (i, l) in listings.iter().enumerate() {
        for path in &l.paths {
            if let Some(&j) = owner.get(path.as_str()) {
                clashes.push(format!(
                    "{path} is in {} and {}",
                    file_name(&zips[j]),
                    file_name(&zips[i])
                ));
            } else {
                owner.insert(path, i);
            }
        }
    }
    for (i, l) in listings.iter().enumerate() {
        for folder in &l.folders {
            if let Some(&j) = owner.get(folder.as_str()) {
                clashes.push(format!(
                    "{folder} is a folder in {} and a file in {}",
                    file_name(&zips[i]),
                    file_name(&zips[j])
                ));
            }
        }
    }
    if clashes.is_empty() {
        let files: usize = listings.iter().map(|l| l.paths.len()).sum();
        Check::new(
            NAME,
            true,
            format!("{files} files and links, each in one layer"),
        )
    } else {
        let more = clashes.len().saturating_sub(5);
        clashes.truncate(5);
        let more = if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        Check::new(
            NAME,
            false,
            format!(
                "{}{more}: a later layer overwrites the earlier one's file",
                clashes.join("; ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(dir: &Utf8Path, name: &str, files: &[(&str, String)]) -> Utf8PathBuf {
        let path = dir.join(name);
        let mut zip = zip::ZipWriter::new(fs_err::File::create(&path).unwrap());
        for (n, body) in files {
            zip.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    fn marker(part: usize, parts: usize, id: &str) -> (&'static str, String) {
        let m = Marker {
            layer: "l".into(),
            arch: "x86_64".into(),
            id: id.into(),
            part,
            parts,
        };
        let path: &'static str = Box::leak(stack::marker_path(part, parts).into_boxed_str());
        (path, serde_json::to_string(&m).unwrap())
    }

    fn run(zips: Vec<Utf8PathBuf>) -> Vec<Check> {
        let root = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(root.path()).unwrap().join("opt");
        let layers = Layers {
            label: zips[0].clone(),
            zips,
            stack_file: None,
        };
        unpack(&layers, &root).unwrap()
    }

    #[test]
    fn parts_in_order_pass_and_swapped_missing_or_mixed_parts_fail_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let p1 = zip_of(
            dir,
            "l-x86_64-1-of-3.zip",
            &[marker(1, 3, "a"), ("python/a", "1".into())],
        );
        let p2 = zip_of(
            dir,
            "l-x86_64-2-of-3.zip",
            &[marker(2, 3, "a"), ("python/b", "2".into())],
        );
        let p3 = zip_of(
            dir,
            "l-x86_64-3-of-3.zip",
            &[marker(3, 3, "a"), ("python/c", "3".into())],
        );
        let other = zip_of(
            dir,
            "other-2-of-3.zip",
            &[marker(2, 3, "b"), ("python/d", "4".into())],
        );

        let ok = run(vec![p1.clone(), p2.clone(), p3.clone()]);
        assert!(ok.iter().all(|c| c.ok), "{ok:?}");

        let swapped = run(vec![p2.clone(), p1.clone(), p3.clone()]);
        assert!(
            !swapped[0].ok && swapped[0].detail.contains("order 2, 1, 3"),
            "{swapped:?}"
        );

        let missing = run(vec![p1.clone(), p3.clone()]);
        assert!(
            !missing[0].ok
                && missing[0]
                    .detail
                    .contains("part 2 of 3 (l-x86_64-2-of-3.zip) missing"),
            "{missing:?}"
        );
        let alone = run(vec![p1.clone()]);
        assert!(
            !alone[0].ok && alone[0].detail.contains("part 2 of 3"),
            "{alone:?}"
        );

        let mixed = run(vec![p1, other, p3]);
        assert!(
            !mixed[0].ok && mixed[0].detail.contains("another build"),
            "{mixed:?}"
        );
    }

    #[test]
    fn a_path_in_two_layers_is_a_clash_and_the_later_layer_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let a = zip_of(dir, "a.zip", &[("python/x.py", "first".into())]);
        let b = zip_of(dir, "b.zip", &[("python/x.py", "second".into())]);
        let root_dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(root_dir.path()).unwrap().join("opt");
        let layers = Layers {
            label: a.clone(),
            zips: vec![a, b],
            stack_file: None,
        };
        let checks = unpack(&layers, &root).unwrap();
        assert!(checks[0].ok, "no markers: any order: {checks:?}");
        assert!(!checks[1].ok, "{checks:?}");
        assert!(
            checks[1]
                .detail
                .contains("python/x.py is in a.zip and b.zip"),
            "{checks:?}"
        );
        assert_eq!(
            fs_err::read_to_string(root.join("python/x.py")).unwrap(),
            "second"
        );
    }
}

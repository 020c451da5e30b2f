//! Packing a layer's entries into parts: the runtime first, then site-packages by top-level
//! folder or file, a group whole where it fits, file by file where it fits no part alone.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use camino::Utf8Path;

use super::{END_RECORD, RESERVE};
use crate::core::LAMBDA_ZIP_LIMIT;
use crate::util::fmt::mb;

/// One entry of the layer, as the packer sees it.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub name: String,
    /// Bytes it takes in a zip: local header, data, central record.
    pub cost: u64,
    /// Bytes it takes unpacked (0 for a folder).
    pub unpacked: u64,
    /// Its folder's index, when the folder is an entry.
    pub parent: Option<usize>,
}

/// The runtime (everything outside site-packages) first, then one group per top-level
/// entry of site-packages, in path order.
pub(super) fn groups(items: &[Item], site_rel: &Utf8Path) -> Vec<Vec<usize>> {
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
pub(super) fn pack(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
}

//! Pruning's decisions for a whole tree, kept in the stage cache (stage "prune"): a rebuild of
//! the same tree under the same rules reads the plan (what to delete, what was refused and
//! why) instead of matching every file again and scanning the imports of every kept module.
//!
//! The key holds everything the plan is a function of: the listing of the tree (path, size and
//! owning distribution of every entry), the bytes of every source the import scan reads (the
//! `.py` files under site-packages), the rules and protections as the caller describes them,
//! and the xtask binary. The sources' hashes make the key (from their tags, `util::digest`,
//! for files linked from the install stage); that is the one cost a hit pays.

use anyhow::Result;
use camino::Utf8Path;

use super::{Entry, Plan};
use crate::build::cache::{key, Stage, StageCache};

/// The key of the plan for `entries` (in `util::walk`'s order); `sha256` gives a file's hash
/// (relative to the layer root; `None` when it cannot be read), `settings` each describe the
/// rules and protections.
pub fn plan_key(
    entries: &[Entry],
    site_packages: &Utf8Path,
    sha256: &dyn Fn(&Utf8Path) -> Option<String>,
    settings: &[&[u8]],
) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut listing = Sha256::new();
    let mut sources = Sha256::new();
    for e in entries {
        let line = format!(
            "{}\0{}\0{}\n",
            e.path,
            e.bytes,
            e.dist.as_deref().unwrap_or("")
        );
        listing.update(line.as_bytes());
        if e.path.starts_with(site_packages) && e.path.extension() == Some("py") {
            // A source that cannot be read is keyed as such: the scan would skip it too.
            let hash = sha256(&e.path);
            sources.update(e.path.as_str().as_bytes());
            match hash {
                Some(h) => {
                    sources.update(b"\x01");
                    sources.update(h.as_bytes());
                }
                None => sources.update(b"\x00"),
            }
        }
    }
    let exe = crate::build::cache::exe_identity()?;
    let listing = hex::encode(listing.finalize());
    let sources = hex::encode(sources.finalize());
    let mut parts: Vec<&[u8]> = vec![
        exe.as_bytes(),
        site_packages.as_str().as_bytes(),
        listing.as_bytes(),
        sources.as_bytes(),
    ];
    parts.extend_from_slice(settings);
    Ok(key(Stage::Prune, &parts))
}

/// The plan of `entries` from the stage cache when it holds it (keyed by `plan_key` with
/// `settings`), else made by `make` (and stored); always `make` without a cache.
pub fn cached(
    cache: Option<&StageCache>,
    entries: &[Entry],
    site_packages: &Utf8Path,
    sha256: &dyn Fn(&Utf8Path) -> Option<String>,
    settings: &[u8],
    make: impl FnOnce() -> Plan,
) -> Result<Plan> {
    let Some(cache) = cache else {
        return Ok(make());
    };
    let key = plan_key(entries, site_packages, sha256, &[settings])?;
    if let Some(plan) = get(cache, &key) {
        return Ok(plan);
    }
    let plan = make();
    put(cache, &key, &plan)?;
    Ok(plan)
}

/// The plan stored under `key`, if any (a damaged entry counts as none).
fn get(cache: &StageCache, key: &str) -> Option<Plan> {
    let bytes = cache.get_file(Stage::Prune, key)?;
    serde_json::from_slice(&bytes).ok()
}

/// Stores `plan` under `key`.
fn put(cache: &StageCache, key: &str, plan: &Plan) -> Result<()> {
    cache.put_file(Stage::Prune, key, &serde_json::to_vec(plan)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entries() -> Vec<Entry> {
        [
            "python/lib/python3.11/site-packages/a/__init__.py",
            "python/lib/x.txt",
        ]
        .iter()
        .map(|p| Entry {
            path: (*p).into(),
            bytes: 3,
            dist: Some("a".into()),
        })
        .collect()
    }

    #[test]
    fn the_key_follows_sources_listing_and_settings_and_a_plan_round_trips() {
        let sp = Utf8Path::new("python/lib/python3.11/site-packages");
        let source =
            |text: &'static str| move |_: &Utf8Path| Some(crate::util::sha256_hex(text.as_bytes()));
        let base = plan_key(&entries(), sp, &source("x=1"), &[b"rules"]).unwrap();
        assert_eq!(
            base,
            plan_key(&entries(), sp, &source("x=1"), &[b"rules"]).unwrap()
        );
        assert_ne!(
            base,
            plan_key(&entries(), sp, &source("x=2"), &[b"rules"]).unwrap()
        );
        assert_ne!(
            base,
            plan_key(&entries(), sp, &source("x=1"), &[b"other"]).unwrap()
        );
        let mut bigger = entries();
        bigger[1].bytes = 4;
        assert_ne!(
            base,
            plan_key(&bigger, sp, &source("x=1"), &[b"rules"]).unwrap()
        );

        let tmp = tempfile::tempdir().unwrap();
        let cache = StageCache::new(Utf8Path::from_path(tmp.path()).unwrap());
        assert!(get(&cache, &base).is_none());
        let plan = Plan {
            delete: BTreeMap::from([("python/lib/x.txt".into(), 0)]),
            refused: vec![super::super::Refusal {
                rule: "r".into(),
                path: "python/lib/y.py".into(),
                why: "code a kept module imports (z.py)".into(),
            }],
            kept: vec![],
            unmatched: vec!["s".into()],
            totals: vec![("r".into(), 1, 3)],
        };
        put(&cache, &base, &plan).unwrap();
        assert_eq!(get(&cache, &base), Some(plan));
    }
}

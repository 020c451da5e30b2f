//! From several processes' import trees to one profile: medians per module, time per
//! distribution, and for each heavy module the chain of imports that pulled it in.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::parse::{walk, Parsed, Raw};

/// Where a module that belongs to no distribution of the layer comes from.
pub const STDLIB: &str = "(standard library)";
pub const UNKNOWN: &str = "(unattributed)";

/// One module of the median tree.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub dist: String,
    pub self_ms: f64,
    pub cumulative_ms: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

/// Time per distribution.
#[derive(Debug, Clone, Serialize)]
pub struct DistTime {
    pub name: String,
    pub version: Option<String>,
    /// The sum of its modules' own time.
    pub self_ms: f64,
    /// `self_ms` over all imports' own time.
    pub share: f64,
    /// Importing it, with what it imported: its outermost modules' cumulative times.
    pub cumulative_ms: f64,
    pub modules: usize,
    /// The import chain to its heaviest outermost module: who pulled it in.
    pub first_chain: Vec<String>,
}

/// A heavy module.
#[derive(Debug, Clone, Serialize)]
pub struct Heavy {
    pub module: String,
    pub dist: String,
    pub self_ms: f64,
    pub cumulative_ms: f64,
    /// From the top-level import down to the module itself.
    pub chain: Vec<String>,
}

/// Everything measured, medians over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The median over runs of the timed imports' total (each run's top-level cumulative
    /// times summed).
    pub imports_ms: f64,
    /// The median wall-clock time of the timed imports, measured by the script itself (it
    /// includes importtime's own overhead).
    pub wall_ms: f64,
    /// The interpreter's own start-up imports, not part of the tree.
    pub startup_ms: f64,
    pub modules: usize,
    /// Modules some runs imported and the first did not (not in the tree).
    pub modules_not_in_every_run: usize,
    pub distributions: Vec<DistTime>,
    pub heaviest: Vec<Heavy>,
    /// The modules whose own code (not what they import) takes longest.
    pub heaviest_self: Vec<Heavy>,
    pub tree: Vec<Node>,
}

fn ms(us: f64) -> f64 {
    (us / 1000.0 * 1000.0).round() / 1000.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// What `dist_of` needs: top-level module names to distributions, versions, stdlib names.
pub struct Owners<'a> {
    pub modules: &'a BTreeMap<String, String>,
    pub versions: &'a BTreeMap<String, String>,
    pub stdlib: &'a BTreeSet<String>,
}

impl Owners<'_> {
    fn dist_of(&self, module: &str) -> String {
        let top = module.split('.').next().unwrap_or(module);
        if let Some(d) = self.modules.get(top) {
            return d.clone();
        }
        if self.stdlib.contains(top) {
            STDLIB.to_owned()
        } else {
            UNKNOWN.to_owned()
        }
    }
}

/// Self and cumulative microseconds per run, by module and which of its lines.
type Times = BTreeMap<(String, usize), (Vec<f64>, Vec<f64>)>;

/// The median tree in the shape of `nodes`; `seen` counts each name's lines so far.
fn build(
    nodes: &[Raw],
    times: &Times,
    owners: &Owners<'_>,
    seen: &mut BTreeMap<String, usize>,
) -> Vec<Node> {
    nodes
        .iter()
        .map(|n| {
            let nth = seen.entry(n.name.clone()).or_default();
            let key = (n.name.clone(), *nth);
            *nth += 1;
            let (s, c) = times.get(&key).cloned().unwrap_or_default();
            Node {
                name: n.name.clone(),
                dist: owners.dist_of(&n.name),
                self_ms: ms(median(s)),
                cumulative_ms: ms(median(c)),
                children: build(&n.children, times, owners, seen),
            }
        })
        .collect()
}

/// The profile of `runs` (at least one), `top` rows per table.
pub fn profile(runs: &[Parsed], walls_s: &[f64], owners: &Owners<'_>, top: usize) -> Profile {
    // Every module's self and cumulative time in every run. A module can have two lines in
    // one run (`import a.b` imports `a` first, and `a` may import `a.b` itself): the key is the
    // name and which of its lines it is, in the order of the tree.
    let mut times: Times = BTreeMap::new();
    for run in runs {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        walk(&run.timed, &mut Vec::new(), &mut |n: &Raw, _| {
            let nth = seen.entry(n.name.as_str()).or_default();
            let e = times.entry((n.name.clone(), *nth)).or_default();
            *nth += 1;
            e.0.push(n.self_us as f64);
            e.1.push(n.cum_us as f64);
        });
    }
    let sum_top = |nodes: &[Raw]| nodes.iter().map(|n| n.cum_us as f64).sum::<f64>();
    let imports_ms = ms(median(runs.iter().map(|r| sum_top(&r.timed)).collect()));
    let startup_ms = ms(median(runs.iter().map(|r| sum_top(&r.startup)).collect()));
    // The first run gives the shape: the same code imports in the same order every time.
    let first = runs.first().map_or(&[][..], |r| &r.timed[..]);
    let tree = build(first, &times, owners, &mut BTreeMap::new());
    let mut lines = 0;
    let mut names = BTreeSet::new();
    walk(first, &mut Vec::new(), &mut |n, _| {
        lines += 1;
        names.insert(n.name.as_str());
    });
    let mut p = Profile {
        imports_ms,
        wall_ms: ms(median(walls_s.iter().map(|s| s * 1e6).collect())),
        startup_ms,
        modules: names.len(),
        modules_not_in_every_run: times.len().saturating_sub(lines),
        distributions: Vec::new(),
        heaviest: Vec::new(),
        heaviest_self: Vec::new(),
        tree,
    };
    p.distributions = distributions(&p.tree, owners);
    p.heaviest = heaviest(&p.tree, top, |h| h.cumulative_ms);
    p.heaviest_self = heaviest(&p.tree, top, |h| h.self_ms);
    p
}

/// Calls `f` on every node of the median tree with its ancestors, parents first.
fn each<'a>(
    nodes: &'a [Node],
    trail: &mut Vec<&'a Node>,
    f: &mut impl FnMut(&'a Node, &[&'a Node]),
) {
    for n in nodes {
        f(n, trail);
        trail.push(n);
        each(&n.children, trail, f);
        trail.pop();
    }
}

fn chain(trail: &[&Node], n: &Node) -> Vec<String> {
    trail
        .iter()
        .map(|t| t.name.clone())
        .chain([n.name.clone()])
        .collect()
}

fn distributions(tree: &[Node], owners: &Owners<'_>) -> Vec<DistTime> {
    let mut by: BTreeMap<&str, DistTime> = BTreeMap::new();
    let mut heaviest_entry: BTreeMap<&str, f64> = BTreeMap::new();
    let mut total_self = 0.0;
    each(tree, &mut Vec::new(), &mut |n, trail| {
        total_self += n.self_ms;
        let d = by.entry(n.dist.as_str()).or_insert_with(|| DistTime {
            name: n.dist.clone(),
            version: owners.versions.get(&n.dist).cloned(),
            self_ms: 0.0,
            share: 0.0,
            cumulative_ms: 0.0,
            modules: 0,
            first_chain: Vec::new(),
        });
        d.self_ms += n.self_ms;
        d.modules += 1;
        // Outermost: no ancestor of the same distribution (its time is already counted).
        if !trail.iter().any(|t| t.dist == n.dist) {
            d.cumulative_ms += n.cumulative_ms;
            let best = heaviest_entry.entry(n.dist.as_str()).or_insert(-1.0);
            if n.cumulative_ms > *best {
                *best = n.cumulative_ms;
                d.first_chain = chain(trail, n);
            }
        }
    });
    let mut out: Vec<DistTime> = by.into_values().collect();
    for d in &mut out {
        d.self_ms = ms(d.self_ms * 1000.0);
        d.cumulative_ms = ms(d.cumulative_ms * 1000.0);
        d.share = if total_self > 0.0 {
            (d.self_ms / total_self * 10_000.0).round() / 10_000.0
        } else {
            0.0
        };
    }
    out.sort_by(|a, b| b.self_ms.total_cmp(&a.self_ms).then(a.name.cmp(&b.name)));
    out
}

fn heaviest(tree: &[Node], top: usize, by: impl Fn(&Heavy) -> f64) -> Vec<Heavy> {
    let mut all = Vec::new();
    each(tree, &mut Vec::new(), &mut |n, trail| {
        all.push(Heavy {
            module: n.name.clone(),
            dist: n.dist.clone(),
            self_ms: n.self_ms,
            cumulative_ms: n.cumulative_ms,
            chain: chain(trail, n),
        })
    });
    all.sort_by(|a, b| by(b).total_cmp(&by(a)).then(a.module.cmp(&b.module)));
    all.truncate(top);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::imports::parse::parse;

    fn run(a_self: u64) -> Parsed {
        parse(&format!(
            "@@analyze-imports-start@@\n\
             import time:        10 |         10 |       json.decoder\n\
             import time:        20 |         30 |     json\n\
             import time:       300 |        300 |     pkg_b\n\
             import time:        40 |        370 |   pkg_a.sub\n\
             import time: {a_self:>9} |  {:>9} | pkg_a\n\
             @@analyze-imports-end@@\n",
            a_self + 370
        ))
    }

    fn owners_profile(runs: &[Parsed]) -> Profile {
        let modules: BTreeMap<String, String> = [("pkg_a", "a"), ("pkg_b", "b")]
            .map(|(m, d)| (m.to_owned(), d.to_owned()))
            .into();
        let versions = [("a".to_owned(), "1.0".to_owned())].into();
        let stdlib = ["json".to_owned()].into();
        let owners = Owners {
            modules: &modules,
            versions: &versions,
            stdlib: &stdlib,
        };
        profile(runs, &[0.5, 0.6, 0.7], &owners, 3)
    }

    #[test]
    fn medians_distributions_and_chains() {
        let p = owners_profile(&[run(100), run(900), run(200)]);
        assert_eq!(p.tree[0].self_ms, 0.2, "the median of 100, 900, 200 us");
        assert_eq!(p.imports_ms, 0.57);
        assert_eq!(p.wall_ms, 600.0);
        assert_eq!(p.modules, 5);
        let names: Vec<&str> = p.distributions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["b", "a", STDLIB], "by self time");
        let b = &p.distributions[0];
        assert_eq!(b.first_chain, ["pkg_a", "pkg_a.sub", "pkg_b"]);
        let a = &p.distributions[1];
        assert_eq!((a.self_ms, a.cumulative_ms, a.modules), (0.24, 0.57, 2));
        assert_eq!(a.version.as_deref(), Some("1.0"));
        let total: f64 = p.distributions.iter().map(|d| d.self_ms).sum();
        assert!((total - p.imports_ms).abs() < 1e-9, "{total}");
        assert_eq!(p.heaviest.len(), 3);
        assert_eq!(p.heaviest[2].chain, ["pkg_a", "pkg_a.sub", "pkg_b"]);
        assert_eq!(p.heaviest_self[0].module, "pkg_b", "300 us of its own");
    }
}

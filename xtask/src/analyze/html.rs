//! `--html FILE`: one self-contained page (inline CSS and JavaScript, data embedded as JSON)
//! with a zoomable squarified treemap of the layer, coloured by kind of file; with `--imports`
//! also a zoomable icicle graph of the import tree, coloured by distribution (`flame.html`).

use std::collections::BTreeMap;

use camino::Utf8Path;
use serde::Serialize;

use super::{Analysis, Kind, Layer};

const TEMPLATE: &str = include_str!("treemap.html");
const FLAME: &str = include_str!("flame.html");
/// Children kept per box; the rest are summed into one "other" box, so that the page stays
/// small (a few hundred kB for a 9,000-file layer) and the browser fast.
const MAX_CHILDREN: usize = 24;
/// Folder levels below a distribution.
const MAX_DEPTH: usize = 4;

/// A box of the treemap. Short field names: the page embeds thousands of these.
#[derive(Debug, Serialize)]
pub struct Node {
    n: String,
    v: u64,
    /// Index into `Kind::ALL` of the kind holding most bytes.
    k: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    c: Vec<Node>,
    /// The normalized distribution name, on a distribution's box.
    #[serde(skip_serializing_if = "Option::is_none")]
    d: Option<String>,
    /// The distribution's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    ver: Option<String>,
}

#[derive(Default)]
struct Trie {
    bytes: u64,
    kinds: [u64; 8],
    files: u64,
    children: BTreeMap<String, Trie>,
}

impl Trie {
    fn insert(&mut self, rel: &Utf8Path, bytes: u64, kind: Kind) {
        let k = Kind::ALL.iter().position(|x| *x == kind).unwrap_or(0);
        let mut node = self;
        node.bytes += bytes;
        node.kinds[k] += bytes;
        node.files += 1;
        for c in rel.components() {
            node = node.children.entry(c.as_str().to_owned()).or_default();
            node.bytes += bytes;
            node.kinds[k] += bytes;
            node.files += 1;
        }
    }

    fn dominant(kinds: &[u64; 8]) -> usize {
        (0..8)
            .max_by_key(|&i| (kinds[i], std::cmp::Reverse(i)))
            .unwrap_or(0)
    }

    fn into_node(self, name: String, depth: usize) -> Node {
        let k = Self::dominant(&self.kinds);
        let mut c = Vec::new();
        if depth < MAX_DEPTH && !self.children.is_empty() {
            let mut kids: Vec<(String, Trie)> = self.children.into_iter().collect();
            kids.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then_with(|| a.0.cmp(&b.0)));
            let rest = if kids.len() > MAX_CHILDREN {
                kids.split_off(MAX_CHILDREN - 1)
            } else {
                Vec::new()
            };
            c = kids
                .into_iter()
                .map(|(n, t)| t.into_node(n, depth + 1))
                .collect();
            if !rest.is_empty() {
                let mut kinds = [0u64; 8];
                let mut bytes = 0;
                let mut files = 0;
                for (_, t) in &rest {
                    bytes += t.bytes;
                    files += t.files;
                    for (a, b) in kinds.iter_mut().zip(t.kinds) {
                        *a += b;
                    }
                }
                c.push(Node {
                    n: format!("other ({} items, {files} files)", rest.len()),
                    v: bytes,
                    k: Self::dominant(&kinds),
                    c: Vec::new(),
                    d: None,
                    ver: None,
                });
            }
        }
        Node {
            n: name,
            v: self.bytes,
            k,
            c,
            d: None,
            ver: None,
        }
    }
}

/// The treemap's tree: the layer -> distributions (and the files outside them) -> folders.
pub fn tree(layer: &Layer) -> Node {
    let mut per_dist: Vec<Trie> = (0..layer.dists.len()).map(|_| Trie::default()).collect();
    let mut outside = Trie::default();
    let mut unattributed = Trie::default();
    for f in &layer.files {
        match (f.dist, f.site) {
            (Some(d), Some(s)) => {
                let rel = f.path.strip_prefix(&layer.sites[s]).unwrap_or(&f.path);
                per_dist[d].insert(rel, f.bytes, f.kind);
            }
            (Some(d), None) => per_dist[d].insert(&f.path, f.bytes, f.kind),
            (None, Some(s)) => {
                let rel = f.path.strip_prefix(&layer.sites[s]).unwrap_or(&f.path);
                unattributed.insert(rel, f.bytes, f.kind);
            }
            (None, None) => outside.insert(&f.path, f.bytes, f.kind),
        }
    }
    let mut kids: Vec<Node> = layer
        .dists
        .iter()
        .zip(per_dist)
        .map(|(d, t)| {
            let mut node = t.into_node(d.name.clone(), 1);
            node.d = Some(d.norm.clone());
            node.ver = Some(d.version.clone());
            node
        })
        .collect();
    for (name, t) in [
        ("(outside site-packages)", outside),
        ("(unattributed)", unattributed),
    ] {
        if t.files > 0 {
            kids.push(t.into_node(name.into(), 1));
        }
    }
    kids.sort_by(|a, b| b.v.cmp(&a.v).then_with(|| a.n.cmp(&b.n)));
    let mut kinds = [0u64; 8];
    for f in &layer.files {
        if let Some(i) = Kind::ALL.iter().position(|x| *x == f.kind) {
            kinds[i] += f.bytes;
        }
    }
    Node {
        n: "layer".into(),
        v: kids.iter().map(|k| k.v).sum(),
        k: Trie::dominant(&kinds),
        c: kids,
        d: None,
        ver: None,
    }
}

#[derive(Serialize)]
struct PageData<'a> {
    title: String,
    kinds: Vec<&'static str>,
    tree: Node,
    analysis: &'a Analysis,
}

/// A bar of the icicle graph: module, index into `FlameData::dists`, self and cumulative ms.
#[derive(Serialize)]
struct Bar {
    n: String,
    d: usize,
    s: f64,
    c: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    k: Vec<Bar>,
}

#[derive(Serialize)]
struct FlameData<'a> {
    code: &'a str,
    runs: usize,
    python: &'a str,
    modules: usize,
    imports_ms: f64,
    /// Distribution names, heaviest (own time) first: the colours go in this order.
    dists: Vec<&'a str>,
    tree: Vec<Bar>,
    distributions: &'a [super::imports::profile::DistTime],
    heaviest: &'a [super::imports::profile::Heavy],
}

fn bars(nodes: &[super::imports::profile::Node], index: &BTreeMap<&str, usize>) -> Vec<Bar> {
    nodes
        .iter()
        .map(|n| Bar {
            n: n.name.clone(),
            d: index.get(n.dist.as_str()).copied().unwrap_or(0),
            s: n.self_ms,
            c: n.cumulative_ms,
            k: bars(&n.children, index),
        })
        .collect()
}

/// The import section of the page, data included.
fn flame(r: &super::imports::ImportReport) -> String {
    let p = &r.profile;
    let dists: Vec<&str> = p.distributions.iter().map(|d| d.name.as_str()).collect();
    let index: BTreeMap<&str, usize> = dists.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let data = FlameData {
        code: &r.code,
        runs: r.runs,
        python: &r.python,
        modules: p.modules,
        imports_ms: p.imports_ms,
        dists,
        tree: bars(&p.tree, &index),
        distributions: &p.distributions,
        heaviest: &p.heaviest,
    };
    let json = serde_json::to_string(&data)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    FLAME.replace("/*IMPORTS*/null", &json)
}

/// The page, data included.
pub fn page(
    analysis: &Analysis,
    layer: &Layer,
    imports: Option<&super::imports::ImportReport>,
) -> String {
    let data = PageData {
        title: analysis
            .layer
            .file_name()
            .unwrap_or(analysis.layer.as_str())
            .to_owned(),
        kinds: Kind::ALL.iter().map(|k| k.as_str()).collect(),
        tree: tree(layer),
        analysis,
    };
    // `<` escaped so that no file name can close the <script> element early.
    let json = serde_json::to_string(&data)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    let page = TEMPLATE.replace("/*DATA*/null", &json);
    match imports {
        // Right below the treemap, above its long tables.
        Some(r) => page.replacen(
            "<div id=\"tip\"></div>",
            &format!("<div id=\"tip\"></div>\n{}", flame(r)),
            1,
        ),
        None => page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_children_are_summed_into_other() {
        let mut t = Trie::default();
        for i in 0..40u64 {
            t.insert(
                Utf8Path::new(&format!("pkg/m{i:02}.py")),
                100 + i,
                Kind::Sources,
            );
        }
        t.insert(Utf8Path::new("pkg/x.so"), 10_000, Kind::Native);
        let node = t.into_node("d".into(), 1);
        assert_eq!(node.v, 10_000 + (0..40).map(|i| 100 + i).sum::<u64>());
        assert_eq!(node.k, 2, "native holds most bytes");
        let pkg = &node.c[0];
        assert_eq!(pkg.c.len(), MAX_CHILDREN);
        assert_eq!(pkg.c[0].n, "x.so");
        let other = pkg.c.last().unwrap();
        assert!(other.n.starts_with("other (18 items"), "{}", other.n);
        assert_eq!(pkg.c.iter().map(|c| c.v).sum::<u64>(), pkg.v);
    }
}

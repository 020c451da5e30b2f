//! `--diff OLD NEW`: what changed between two layers, per distribution, as a markdown table for
//! a pull-request comment (or JSON).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use camino::Utf8Path;
use serde::Serialize;

use super::imports::ImportReport;
use super::Analysis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Upgraded,
    Downgraded,
    /// Same version, different bytes (other profile, other build).
    Changed,
    Same,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub change: Change,
    pub old_bytes: u64,
    pub new_bytes: u64,
    pub delta_bytes: i64,
    pub delta_compressed_bytes: i64,
    /// With `--imports`: the distribution's own import time (median ms) in each layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_import_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_import_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    pub old_zip_bytes: Option<u64>,
    pub new_zip_bytes: Option<u64>,
    pub old_unpacked_bytes: u64,
    pub new_unpacked_bytes: u64,
    pub delta_unpacked_bytes: i64,
    pub delta_compressed_bytes: i64,
    /// Sorted by the size of the change, largest first; unchanged rows last.
    pub rows: Vec<Row>,
    /// With `--imports`: both layers' import profiles (without their trees).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imports: Option<ImportsDiff>,
}

/// `--diff --imports`: the import's total in each layer, and per distribution in the rows.
#[derive(Debug, Clone, Serialize)]
pub struct ImportsDiff {
    pub code: String,
    pub runs: usize,
    pub old_ms: f64,
    pub new_ms: f64,
    /// Largest change first: the distributions, and the standard library, by own time.
    pub by_distribution: Vec<(String, f64, f64)>,
}

/// Compares release numbers (`1.10.0` > `1.9.2`), then the whole string; enough to tell an
/// upgrade from a downgrade between two pinned versions.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let release = |v: &str| -> Vec<u64> {
        v.split(|c: char| !c.is_ascii_digit() && c != '.')
            .next()
            .unwrap_or_default()
            .split('.')
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let (ra, rb) = (release(a), release(b));
    let n = ra.len().max(rb.len());
    let pad = |mut v: Vec<u64>| {
        v.resize(n, 0);
        v
    };
    pad(ra).cmp(&pad(rb)).then_with(|| a.cmp(b))
}

/// Per normalized name: versions joined, unpacked and compressed bytes.
fn per_dist(a: &Analysis) -> BTreeMap<String, (String, u64, u64)> {
    let mut out: BTreeMap<String, (String, u64, u64)> = BTreeMap::new();
    for d in &a.distributions {
        let e = out
            .entry(d.normalized.clone())
            .or_insert((String::new(), 0, 0));
        if !e.0.is_empty() {
            e.0.push_str(", ");
        }
        e.0.push_str(&d.version);
        e.1 += d.bytes;
        e.2 += d.compressed_bytes;
    }
    for b in [&a.outside_site_packages, &a.unattributed] {
        if b.files > 0 {
            out.insert(b.name.clone(), (String::new(), b.bytes, b.compressed_bytes));
        }
    }
    out
}

/// Compares two analyses; pure.
pub fn diff(old: &Analysis, new: &Analysis) -> Diff {
    let (o, n) = (per_dist(old), per_dist(new));
    let mut names: Vec<&String> = o.keys().chain(n.keys()).collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<Row> = names
        .into_iter()
        .map(|name| {
            let (a, b) = (o.get(name), n.get(name));
            let bytes = |x: Option<&(String, u64, u64)>| x.map(|x| (x.1, x.2)).unwrap_or((0, 0));
            let ((ob, oc), (nb, nc)) = (bytes(a), bytes(b));
            let version =
                |x: Option<&(String, u64, u64)>| x.map(|x| x.0.clone()).filter(|v| !v.is_empty());
            let change = match (a, b) {
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
                (Some(a), Some(b)) => match compare_versions(&b.0, &a.0) {
                    Ordering::Greater => Change::Upgraded,
                    Ordering::Less => Change::Downgraded,
                    Ordering::Equal if ob != nb => Change::Changed,
                    Ordering::Equal => Change::Same,
                },
            };
            Row {
                name: name.clone(),
                old_version: version(a),
                new_version: version(b),
                change,
                old_bytes: ob,
                new_bytes: nb,
                delta_bytes: nb as i64 - ob as i64,
                delta_compressed_bytes: nc as i64 - oc as i64,
                old_import_ms: None,
                new_import_ms: None,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.change == Change::Same)
            .cmp(&(b.change == Change::Same))
            .then(
                b.delta_bytes
                    .unsigned_abs()
                    .cmp(&a.delta_bytes.unsigned_abs()),
            )
            .then_with(|| a.name.cmp(&b.name))
    });
    Diff {
        old: old.layer.to_string(),
        new: new.layer.to_string(),
        old_zip_bytes: old.zip_bytes,
        new_zip_bytes: new.zip_bytes,
        old_unpacked_bytes: old.unpacked_bytes,
        new_unpacked_bytes: new.unpacked_bytes,
        delta_unpacked_bytes: new.unpacked_bytes as i64 - old.unpacked_bytes as i64,
        delta_compressed_bytes: new.compressed_bytes as i64 - old.compressed_bytes as i64,
        rows,
        imports: None,
    }
}

impl Diff {
    /// Puts each distribution's own import time beside its bytes.
    pub fn add_imports(&mut self, old: &ImportReport, new: &ImportReport) {
        let own = |r: &ImportReport| -> BTreeMap<String, f64> {
            r.profile
                .distributions
                .iter()
                .map(|d| (d.name.clone(), d.self_ms))
                .collect()
        };
        let (o, n) = (own(old), own(new));
        for row in &mut self.rows {
            row.old_import_ms = o.get(&row.name).copied().or(Some(0.0));
            row.new_import_ms = n.get(&row.name).copied().or(Some(0.0));
        }
        let mut by: Vec<(String, f64, f64)> = o
            .keys()
            .chain(n.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|k| {
                let get = |m: &BTreeMap<String, f64>| m.get(k).copied().unwrap_or(0.0);
                (k.clone(), get(&o), get(&n))
            })
            .collect();
        by.sort_by(|a, b| (b.2 - b.1).abs().total_cmp(&(a.2 - a.1).abs()));
        self.imports = Some(ImportsDiff {
            code: new.code.clone(),
            runs: new.runs.min(old.runs),
            old_ms: old.profile.imports_ms,
            new_ms: new.profile.imports_ms,
            by_distribution: by,
        });
    }

    /// The import section of the markdown: the total, then the distributions whose own import
    /// time changed most.
    fn imports_markdown(&self, s: &mut String) {
        let Some(i) = &self.imports else { return };
        let _ = writeln!(
            s,
            "\n### Import time (`{}`, median of {} runs): {:.0} ms → {:.0} ms ({:+.0} ms)\n",
            i.code,
            i.runs,
            i.old_ms,
            i.new_ms,
            i.new_ms - i.old_ms
        );
        let _ = writeln!(s, "| distribution | old ms | new ms | change |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for (name, o, n) in i.by_distribution.iter().take(15) {
            let _ = writeln!(s, "| {name} | {o:.1} | {n:.1} | {:+.1} |", n - o);
        }
    }
}

/// `+1.2 MB`, `-0.3 MB`, `+512 B` for changes under 0.05 MB.
fn signed(delta: i64) -> String {
    let sign = if delta < 0 { "-" } else { "+" };
    let abs = delta.unsigned_abs();
    if abs < 50_000 {
        format!("{sign}{abs} B")
    } else {
        format!("{sign}{:.1} MB", abs as f64 / 1_000_000.0)
    }
}

impl Diff {
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let rel = |d: i64, base: u64| {
            if base == 0 {
                String::new()
            } else {
                format!(" ({:+.1}%)", d as f64 * 100.0 / base as f64)
            }
        };
        let _ = writeln!(
            s,
            "### Layer size: {} unpacked{}, {} compressed",
            signed(self.delta_unpacked_bytes),
            rel(self.delta_unpacked_bytes, self.old_unpacked_bytes),
            signed(self.delta_compressed_bytes)
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "`{}` → `{}`", self.old, self.new);
        let _ = writeln!(s);
        let _ = writeln!(s, "| | old | new | change |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| unpacked | {} | {} | {} |",
            crate::util::fmt::mb(self.old_unpacked_bytes),
            crate::util::fmt::mb(self.new_unpacked_bytes),
            signed(self.delta_unpacked_bytes)
        );
        if let (Some(o), Some(n)) = (self.old_zip_bytes, self.new_zip_bytes) {
            let _ = writeln!(
                s,
                "| zip | {} | {} | {} |",
                crate::util::fmt::mb(o),
                crate::util::fmt::mb(n),
                signed(n as i64 - o as i64)
            );
        }
        let changed: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.change != Change::Same)
            .collect();
        let _ = writeln!(s);
        if changed.is_empty() {
            let _ = writeln!(s, "No distribution changed.");
            self.imports_markdown(&mut s);
            return s;
        }
        let _ = writeln!(
            s,
            "| distribution | change | old | new | unpacked | compressed |"
        );
        let _ = writeln!(s, "|---|---|---|---|---:|---:|");
        for r in &changed {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.name,
                format!("{:?}", r.change).to_lowercase(),
                r.old_version.as_deref().unwrap_or("–"),
                r.new_version.as_deref().unwrap_or("–"),
                signed(r.delta_bytes),
                signed(r.delta_compressed_bytes)
            );
        }
        let same = self.rows.len() - changed.len();
        if same > 0 {
            let _ = writeln!(s, "\n{same} distributions unchanged.");
        }
        self.imports_markdown(&mut s);
        s
    }
}

pub fn run(
    old: &Utf8Path,
    new: &Utf8Path,
    json: bool,
    imports: Option<&super::imports::ImportsOptions>,
) -> Result<ExitCode> {
    let (old_a, old_layer) = super::read_attributed(old)?;
    let (new_a, new_layer) = super::read_attributed(new)?;
    let mut d = diff(&old_a, &new_a);
    if let Some(options) = imports {
        let measure = |path, layer| super::imports::measure(path, layer, None, options, 20);
        d.add_imports(&measure(old, &old_layer)?, &measure(new, &new_layer)?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", d.to_markdown());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_table() {
        let table = [
            ("1.10.0", "1.9.2", Ordering::Greater),
            ("1.0", "1.0.0", Ordering::Less),
            ("2.0.0rc1", "1.99", Ordering::Greater),
            ("1.78.7", "1.78.7", Ordering::Equal),
            ("0.9", "1.0", Ordering::Less),
        ];
        for (a, b, expected) in table {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn signed_sizes() {
        assert_eq!(signed(1_234_567), "+1.2 MB");
        assert_eq!(signed(-300_000), "-0.3 MB");
        assert_eq!(signed(-12), "-12 B");
        assert_eq!(signed(0), "+0 B");
    }
}

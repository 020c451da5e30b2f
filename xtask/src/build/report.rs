//! The size report written beside every layer: `report.json` for machines,
//! `layer-size-report.txt` for people.

use std::fmt::Write as _;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::core::{Owners, RemovedDistribution, LAMBDA_UNPACKED_LIMIT, LAMBDA_ZIP_LIMIT};
use crate::util::fmt::mb;
use crate::util::zipinfo::ZipStats;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    pub arch: String,
    pub zip_path: Utf8PathBuf,
    pub zip_bytes: u64,
    pub unpacked_bytes: u64,
    pub python_version: String,
    pub glibc: String,
    /// The interpreter and standard library: everything outside site-packages.
    pub runtime: Part,
    pub packages: Vec<PackageReport>,
    pub limits: Limits,
    pub budget: Limits,
    /// Each limit or budget the layer exceeds, in words; empty when it fits.
    pub over_budget: Vec<String>,
    /// The profile the layer was built with.
    #[serde(default)]
    pub profile: String,
    /// Everything under site-packages (what `site-packages.zip` holds counted as if unpacked).
    #[serde(default)]
    pub site_packages: Part,
    /// Distributions a rule removed whole.
    #[serde(default)]
    pub removed_distributions: Vec<RemovedDistribution>,
    /// What pruning removed, per rule.
    #[serde(default)]
    pub removed: Vec<Removed>,
    /// Protected files a rule tried to delete (and did not).
    #[serde(default)]
    pub refused: Vec<Refused>,
    /// ELF files stripping looked at: bytes before and after (`after` null: left as it was).
    #[serde(default)]
    pub stripped: Vec<StrippedFile>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// What trace-driven minimization kept and removed, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimized: Option<crate::build::minimize::Summary>,
    /// Seconds spent in each step of the build, in the order they ran. Not in the zip, whose
    /// bytes must not depend on how fast the machine was.
    #[serde(default)]
    pub timings: Vec<StepTime>,
    /// With `--split`: the parts, in the order Lambda must stack them (also in `layers.json`);
    /// the single zip (`zip_path`, `zip_bytes`) is then not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<crate::core::stack::Stack>,
    /// Stage cache hits and misses per stage (install, bytecode, strip, zip).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<crate::build::cache::StageCount>,
    /// The spec's `[[patch]]` changes applied to installed files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<crate::core::AppliedPatch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTime {
    pub step: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Part {
    pub bytes: u64,
    pub compressed_bytes: u64,
    pub files: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageReport {
    pub name: String,
    pub version: String,
    pub wheel: String,
    pub bytes: u64,
    pub compressed_bytes: u64,
    pub files: u64,
    /// Unpacked bytes as installed, before slimming.
    #[serde(default)]
    pub bytes_before: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refused {
    pub rule: String,
    pub path: Utf8PathBuf,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StrippedFile {
    pub path: Utf8PathBuf,
    pub before: u64,
    pub after: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Limits {
    pub zip_bytes: Option<u64>,
    pub unpacked_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Removed {
    pub rule: String,
    pub files: u64,
    pub bytes: u64,
}

/// Builds the report from the zip's entries.
///
/// Long on purpose: one pass filling the report's fields in the order they are printed.
pub fn build(
    spec: &crate::spec::Spec,
    arch: crate::spec::Arch,
    python_version: &str,
    zip_path: &Utf8Path,
    stats: &ZipStats,
    attribution: &[crate::util::zipinfo::EntryStat],
    owners: &Owners,
) -> Report {
    let mut runtime = Part::default();
    let mut site_packages = Part::default();
    let mut per_dist: Vec<Part> = vec![Part::default(); owners.dists.len()];
    // What Lambda unpacks: the layer zip's own entries (a site-packages.zip counts as one file).
    let unpacked = stats
        .entries
        .iter()
        .filter(|e| !e.path.as_str().ends_with('/'))
        .map(|e| e.uncompressed)
        .sum();
    // Who owns the bytes: `attribution` also lists the entries inside site-packages.zip.
    for e in attribution {
        if e.path.as_str().ends_with('/') {
            continue;
        }
        if e.path.starts_with(&owners.site_packages) {
            site_packages.bytes += e.uncompressed;
            site_packages.compressed_bytes += e.compressed;
            site_packages.files += 1;
        }
        let part = match owners.owner(&e.path) {
            Some(i) => &mut per_dist[i],
            None => &mut runtime,
        };
        part.bytes += e.uncompressed;
        part.compressed_bytes += e.compressed;
        part.files += 1;
    }
    let mut packages: Vec<PackageReport> = owners
        .dists
        .iter()
        .zip(per_dist)
        .map(|((name, version, wheel), part)| PackageReport {
            name: name.clone(),
            version: version.clone(),
            wheel: wheel.clone(),
            bytes: part.bytes,
            compressed_bytes: part.compressed_bytes,
            files: part.files,
            bytes_before: None,
        })
        .collect();
    packages.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));

    let limits = Limits {
        zip_bytes: Some(LAMBDA_ZIP_LIMIT),
        unpacked_bytes: Some(LAMBDA_UNPACKED_LIMIT),
    };
    let budget = Limits {
        zip_bytes: spec.budget.zip_bytes,
        unpacked_bytes: spec.budget.unpacked_bytes,
    };
    let over = over_budget(Some(stats.zip_bytes), unpacked, &limits, &budget);

    // Over 50 MB the zip cannot be uploaded directly but can be published from S3, which is
    // bound by the unpacked limit only: a spec that wants one direct upload says so in
    // `[budget] zip-bytes`, and otherwise this is a note.
    let mut notes = Vec::new();
    if stats.zip_bytes > LAMBDA_ZIP_LIMIT {
        notes.push(direct_upload_note(stats.zip_bytes));
    }

    Report {
        name: spec.layer.name.clone(),
        arch: arch.to_string(),
        zip_path: zip_path.to_owned(),
        zip_bytes: stats.zip_bytes,
        unpacked_bytes: unpacked,
        python_version: python_version.to_owned(),
        glibc: spec.glibc().to_string(),
        runtime,
        packages,
        limits,
        budget,
        over_budget: over,
        profile: String::new(),
        site_packages,
        removed: Vec::new(),
        removed_distributions: Vec::new(),
        refused: Vec::new(),
        stripped: Vec::new(),
        notes,
        minimized: None,
        timings: Vec::new(),
        split: None,
        cache: Vec::new(),
        patches: Vec::new(),
    }
}

/// Each limit or budget exceeded, in words; `zip` is `None` for a split layer, whose parts
/// are checked one by one.
fn over_budget(zip: Option<u64>, unpacked: u64, limits: &Limits, budget: &Limits) -> Vec<String> {
    let mut over = Vec::new();
    let mut check = |what: &str, value: Option<u64>, limit: Option<u64>, whose: &str| {
        if let (Some(value), Some(limit)) = (value, limit) {
            if value > limit {
                over.push(format!(
                    "{what} {} is over {whose} {}",
                    mb(value),
                    mb(limit)
                ));
            }
        }
    };
    // Lambda's 50 MB limits a direct upload only (S3 takes more); it is a note in `build`
    // and a limit for each part of a split layer (`set_split`).
    check(
        "unpacked",
        Some(unpacked),
        limits.unpacked_bytes,
        "Lambda's unpacked limit of",
    );
    check("zip", zip, budget.zip_bytes, "the spec's budget of");
    check(
        "unpacked",
        Some(unpacked),
        budget.unpacked_bytes,
        "the spec's budget of",
    );
    over
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.0}%", part as f64 * 100.0 / whole as f64)
}

/// What to do with a zip over Lambda's 50 MB direct upload.
pub fn direct_upload_note(zip_bytes: u64) -> String {
    format!(
        "the zip ({}) is over Lambda's {} direct upload: publish it from S3 \
         (`aws lambda publish-layer-version --content S3Bucket=...,S3Key=...`), or build with \
         `--split` for parts of at most 50 MB each",
        mb(zip_bytes),
        mb(LAMBDA_ZIP_LIMIT)
    )
}

impl Report {
    /// A split layer: its parts replace the single zip, each checked against the zip limits.
    pub fn set_split(&mut self, stack: crate::core::stack::Stack) {
        let mut over = over_budget(None, self.unpacked_bytes, &self.limits, &self.budget);
        let limit = [self.limits.zip_bytes, self.budget.zip_bytes]
            .into_iter()
            .flatten()
            .min();
        for p in &stack.parts {
            if let Some(limit) = limit.filter(|&l| p.zip_bytes > l) {
                over.push(format!(
                    "{} {} is over {}",
                    p.file,
                    mb(p.zip_bytes),
                    mb(limit)
                ));
            }
        }
        self.over_budget = over;
        self.notes.push(format!(
            "split into {} layers (--split): only the parts are written, not {}; stack them in the order of layers.json",
            stack.parts.len(),
            self.zip_path
        ));
        self.split = Some(stack);
    }

    /// The report for people.
    ///
    /// Long on purpose: the sections one after another, read top to bottom like the output.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "layer   {} ({}, Python {}, glibc <= {})",
            self.zip_path, self.arch, self.python_version, self.glibc
        );
        let _ = writeln!(
            s,
            "zip     {:>10}  {:>4} of Lambda's 50 MB direct upload",
            mb(self.zip_bytes),
            pct(self.zip_bytes, LAMBDA_ZIP_LIMIT)
        );
        let _ = writeln!(
            s,
            "unzip   {:>10}  {:>4} of Lambda's 250 MB for function + layers",
            mb(self.unpacked_bytes),
            pct(self.unpacked_bytes, LAMBDA_UNPACKED_LIMIT)
        );
        if let Some(b) = self.budget.zip_bytes {
            let _ = writeln!(s, "budget  zip {} ({})", mb(b), pct(self.zip_bytes, b));
        }
        if let Some(b) = self.budget.unpacked_bytes {
            let _ = writeln!(
                s,
                "budget  unpacked {} ({})",
                mb(b),
                pct(self.unpacked_bytes, b)
            );
        }
        if !self.profile.is_empty() {
            let _ = writeln!(s, "profile {}", self.profile);
        }
        let _ = writeln!(
            s,
            "site-packages {} unpacked, {} compressed, {} files",
            mb(self.site_packages.bytes),
            mb(self.site_packages.compressed_bytes),
            self.site_packages.files
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<32} {:>12} {:>10} {:>12} {:>7} {:>10}",
            "part", "version", "files", "unpacked", "zipped", "before"
        );
        let _ = writeln!(
            s,
            "{:<32} {:>12} {:>10} {:>12} {:>7}",
            "(runtime: CPython)",
            self.python_version,
            self.runtime.files,
            mb(self.runtime.bytes),
            mb(self.runtime.compressed_bytes)
        );
        for p in &self.packages {
            let _ = writeln!(
                s,
                "{:<32} {:>12} {:>10} {:>12} {:>7} {:>10}",
                p.name,
                p.version,
                p.files,
                mb(p.bytes),
                mb(p.compressed_bytes),
                p.bytes_before.map(mb).unwrap_or_default()
            );
        }
        if !self.removed.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<40} {:>8} {:>12}",
                "removed by rule", "files", "bytes"
            );
            for r in &self.removed {
                let _ = writeln!(s, "{:<40} {:>8} {:>12}", r.rule, r.files, mb(r.bytes));
            }
        }
        if !self.stripped.is_empty() {
            let _ = writeln!(s);
            let saved: u64 = self
                .stripped
                .iter()
                .filter_map(|f| f.after.map(|a| f.before - a.min(f.before)))
                .sum();
            let _ = writeln!(
                s,
                "stripped {} ELF files, saved {}",
                self.stripped.len(),
                mb(saved)
            );
            for f in &self.stripped {
                match f.after {
                    Some(a) => {
                        let _ = writeln!(
                            s,
                            "  {:<70} {:>12} saved",
                            f.path,
                            f.before - a.min(f.before)
                        );
                    }
                    None => {
                        let _ = writeln!(s, "  {:<70} left as it was", f.path);
                    }
                }
            }
        }
        if !self.refused.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "protected files rules tried to delete (kept):");
            for r in &self.refused {
                let _ = writeln!(s, "  {} by `{}`: {}", r.path, r.rule, r.why);
            }
        }
        if let Some(m) = &self.minimized {
            let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "minimized by trace ({}; providers: {}): python/lib kept {} files ({}), removed {} files ({}); {} module(s) listed as removed",
                m.trace,
                m.providers.join(", "),
                m.kept_files,
                mb(m.kept_bytes),
                m.removed_files,
                mb(m.removed_bytes),
                m.removed_modules
            );
            if let Some(proof) = &m.proof {
                let _ = writeln!(s, "  {}", proof.describe());
            }
            if !m.dropped_accelerators.is_empty() {
                let _ = writeln!(
                    s,
                    "  native accelerators left out (pure-Python fallbacks): {}",
                    m.dropped_accelerators.join(", ")
                );
            }
            let _ = writeln!(
                s,
                "  {:<28} {:>7} {:>10} {:>8} {:>10}",
                "part", "kept", "kept MB", "removed", "removed MB"
            );
            for d in &m.distributions {
                let _ = writeln!(
                    s,
                    "  {:<28} {:>7} {:>10.2} {:>8} {:>10.2}",
                    d.name,
                    d.kept_files,
                    d.kept_bytes as f64 / 1e6,
                    d.removed_files,
                    d.removed_bytes as f64 / 1e6
                );
            }
        }
        if let Some(stack) = &self.split {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "split into {} layers, stacked in this order (--layers, first to last):",
                stack.parts.len()
            );
            for p in &stack.parts {
                let _ = writeln!(
                    s,
                    "  {}. {:<44} {:>10} zip {:>10} unpacked {:>6} files",
                    p.part,
                    p.file,
                    mb(p.zip_bytes),
                    mb(p.unpacked_bytes),
                    p.files
                );
            }
        }
        for p in &self.patches {
            let _ = writeln!(
                s,
                "patched {} {} {} with {} (sha256 {}): {}",
                p.distribution, p.version, p.file, p.diff, p.diff_sha256, p.reason
            );
        }
        for note in &self.notes {
            let _ = writeln!(s, "note: {note}");
        }
        if !self.timings.is_empty() {
            let total: f64 = self.timings.iter().map(|t| t.seconds).sum();
            let steps: Vec<String> = self
                .timings
                .iter()
                .map(|t| format!("{} {:.2}", t.step, t.seconds))
                .collect();
            let _ = writeln!(s, "time    {total:.2} s: {}", steps.join(", "));
        }
        if !self.cache.is_empty() {
            let stages: Vec<String> = self
                .cache
                .iter()
                .map(|c| {
                    let what = match c.stage.as_str() {
                        "install" => "wheels",
                        "bytecode" => "modules",
                        "strip" => "ELF files",
                        "zip" => "zip entries",
                        "trace" => "traces",
                        "imports" => "import scans (one per distribution)",
                        "proof" => "proofs",
                        _ => "items",
                    };
                    format!(
                        "{}: {} {what}, {} from the stage cache",
                        c.stage,
                        c.hits + c.misses,
                        c.hits
                    )
                })
                .collect();
            let _ = writeln!(s, "cache   {}", stages.join("; "));
        }
        if self.over_budget.is_empty() {
            let _ = writeln!(s, "\nfits: within Lambda's limits and the spec's budget");
        } else {
            let _ = writeln!(s);
            for o in &self.over_budget {
                let _ = writeln!(s, "OVER: {o}");
            }
        }
        s
    }

    /// Writes `report.json` and `layer-size-report.txt` into `dir`.
    pub fn write(&self, dir: &Utf8Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)? + "\n";
        crate::util::write_bytes_atomic(&dir.join("report.json"), json.as_bytes())?;
        crate::util::write_bytes_atomic(
            &dir.join("layer-size-report.txt"),
            self.to_text().as_bytes(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::core::source_of_pyc;

    #[test]
    fn the_text_report_prints_the_time_of_each_step() {
        let part = serde_json::json!({"bytes": 0, "compressed_bytes": 0, "files": 0});
        let limits = serde_json::json!({"zip_bytes": null, "unpacked_bytes": null});
        let mut report: super::Report = serde_json::from_value(serde_json::json!({
            "name": "l", "arch": "x86_64", "zip_path": "l.zip", "zip_bytes": 1,
            "unpacked_bytes": 2, "python_version": "3.11.9", "glibc": "2.26",
            "runtime": part, "packages": [], "limits": limits, "budget": limits,
            "over_budget": [],
        }))
        .unwrap();
        assert!(report.timings.is_empty(), "an old report.json has none");
        assert!(!report.to_text().contains("time "));
        report.timings = vec![
            super::StepTime {
                step: "fetch".into(),
                seconds: 0.25,
            },
            super::StepTime {
                step: "site-packages zip".into(),
                seconds: 1.5,
            },
        ];
        let text = report.to_text();
        assert!(
            text.contains("time    1.75 s: fetch 0.25, site-packages zip 1.50"),
            "{text}"
        );
        report.cache = vec![crate::build::cache::StageCount {
            stage: "install".into(),
            hits: 51,
            misses: 0,
        }];
        let text = report.to_text();
        assert!(
            text.contains("cache   install: 51 wheels, 51 from the stage cache"),
            "{text}"
        );
    }

    #[test]
    fn bytecode_belongs_to_its_source() {
        assert_eq!(
            source_of_pyc("a/__pycache__/b.cpython-311.pyc".into()).unwrap(),
            "a/b.py"
        );
        assert_eq!(source_of_pyc("a/b.pyc".into()).unwrap(), "a/b.py");
        assert_eq!(
            source_of_pyc("__pycache__/six.cpython-311.opt-1.pyc".into()).unwrap(),
            "six.py"
        );
    }
}

//! The size report written beside every layer: `report.json` for machines,
//! `layer-size-report.txt` for people.

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
    /// Wall-clock seconds.
    pub seconds: f64,
    /// CPU seconds (user plus system) of the build and of the processes it ran and waited
    /// for during the step, the sandbox's included: above `seconds` when the step used
    /// several cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
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

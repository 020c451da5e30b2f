//! The proof of a minimized layer: `verify` with the workload, once per distinct layer. A
//! rebuild whose minimized zip is byte for byte one whose proof already passed, with the same
//! verify inputs, reuses that result and says so: the verify did run, on these exact bytes,
//! under the same spec folder, workloads, providers, verify options, xtask binary, sandbox
//! tool and kernel. Anything else (another zip, another input, a failed proof) runs again.
//! Only passing proofs are kept (stage "proof"); `cargo xtask verify` always runs.

use anyhow::Result;
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use crate::build::cache::{Stage, StageCache};
use crate::build::plan::BuildPlan;
use crate::util::progress::Progress;

/// How the proof of this build's minimized layer was obtained (report.json `minimized.proof`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proof {
    /// `ran` in this build, or `reused` from an earlier build of the identical zip.
    pub verify: String,
    /// The sha256 of the zip the verify ran on (this build's zip).
    pub layer_sha256: String,
    /// When that verify ran (UTC).
    pub verified_at: String,
    pub checks_passed: usize,
    /// Findings that are the runtime's, not minimization's (left to `verify`).
    #[serde(default)]
    pub inherited: Vec<String>,
}

impl Proof {
    /// One plain line for the build's output and the text report.
    pub fn describe(&self) -> String {
        if self.verify == "reused" {
            format!(
                "proof: reused the passing verify of the identical layer sha256 {} from {} ({} checks passed; same spec folder, workloads, providers, verify options, xtask binary, bwrap and kernel): nothing ran in this build; `cargo xtask verify` runs it again",
                self.layer_sha256, self.verified_at, self.checks_passed
            )
        } else {
            format!(
                "proof: verify with the workload ran on this layer (sha256 {}) at {}: {} checks passed",
                self.layer_sha256, self.verified_at, self.checks_passed
            )
        }
    }
}

/// The verify options of the proof: every check, one timing run, the workloads and providers.
pub fn verify_options(
    build: &BuildPlan,
    zip_path: &Utf8Path,
) -> Result<crate::verify::VerifyOptions> {
    let mut options = crate::verify::VerifyOptions::of_layer(zip_path, build.arch, 1);
    options.workloads = super::workloads(&build.spec)?;
    options.providers = build.spec.minimize.providers.clone();
    Ok(options)
}

/// Proves the minimized layer at `zip_path`, or reuses the passing proof of the same bytes
/// under the same inputs.
pub fn prove(
    build: &BuildPlan,
    zip_path: &Utf8Path,
    site_rel: &Utf8Path,
    plan: &super::Plan,
    cache: &StageCache,
    progress: &Progress,
) -> Result<Proof> {
    let layer_sha256 = crate::util::sha256_file(zip_path)?;
    let key = proof_key(build, zip_path, &layer_sha256)?;
    let earlier = cache
        .get_file(Stage::Proof, &key)
        .and_then(|bytes| serde_json::from_slice::<Proof>(&bytes).ok())
        .filter(|p| p.layer_sha256 == layer_sha256 && p.verify == "ran");
    if let Some(earlier) = earlier {
        for line in &earlier.inherited {
            progress.line(format!(
                "minimize: not caused by minimization, left to verify: {line}"
            ));
        }
        let proof = Proof {
            verify: "reused".into(),
            ..earlier
        };
        progress.line(format!("minimize: {}", proof.describe()));
        return Ok(proof);
    }
    let proven = super::stage::prove_minimized(build, zip_path, site_rel, plan, progress)?;
    let proof = Proof {
        verify: "ran".into(),
        layer_sha256,
        verified_at: now_utc(),
        checks_passed: proven.checks_passed,
        inherited: proven.inherited,
    };
    // A proof that cannot be kept only costs the next build a verify.
    let _ = cache.put_file(Stage::Proof, &key, &serde_json::to_vec(&proof)?);
    progress.line(format!("minimize: {}", proof.describe()));
    Ok(proof)
}

/// Everything the verify's outcome depends on besides the zip's bytes: the spec's folders
/// (layer.toml, the lock, rules, profiles, workloads, providers), the verify options (the
/// workloads' sources among them), this xtask (the checks' code), bwrap and the kernel.
fn proof_key(build: &BuildPlan, zip_path: &Utf8Path, layer_sha256: &str) -> Result<String> {
    let spec = &build.spec;
    let mut parts: Vec<Vec<u8>> = vec![
        layer_sha256.as_bytes().to_vec(),
        build.arch.as_str().as_bytes().to_vec(),
    ];
    let mut dirs = vec![spec.dir(), spec.data_dir()];
    dirs.dedup();
    let mut files = Vec::new();
    for dir in &dirs {
        for w in crate::util::walk(dir)? {
            if w.file_type.is_file() {
                files.push(dir.join(w.rel));
            }
        }
    }
    files.sort();
    files.dedup();
    files.push(build.spec_path.clone());
    for f in &files {
        parts.push(f.as_str().as_bytes().to_vec());
        parts.push(crate::util::sha256_file(f)?.into_bytes());
    }
    // The zip's path is not an input of the outcome; everything else in the options is.
    let mut options = verify_options(build, zip_path)?;
    options.layers.clear();
    parts.push(format!("{options:?}").into_bytes());
    parts.push(crate::build::cache::exe_identity()?.into_bytes());
    for tool in ["bwrap", "qemu-aarch64", "qemu-aarch64-static"] {
        parts.push(tool_identity(tool).into_bytes());
    }
    parts.push(
        std::fs::read("/proc/sys/kernel/osrelease").unwrap_or_else(|_| b"unknown kernel".to_vec()),
    );
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(crate::build::cache::key(Stage::Proof, &refs))
}

/// Which `tool` is on PATH (path, size, modification time), or that there is none.
fn tool_identity(tool: &str) -> String {
    let Some(path) = crate::util::which::which(tool) else {
        return format!("{tool}: none");
    };
    let meta = std::fs::metadata(&path).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{tool}: {path} {} {mtime}",
        meta.map(|m| m.len()).unwrap_or_default()
    )
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    utc(secs)
}

/// Seconds since 1970 as a UTC date and time (the civil-from-days algorithm of H. Hinnant).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_169_600 + 3_723), "2026-12-02T01:02:03Z");
    }

    #[test]
    fn a_reused_proof_says_so_and_names_the_layer_and_date() {
        let p = Proof {
            verify: "reused".into(),
            layer_sha256: "ab".repeat(32),
            verified_at: "2026-12-02T08:00:00Z".into(),
            checks_passed: 40,
            inherited: Vec::new(),
        };
        let line = p.describe();
        assert!(
            line.starts_with("proof: reused the passing verify of the identical layer sha256 abab"),
            "{line}"
        );
        assert!(line.contains("from 2026-12-02T08:00:00Z"), "{line}");
        assert!(line.contains("nothing ran in this build"), "{line}");
        let ran = Proof {
            verify: "ran".into(),
            ..p
        };
        assert!(ran.describe().contains("ran on this layer"));
    }
}

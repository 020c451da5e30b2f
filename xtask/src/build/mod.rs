//! `cargo xtask layer`: the build pipeline. First a plan ([`plan::BuildPlan::resolve`], pure:
//! runtime, wheels, profile, rules, minimization, outputs), then its execution
//! ([`execute::execute`]: fetch, unpack runtime, install, prune, bytecode, strip,
//! site-packages zip, minimize, SBOM, package, report), each step in its own function or module.

pub mod cache;
pub mod clients;
pub mod execute;
pub mod fetch;
pub mod minimize;
pub mod patch;
pub mod plan;
mod plan_text;
pub mod report;
mod report_text;
pub mod runtime;
pub mod sbom;
pub mod slim;
pub mod split;
pub mod zip;

use std::process::ExitCode;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::plan::BuildPlan;
use crate::spec::{Arch, Sha256Hex, Spec};

/// What `cargo xtask layer` was asked for, as plain options (flags.rs turns flags into these).
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// Target architecture; default: the spec's `default-arch`.
    pub arch: Option<Arch>,
    /// Output folder; default: `<target>/layer/<arch>/`.
    pub out: Option<Utf8PathBuf>,
    /// A path or URL in place of the spec's runtime download.
    pub python_archive: Option<String>,
    /// The hash the runtime archive must have, in place of the spec's.
    pub python_sha256: Option<Sha256Hex>,
    /// For a cross build: the build machine's CPython archive and its hash, to compile bytecode.
    pub host_python_archive: Option<(String, Sha256Hex)>,
    /// The profile; default: the spec's.
    pub profile: Option<String>,
    /// Never touch the network.
    pub offline: bool,
    /// Trace-driven minimization whatever the profile says.
    pub minimize: bool,
    /// A saved trace to minimize with, instead of running the workload (implies `minimize`).
    pub trace: Option<Utf8PathBuf>,
    /// Write the layer as up to five zips Lambda stacks, each within the zip budget.
    pub split: bool,
}

/// What a finished build produced.
pub struct Built {
    pub report: crate::build::report::Report,
}

/// `cargo xtask layer`: resolves the plan; with `plan_only` prints it and stops, else executes
/// it and prints the report. Exit code 3 when the layer is over a Lambda limit.
pub fn run(
    spec_path: &Utf8Path,
    options: LayerOptions,
    json: bool,
    plan_only: bool,
) -> Result<ExitCode> {
    let spec = Spec::load(spec_path)?;
    let plan = BuildPlan::resolve(spec, &options)?;
    if plan_only {
        if json {
            println!("{}", serde_json::to_string(&plan)?);
        } else {
            print!("{}", plan.to_text());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let built = execute::execute(&plan)?;
    let report = &built.report;
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report.to_text());
    }
    if report.over_budget.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {}", over_budget_message(report));
        Ok(ExitCode::from(3))
    }
}

/// Why the layer does not fit, in one line; a single zip too big for a direct upload (or the
/// spec's zip budget) is what `--split` is for, so the line says so.
fn over_budget_message(report: &crate::build::report::Report) -> String {
    // Only the spec's zip budget makes a big zip an error (Lambda's 50 MB is a note: S3
    // takes more), and splitting cannot help the unpacked limit.
    let one_zip_too_big = report.split.is_none()
        && report
            .budget
            .zip_bytes
            .is_some_and(|limit| report.zip_bytes > limit);
    let hint = if one_zip_too_big {
        "; it cannot be one direct-upload zip: build it with --split to write it as up to 5 layers (each within the zip budget) that Lambda stacks in order"
    } else {
        ""
    };
    format!(
        "the layer does not fit: {}{hint}",
        report.over_budget.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(zip_bytes: u64, unpacked_bytes: u64) -> crate::build::report::Report {
        let part = serde_json::json!({"bytes": 0, "compressed_bytes": 0, "files": 0});
        let limits = serde_json::json!({"zip_bytes": 52_428_800, "unpacked_bytes": 262_144_000});
        let budget = serde_json::json!({"zip_bytes": 52_428_800, "unpacked_bytes": null});
        serde_json::from_value(serde_json::json!({
            "name": "l", "arch": "x86_64", "zip_path": "l.zip", "zip_bytes": zip_bytes,
            "unpacked_bytes": unpacked_bytes, "python_version": "3.11.9", "glibc": "2.34",
            "runtime": part, "packages": [], "limits": limits, "budget": budget,
            "over_budget": ["something is over"],
        }))
        .unwrap()
    }

    #[test]
    fn a_zip_too_big_for_a_direct_upload_suggests_split_and_nothing_else_does() {
        let msg = over_budget_message(&report(80_500_000, 200_000_000));
        assert!(
            msg.starts_with("the layer does not fit: something is over"),
            "{msg}"
        );
        assert!(
            msg.contains("cannot be one direct-upload zip") && msg.contains("--split"),
            "{msg}"
        );
        let msg = over_budget_message(&report(40_000_000, 300_000_000));
        assert!(
            !msg.contains("--split"),
            "splitting does not help the unpacked limit: {msg}"
        );
    }
}

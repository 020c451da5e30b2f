//! One row of the comparison: a profile built by this tool's own binary, and the sizes and
//! verify results of any variant's zip.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::cmd;

use super::{BenchOptions, Variant, ARCH};
use crate::spec::Spec;
use crate::util::progress::Progress;
use crate::verify::Timings;

/// Builds one profile with this tool (the real binary, as a user runs it) into `dir` with
/// `cache` as `LAYER_CACHE_DIR`; returns the zip and the wall-clock seconds.
pub(super) fn build_profile(
    spec: &Spec,
    flags: &BenchOptions,
    profile: &str,
    dir: &Utf8Path,
    cache: &Utf8Path,
) -> Result<(Utf8PathBuf, f64)> {
    let exe = crate::util::utf8(std::env::current_exe().context("finding this xtask binary")?)?;
    let mut runtime: Vec<&str> = Vec::new();
    if let Some(a) = &flags.python_archive {
        runtime.extend(["--python-archive", a]);
    }
    if let Some(h) = &flags.python_sha256 {
        runtime.extend(["--python-sha256", h]);
    }
    let (spec_path, arch) = (&spec.path, ARCH.as_str());
    let sh = crate::util::shell()?;
    let cmd = cmd!(
        sh,
        "{exe} layer --spec {spec_path} --arch {arch} --out {dir} --profile {profile} --json {runtime...}"
    )
    .env("LAYER_CACHE_DIR", cache)
    .env("CI", "true")
    .quiet()
    .ignore_status();
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("could not start the layer build of profile {profile}"))?;
    let secs = start.elapsed().as_secs_f64();
    // 3: built, but over the spec's budget (the bigger profiles are over 50 MB); still a layer.
    if !(out.status.success() || out.status.code() == Some(3)) {
        bail!(
            "building profile {profile} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let report: crate::build::report::Report = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the layer build of profile {profile} printed no report"))?;
    Ok((report.zip_path, secs))
}

/// Sizes from the zip, then verify on it.
pub(super) fn measure(
    spec: &Spec,
    flags: &BenchOptions,
    name: &str,
    zip: &Utf8Path,
    build_warm_s: Option<f64>,
    build_cold_s: Option<f64>,
    progress: &Progress,
) -> Result<Variant> {
    let stats = crate::util::zipinfo::read_stats(zip)?;
    let files = stats
        .entries
        .iter()
        .filter(|e| !e.path.as_str().ends_with('/'))
        .count() as u64;
    let unpacked_bytes = stats.entries.iter().map(|e| e.uncompressed).sum();
    progress.line(format!("bench: verify {name}"));
    let options = crate::verify::VerifyOptions {
        memory_mb: flags.memory_mb,
        ..crate::verify::VerifyOptions::of_layer(zip, ARCH, flags.runs)
    };
    let (verify_ok, verify_failed, verify_error, timings) =
        match crate::verify::verify(spec, &options) {
            Ok(r) => (
                Some(r.ok),
                r.checks.into_iter().filter(|c| !c.ok).collect(),
                None,
                r.timings,
            ),
            Err(e) => (None, Vec::new(), Some(format!("{e:#}")), Timings::default()),
        };
    Ok(Variant {
        name: name.to_owned(),
        zip: zip.to_owned(),
        zip_bytes: stats.zip_bytes,
        unpacked_bytes,
        files,
        zip_ratio: 1.0,
        unpacked_ratio: 1.0,
        verify_ok,
        verify_failed,
        verify_error,
        timings,
        build_warm_s,
        build_unchanged_s: None,
        build_cold_s,
        cold_start: Vec::new(),
    })
}

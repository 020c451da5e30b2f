//! The version choice: each of the spec's `[requirements] import-candidates` locked (with uv,
//! as `cargo xtask lock` does), built with the spec's profile and verified like every other
//! row, so that its import time is measured the same way as the spec's own lock's.
//!
//! The bench only reports: the cheapest import among the rows that passed verify, and the
//! command that locks it. Nothing is locked that was not measured in the same run.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::measure::{build_profile, measure};
use super::{BenchOptions, Variant};
use crate::python::candidates::Candidate;
use crate::python::pylock::PyLock;
use crate::python::wheel::normalize;
use crate::spec::Spec;
use crate::util::progress::Progress;

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateResult {
    /// `(spec's lock)` or the candidate as the spec writes it.
    pub candidate: String,
    /// What the lock holds of the spec's top-level packages and the candidates' distributions:
    /// `litellm 1.110.2`, `openai 2.30.0`.
    pub locked: Vec<String>,
    pub import_seconds: Option<f64>,
    /// How many interleaved rounds `import_seconds` is the median of (0: verify's own runs).
    pub interleaved_runs: usize,
    pub verify_ok: Option<bool>,
    /// The layer's row in the table (`None`: it could not be locked or built).
    pub variant: Option<String>,
    pub error: Option<String>,
}

/// The spec's own lock as the comparison's first row, from its profile's variant.
pub fn baseline(spec: &Spec, variant: Option<&Variant>, names: &[String]) -> CandidateResult {
    CandidateResult {
        candidate: "(the spec's lock)".to_owned(),
        locked: PyLock::load(&spec.lock_path())
            .map(|l| named_versions(&l, names))
            .unwrap_or_default(),
        import_seconds: variant.and_then(|v| v.timings.import_seconds),
        interleaved_runs: 0,
        verify_ok: variant.and_then(|v| v.verify_ok),
        variant: variant.map(|v| v.name.clone()),
        error: variant
            .is_none()
            .then(|| "the spec's profile was not benched (--profiles)".to_owned()),
    }
}

/// Locks, builds and measures one candidate; its row, and its table row when it was built.
pub fn run_one(
    spec: &Spec,
    flags: &BenchOptions,
    candidate: &Candidate,
    profile: &str,
    layer_cache: &Utf8Path,
    progress: &Progress,
    names: &[String],
) -> (CandidateResult, Option<Variant>) {
    let mut result = CandidateResult {
        candidate: candidate.text.clone(),
        locked: Vec::new(),
        import_seconds: None,
        interleaved_runs: 0,
        verify_ok: None,
        variant: None,
        error: None,
    };
    let dir = flags.out.join("candidates").join(candidate.label());
    let built = (|| -> Result<Variant> {
        let spec_path = write_spec(spec, candidate, &dir)?;
        progress.line(format!("bench: lock {} ({})", candidate.text, spec_path));
        lock(&spec_path)?;
        let candidate_spec = Spec::load(&spec_path)?;
        result.locked = named_versions(&PyLock::load(&candidate_spec.lock_path())?, names);
        progress.line(format!("bench: profile {profile} with {}", candidate.text));
        let (zip, warm) = build_profile(
            &candidate_spec,
            flags,
            profile,
            &dir.join("layer"),
            layer_cache,
        )?;
        let name = format!("profile {profile}, {}", candidate.text);
        measure(
            &candidate_spec,
            flags,
            &name,
            &zip,
            Some(warm),
            None,
            progress,
        )
    })();
    match built {
        Ok(v) => {
            result.import_seconds = v.timings.import_seconds;
            result.verify_ok = v.verify_ok;
            result.variant = Some(v.name.clone());
            (result, Some(v))
        }
        Err(e) => {
            result.error = Some(format!("{e:#}"));
            (result, None)
        }
    }
}

/// The candidate's spec: the original's, with the candidate in its requirements, its own
/// lock beside it, and every other path pointing at the original's files.
fn write_spec(spec: &Spec, candidate: &Candidate, dir: &Utf8Path) -> Result<Utf8PathBuf> {
    let text = fs_err::read_to_string(&spec.path)?;
    let mut doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("reading {}", spec.path))?;
    let abs = |p: Utf8PathBuf| -> Result<String> {
        Ok(crate::util::utf8(std::path::absolute(&p)?)?.to_string())
    };
    let (packages, constraints) =
        candidate.apply(&spec.requirements.packages, &spec.requirements.constraints);
    let req = doc
        .entry("requirements")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(req) = req.as_table_mut() else {
        bail!("{}: [requirements] is not a table", spec.path);
    };
    req.insert("packages".into(), packages.into());
    req.insert("constraints".into(), constraints.into());
    req.insert("lock".into(), "pylock.toml".into());
    req.insert(
        "advisories".into(),
        abs(spec.dir().join(&spec.requirements.advisories))?.into(),
    );
    req.remove("import-candidates");
    let layer = doc
        .entry("layer")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(layer) = layer.as_table_mut() {
        layer.insert("data".into(), abs(spec.data_dir())?.into());
    }
    fs_err::create_dir_all(dir)?;
    let path = dir.join("layer.toml");
    let header = format!(
        "# Written by `cargo xtask bench` from {} with the import candidate `{}`.\n",
        spec.path, candidate.text
    );
    crate::util::write_bytes_atomic(&path, (header + &toml::to_string(&doc)?).as_bytes())?;
    Ok(path)
}

/// `cargo xtask lock --spec SPEC` with this binary: the lock a user would get.
fn lock(spec_path: &Utf8Path) -> Result<()> {
    let exe = crate::util::utf8(std::env::current_exe().context("finding this xtask binary")?)?;
    let sh = crate::util::shell()?;
    let out = xshell::cmd!(sh, "{exe} lock --spec {spec_path}")
        .quiet()
        .ignore_status()
        .output()
        .context("could not start `cargo xtask lock`")?;
    if !out.status.success() {
        bail!(
            "locking {spec_path} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn named_versions(lock: &PyLock, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| {
            let p = lock.packages.iter().find(|p| normalize(&p.name) == *n)?;
            Some(format!("{n} {}", p.version.as_deref().unwrap_or("?")))
        })
        .collect()
}

/// What the report says: every row, and the cheapest import among those that passed verify,
/// with the command that locks it, unless it is the spec's lock or within the noise.
pub fn notes(spec: &Spec, rows: &[CandidateResult]) -> Vec<String> {
    let mut notes = Vec::new();
    for r in rows {
        let what = match (&r.error, r.import_seconds, r.verify_ok) {
            (Some(e), _, _) => format!("not measured: {e}"),
            (None, Some(s), Some(true)) => format!(
                "import {s:.2} s (median of {} interleaved rounds), verify passed",
                r.interleaved_runs
            ),
            (None, Some(s), _) => format!("import {s:.2} s, but verify FAILED (not a choice)"),
            (None, None, _) => "no import timed (verify's timing runs failed)".to_owned(),
        };
        notes.push(format!(
            "import candidate {} ({}): {what}",
            r.candidate,
            r.locked.join(", ")
        ));
    }
    let choices: Vec<&CandidateResult> = rows
        .iter()
        .filter(|r| r.error.is_none() && r.verify_ok == Some(true) && r.import_seconds.is_some())
        .collect();
    let Some(base) = rows
        .first()
        .filter(|b| choices.iter().any(|c| c.candidate == b.candidate))
    else {
        notes.push(
            "import candidates: the spec's own lock has no verified import time in this run, so no candidate is recommended".to_owned(),
        );
        return notes;
    };
    let seconds = |r: &CandidateResult| r.import_seconds.unwrap_or(f64::MAX);
    let Some(best) = choices
        .iter()
        .min_by(|a, b| seconds(a).total_cmp(&seconds(b)))
    else {
        return notes;
    };
    let (b, x) = (seconds(base), seconds(best));
    // Medians of a few processes on a shared machine move by several per cent between runs.
    const NOISE: f64 = 0.05;
    if best.candidate == base.candidate || x > b * (1.0 - NOISE) {
        notes.push(format!(
            "import candidates: none imports more than {:.0} % faster than the spec's lock ({b:.2} s): keep it",
            NOISE * 100.0
        ));
    } else {
        notes.push(format!(
            "import candidates: `{}` imports in {x:.2} s against the spec's lock's {b:.2} s ({:.0} % less) and passed verify; to lock it, add \"{}\" to [requirements] {} in {} and run `cargo xtask lock --spec {}`",
            best.candidate,
            (1.0 - x / b) * 100.0,
            best.candidate,
            if replaces_pin(spec, &best.candidate) {
                "packages (replacing its pin)"
            } else {
                "constraints"
            },
            spec.path,
            spec.path,
        ));
    }
    notes
}

/// `[requirements] import-candidates`: each locked, built with the spec's profile and measured
/// as a row of its own; the rows of the comparison (none without candidates).
pub(super) fn bench_candidates(
    spec: &Spec,
    flags: &BenchOptions,
    profile: &str,
    variants: &mut Vec<Variant>,
    notes: &mut Vec<String>,
    layer_cache: &Utf8Path,
    progress: &Progress,
) -> Result<Vec<CandidateResult>> {
    let r = &spec.requirements;
    let list = crate::python::candidates::parse(&r.import_candidates, &r.constraints)?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let own = format!("profile {profile}");
    let base = variants.iter().find(|v| v.name == own);
    let mut layers = vec![base.map(|v| (spec.clone(), v.zip.clone()))];
    let names = crate::python::candidates::shown_names(&r.packages, &list);
    let mut rows = vec![baseline(spec, base, &names)];
    for c in &list {
        let (row, variant) = run_one(spec, flags, c, profile, layer_cache, progress, &names);
        let spec_path = flags
            .out
            .join("candidates")
            .join(c.label())
            .join("layer.toml");
        layers.push(match (&variant, Spec::load(&spec_path)) {
            (Some(v), Ok(s)) => Some((s, v.zip.clone())),
            _ => None,
        });
        rows.push(row);
        variants.extend(variant);
    }
    retime_interleaved(flags, &layers, &mut rows, progress);
    notes.extend(self::notes(spec, &rows));
    Ok(rows)
}

/// The rows' import times again, `--runs` rounds of one timing run per layer in turn: built one
/// after the other, the rows would otherwise be timed minutes apart, under whatever load the
/// machine had then. Replaces each row's time with the median of its rounds.
fn retime_interleaved(
    flags: &BenchOptions,
    layers: &[Option<(Spec, Utf8PathBuf)>],
    rows: &mut [CandidateResult],
    progress: &Progress,
) {
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); layers.len()];
    for round in 1..=flags.runs {
        progress.line(format!(
            "bench: import candidates, interleaved timing round {round}/{}",
            flags.runs
        ));
        for (i, layer) in layers.iter().enumerate() {
            let Some((spec, zip)) = layer else { continue };
            let options = crate::verify::VerifyOptions {
                timings_only: true,
                ..crate::verify::VerifyOptions::of_layer(zip, super::ARCH, 1)
            };
            if let Ok(r) = crate::verify::verify(spec, &options) {
                wall[i].extend(r.timings.import_seconds);
            }
        }
    }
    for (row, times) in rows.iter_mut().zip(wall) {
        if !times.is_empty() {
            row.interleaved_runs = times.len();
            row.import_seconds = median(times);
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn replaces_pin(spec: &Spec, text: &str) -> bool {
    crate::python::candidates::parse(&[text.to_owned()], &[])
        .ok()
        .and_then(|c| c.into_iter().next())
        .is_some_and(|c| c.replaces_pin(&spec.requirements.packages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(candidate: &str, s: Option<f64>, ok: bool) -> CandidateResult {
        CandidateResult {
            candidate: candidate.to_owned(),
            locked: vec!["openai 3.52.0".to_owned()],
            import_seconds: s,
            interleaved_runs: 3,
            verify_ok: Some(ok),
            variant: None,
            error: None,
        }
    }

    fn spec() -> Spec {
        let text = include_str!("../../../layer/layer.toml");
        let mut s = Spec::parse(text).expect("the repository's spec parses");
        s.path = "layer/layer.toml".into();
        s
    }

    #[test]
    fn the_cheapest_verified_import_is_named_with_its_command() {
        let rows = [
            row("(the spec's lock)", Some(2.4), true),
            row("openai==2.30.0", Some(2.0), true),
            row("openai==3.10.0", Some(1.5), false),
        ];
        let notes = notes(&spec(), &rows);
        let last = notes.last().expect("a conclusion");
        assert!(
            last.contains("`openai==2.30.0` imports in 2.00 s against the spec's lock's 2.40 s"),
            "{last}"
        );
        assert!(
            last.contains("add \"openai==2.30.0\" to [requirements] constraints"),
            "{last}"
        );
        assert!(
            notes[2].contains("verify FAILED (not a choice)"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_candidates_spec_has_it_in_its_requirements_and_the_original_data() {
        let mut original = spec();
        original.path = crate::core::project_root().join("layer/layer.toml");
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = crate::util::utf8(tmp.path().to_owned()).expect("utf-8");
        let c = crate::python::candidates::parse(&["openai==3.30.0".to_owned()], &[])
            .expect("parses")
            .remove(0);
        let written =
            Spec::load(&write_spec(&original, &c, &dir).expect("written")).expect("loads");
        assert_eq!(
            written.requirements.packages,
            original.requirements.packages
        );
        assert_eq!(
            written.requirements.constraints.last().map(String::as_str),
            Some("openai==3.30.0")
        );
        assert_eq!(written.lock_path(), dir.join("pylock.toml"));
        assert_eq!(written.data_dir(), original.data_dir());
        assert_eq!(
            written.data_path("rules.toml"),
            original.data_path("rules.toml")
        );
        assert!(written.requirements.import_candidates.is_empty());
        assert_eq!(written.layer.profile, original.layer.profile);
    }

    #[test]
    fn nothing_is_recommended_within_the_noise_or_without_a_baseline() {
        let rows = [
            row("(the spec's lock)", Some(2.4), true),
            row("openai==2.30.0", Some(2.35), true),
        ];
        let last = notes(&spec(), &rows).pop().expect("a conclusion");
        assert!(last.contains("keep it"), "{last}");
        let rows = [
            row("(the spec's lock)", None, true),
            row("openai==2.30.0", Some(1.0), true),
        ];
        let last = notes(&spec(), &rows).pop().expect("a conclusion");
        assert!(last.contains("no candidate is recommended"), "{last}");
    }
}

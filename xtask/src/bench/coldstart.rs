//! The cold-start columns: a variant's layer run as Lambda runs a function of 512 MB and of
//! 1,769 MB (one vCPU), with and without the INIT-phase wait.
//!
//! Cold start = INIT + the first invocation, until the first completion is answered: per fresh
//! process, the interpreter's start, the import of the spec's preload modules and the
//! workload's first call (medians of `--runs`). "With the wait" the preload runs inside INIT,
//! unthrottled for up to 10 s, as a client that waits for it there (`Worker::spawn_ready`);
//! "without" INIT ends once the interpreter started and the import runs after it, at the
//! memory's CPU share (memory / 1,769 of one CPU). The limits are `verify --memory`'s control
//! group (`verify/memory.rs`); only the timing runs run, in the same sandbox.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{BenchOptions, ColdStartScope, Variant, ARCH};
use crate::spec::Spec;
use crate::util::progress::Progress;
use crate::verify::memory::ONE_VCPU_MB;

/// The memory sizes of the columns: Lambda's usual small size and one full vCPU.
pub const SIZES: [u32; 2] = [512, ONE_VCPU_MB];

/// One size's two cold starts, in seconds (`None`: not measured; the report's notes say why).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    pub memory_mb: u32,
    /// The preload imported inside INIT, unthrottled.
    pub init_wait_s: Option<f64>,
    /// The preload imported after INIT, at the memory's CPU share.
    pub no_wait_s: Option<f64>,
}

/// Whether this machine can give the sandbox Lambda's limits; the error says why not.
pub fn available() -> Result<()> {
    crate::verify::memory::lambda_group(SIZES[0]).map(drop)
}

/// Measures `zip`'s cold starts at every size of [`SIZES`], both ways; a measurement that
/// failed is `None` and its reason goes into `problems`.
pub fn measure(
    spec: &Spec,
    zip: &camino::Utf8Path,
    runs: usize,
    problems: &mut Vec<String>,
) -> Vec<ColdStart> {
    let mut out = Vec::new();
    for memory_mb in SIZES {
        let mut one = ColdStart {
            memory_mb,
            ..ColdStart::default()
        };
        for import_after_init in [false, true] {
            let options = crate::verify::VerifyOptions {
                memory_mb: Some(memory_mb),
                timings_only: true,
                import_after_init,
                ..crate::verify::VerifyOptions::of_layer(zip, ARCH, runs)
            };
            let how = if import_after_init {
                "without the INIT wait"
            } else {
                "with the INIT wait"
            };
            let value = match crate::verify::verify(spec, &options) {
                Ok(r) => {
                    if r.timings.cold_start_seconds.is_none() {
                        let failed: Vec<String> = r
                            .checks
                            .iter()
                            .filter(|c| !c.ok)
                            .map(|c| format!("{}: {}", c.name, c.detail))
                            .collect();
                        problems.push(format!(
                            "{zip} at {memory_mb} MB {how}: no timing run passed ({})",
                            if failed.is_empty() {
                                "no check failed".to_owned()
                            } else {
                                failed.join("; ")
                            }
                        ));
                    }
                    r.timings.cold_start_seconds
                }
                Err(e) => {
                    problems.push(format!("{zip} at {memory_mb} MB {how}: {e:#}"));
                    None
                }
            };
            if import_after_init {
                one.no_wait_s = value;
            } else {
                one.init_wait_s = value;
            }
        }
        out.push(one);
    }
    out
}

/// Fills the cold-start columns of every variant whose preload imported in verify's timing
/// runs; the notes say how they were measured, or why a column is empty.
pub(super) fn cold_starts(
    spec: &Spec,
    flags: &BenchOptions,
    variants: &mut [Variant],
    default_variant: &str,
    notes: &mut Vec<String>,
    progress: &Progress,
) {
    let wanted = |v: &Variant| match flags.cold_start {
        ColdStartScope::None => false,
        ColdStartScope::All => true,
        ColdStartScope::Default => v.name.starts_with("plain") || v.name == default_variant,
    };
    match flags.cold_start {
        ColdStartScope::None => {
            notes.push("cold-start columns not measured: --cold-start none".to_owned());
            return;
        }
        ColdStartScope::Default => notes.push(format!(
            "cold-start columns for the plain way and {default_variant} only (`--cold-start all` for every variant)"
        )),
        ColdStartScope::All => {}
    }
    if let Err(why) = available() {
        notes.push(format!(
            "cold-start columns empty: Lambda's CPU share and memory limit need a control group: {why:#}"
        ));
        return;
    }
    notes.push(format!(
        "cold start = interpreter start + import of {:?} + first call (medians of {} runs per cell) in the verify sandbox with `verify --memory MB`'s limits; `wait`: the import runs inside INIT, unthrottled (up to 10 s), as with Worker::spawn_ready; `no wait`: INIT ends at the interpreter's start and the import runs at MB/1769 of one CPU",
        spec.verify.preload, flags.runs
    ));
    for v in variants.iter_mut().filter(|v| wanted(v)) {
        if v.timings.import_seconds.is_none() {
            notes.push(format!(
                "{}: no cold start measured: its import failed in verify's timing runs",
                v.name
            ));
            continue;
        }
        progress.line(format!("bench: cold starts of {}", v.name));
        let mut problems = Vec::new();
        v.cold_start = measure(spec, &v.zip, flags.runs, &mut problems);
        notes.extend(problems.into_iter().map(|p| format!("{}: {p}", v.name)));
    }
}

/// The column headers, in [`SIZES`] order, each size with the wait first.
pub fn headers() -> Vec<String> {
    SIZES
        .iter()
        .flat_map(|mb| {
            [
                format!("cold {mb} MB wait"),
                format!("cold {mb} MB no wait"),
            ]
        })
        .collect()
}

/// The cells of [`headers`] for one variant (`n/a` where nothing was measured).
pub fn cells(cold: &[ColdStart]) -> Vec<String> {
    SIZES
        .iter()
        .flat_map(|mb| {
            let one = cold.iter().find(|c| c.memory_mb == *mb);
            let cell = |v: Option<f64>| crate::util::fmt::secs(v);
            [
                cell(one.and_then(|c| c.init_wait_s)),
                cell(one.and_then(|c| c.no_wait_s)),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_the_headers_and_say_what_is_missing() {
        assert_eq!(
            headers(),
            [
                "cold 512 MB wait",
                "cold 512 MB no wait",
                "cold 1769 MB wait",
                "cold 1769 MB no wait"
            ]
        );
        let cold = [ColdStart {
            memory_mb: 1769,
            init_wait_s: Some(2.5),
            no_wait_s: None,
        }];
        assert_eq!(cells(&cold), ["n/a", "n/a", "2.50 s", "n/a"]);
        assert_eq!(cells(&[]), ["n/a"; 4]);
    }
}

//! Workloads: the spec's [verify] workload, whose checks the report shows and whose timed run
//! gives the timings; and the traced workloads of `cargo xtask layer --minimize`.

use pythonexec::testing::MockOpenAi;

use super::checks::Audit;
use super::process::{median, run_python};
use super::{Outcome, Plan, Workload};
use crate::verify::{Check, Timings};

const RUNTIME: &str = include_str!("../py/runtime.py");
const TRACE: &str = include_str!("../py/trace.py");
const WORKLOAD: &str = include_str!("../py/workload.py");

/// The Python that runs `workload` (or nothing) after the `py/workload.py` prelude; in timing
/// runs the spec's preload modules are imported and timed first.
fn script(plan: &Plan, workload: Option<&Workload>) -> String {
    // JSON strings and lists of strings are valid Python literals.
    let (name, source) = workload.map_or(("<preload>", ""), |w| (&w.name, &w.source));
    format!(
        "{WORKLOAD}\n_vrun({}, {}, {})\n",
        serde_json::Value::from(name),
        serde_json::Value::from(source),
        serde_json::Value::from(plan.preload.clone()),
    )
}

/// The checks of the spec's [verify] workload: `workload: NAME` says whether it ran through,
/// then every check it recorded, then the server's request count when it asked for one.
///
/// Without `--memory` the check's run is also the first timing run (the preload imported and
/// timed first, as in every timing run, then the whole workload): `verify` then starts one
/// interpreter fewer, and for litellm that is one import fewer (a third of a verify). With
/// `--memory` the two differ (the check's INIT ends before the preload, a timing run's after
/// it), so the check runs on its own and returns no sample.
pub(super) fn checks(
    plan: &Plan,
    w: &Workload,
    mock: &MockOpenAi,
    audit: &mut Audit,
) -> (Vec<Check>, Option<Sample>) {
    let base = mock.base_url();
    let want = mock.reply_text();
    let before = mock.requests();
    let as_timing = plan.cpu_quota.is_none() && !plan.import_after_init && plan.timing_runs > 0;
    let mut args = vec![base.as_str(), want];
    if as_timing {
        args.push("--preload-first");
    }
    let run = run_python(plan, Some(&script(plan, Some(w))), &args);
    audit.add(&w.name, &run);
    let name = format!("workload: {}", w.name);
    if let Some(why) = &run.failure {
        return (vec![Check::new(name, false, why.clone())], None);
    }
    let sample = as_timing.then(|| sample_of(&run)).flatten();
    let reported: Vec<Check> = run
        .field("checks")
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    Check::new(
                        c["name"].as_str().unwrap_or("?"),
                        c["ok"].as_bool() == Some(true),
                        c["detail"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut checks = vec![match run.field("error").as_str() {
        Some(error) => Check::new(name, false, error),
        None => Check::new(
            name,
            true,
            format!(
                "ran in {:.2} s, {} checks",
                run.elapsed.as_secs_f64(),
                reported.len()
            ),
        ),
    }];
    checks.extend(reported);
    let requests = run.field("requests");
    if let Some(check_name) = requests["name"].as_str() {
        let served = mock.requests() - before;
        let at_least = requests["at_least"].as_u64().unwrap_or(0);
        checks.push(Check::new(
            check_name,
            served >= at_least as usize,
            format!(
                "the server counted {served} requests (at least {} expected)",
                requests["what"].as_str().unwrap_or("the")
            ),
        ));
    }
    (checks, sample)
}

/// One timing run's figures: the preload's import and the workload's first call, seconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    import_s: Option<f64>,
    import_cpu_s: Option<f64>,
    first_call_s: Option<f64>,
}

/// The figures of a run made with `--timing`, if it ran through with every check passing.
fn sample_of(run: &super::process::PyRun) -> Option<Sample> {
    let passed = run
        .field("checks")
        .as_array()
        .is_some_and(|cs| cs.iter().all(|c| c["ok"].as_bool() == Some(true)));
    (run.failure.is_none() && run.field("error").is_null() && passed).then(|| Sample {
        import_s: run.field("import_s").as_f64(),
        import_cpu_s: run.field("import_cpu_s").as_f64(),
        first_call_s: run.field("first_call_s").as_f64(),
    })
}

/// Medians over `plan.timing_runs` fresh processes: the bare interpreter's start, the import of
/// the preload modules and the workload's first call (from runs whose checks all passed), and
/// of their sums per run (the cold start); the preload runs after INIT with
/// `plan.import_after_init`. `first` is the workload check's run when it was a timing run too
/// (see [`checks`]).
pub(super) fn timings(
    plan: &Plan,
    mock: &MockOpenAi,
    audit: &mut Audit,
    first: Option<Sample>,
) -> Timings {
    let base = mock.base_url();
    let want = mock.reply_text();
    let mut starts = Vec::new();
    let mut imports = Vec::new();
    let mut first_calls = Vec::new();
    let mut cold_starts = Vec::new();
    let mut import_cpu = Vec::new();
    let timed = plan.workload.is_some() || !plan.preload.is_empty();
    let mut args = vec![base.as_str(), want, "--timing"];
    if plan.import_after_init {
        args.push("--import-after-init");
    }
    for i in 0..plan.timing_runs {
        let start = run_python(plan, None, &[]);
        let start_s = start
            .failure
            .is_none()
            .then_some(start.elapsed.as_secs_f64());
        starts.extend(start_s);
        if !timed {
            continue;
        }
        // The workload check's run counts as the first timing run when it was one.
        let sample = match first.filter(|_| i == 0) {
            Some(s) => Some(s),
            None => {
                let script = script(plan, plan.workload.as_ref());
                let t = run_python(plan, Some(&script), &args);
                audit.add(&format!("timing run {}", i + 1), &t);
                sample_of(&t)
            }
        };
        if let Some(s) = sample {
            imports.extend(s.import_s);
            import_cpu.extend(s.import_cpu_s);
            first_calls.extend(s.first_call_s);
            // This run's pair: the bare start, then the preload and the first call.
            if let (Some(st), Some(im), Some(fc)) = (start_s, s.import_s, s.first_call_s) {
                cold_starts.push(st + im + fc);
            }
        }
    }
    Timings {
        runs: plan.timing_runs,
        interpreter_start_s: median(starts),
        preload: plan.preload.clone(),
        import_seconds: median(imports),
        first_call_seconds: median(first_calls),
        cold_start_seconds: median(cold_starts),
        import_cpu_seconds: median(import_cpu),
        peak_rss_bytes: None,
    }
}

/// Runs the plan's workloads, each in a fresh traced interpreter, against the loopback
/// server; a check per workload says whether it ran through.
pub(super) fn traced(plan: &Plan, mock: &MockOpenAi) -> Outcome {
    let mut plan = plan.clone();
    plan.env
        .push(("LAYER_MOCK_BASE".to_owned(), mock.base_url()));
    plan.env
        .push(("LAYER_PROVIDERS".to_owned(), plan.providers.join(",")));
    let mut out = Outcome::default();
    for w in &plan.workloads {
        // JSON strings are valid Python string literals.
        let call = format!(
            "{TRACE}\n_run_workload({}, {})\n",
            serde_json::Value::from(w.name.as_str()),
            serde_json::Value::from(w.source.as_str())
        );
        let run = run_python(&plan, Some(&call), &[]);
        let name = format!("workload: {}", w.name);
        out.checks.push(match &run.failure {
            Some(why) => Check::new(name, false, why.clone()),
            None if run.field("ok").as_bool() == Some(true) => Check::new(
                name,
                true,
                format!("ran in {:.2} s", run.elapsed.as_secs_f64()),
            ),
            None => Check::new(
                name,
                false,
                run.field("error").as_str().unwrap_or("failed").to_owned(),
            ),
        });
        out.traces.push(run.field("trace").clone());
    }
    // verify's own runtime checks (ssl, ctypes, sqlite3...) must pass on the minimized layer:
    // what they touch is traced like a workload.
    let rt = run_python(&plan, Some(&format!("{TRACE}\n{RUNTIME}")), &[]);
    let failed: Vec<String> = rt
        .field("modules")
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, r)| r["ok"].as_bool() != Some(true))
                .map(|(n, r)| format!("{n}: {}", r["detail"].as_str().unwrap_or("failed")))
                .collect()
        })
        .unwrap_or_default();
    out.checks.push(match &rt.failure {
        Some(why) => Check::new("workload: verify's runtime checks", false, why.clone()),
        None => Check::new(
            "workload: verify's runtime checks",
            failed.is_empty(),
            failed.join("; "),
        ),
    });
    out.traces.push(rt.field("trace").clone());
    out
}

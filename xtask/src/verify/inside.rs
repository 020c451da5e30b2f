//! The supervisor: runs every runtime, package and LiteLLM check, each in a fresh
//! interpreter, next to the loopback server. Runs inside the sandbox (see `sandbox.rs`) or,
//! without bubblewrap, in-process on a plain folder.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Check, Timings};
use pythonexec::testing::MockOpenAi;

const AUDIT: &str = include_str!("py/audit.py");
const RUNTIME: &str = include_str!("py/runtime.py");
const IMPORT_ONE: &str = include_str!("py/import_one.py");
const METADATA: &str = include_str!("py/metadata.py");
const LITELLM: &str = include_str!("py/litellm_calls.py");
const TRACE: &str = include_str!("py/trace.py");

/// One workload script of `cargo xtask layer --minimize`, run under the tracing hook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// Its path as the spec names it (shown in tracebacks and errors).
    pub name: String,
    pub source: String,
}

/// Everything the supervisor needs; crosses the sandbox boundary as JSON on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The interpreter, as seen where the checks run (`/opt/python/bin/python3.11`).
    pub python: String,
    /// Put before the interpreter: the emulator and its arguments, or nothing.
    pub launcher: Vec<String>,
    /// The complete environment of every checked process.
    pub env: Vec<(String, String)>,
    /// `platform.machine()` the interpreter must report.
    pub machine: String,
    pub modules: Vec<String>,
    /// Modules not imported alone, with the spec's reason.
    pub skipped: BTreeMap<String, String>,
    /// Distributions `importlib.metadata.version()` must answer for.
    pub dists: Vec<String>,
    /// Fresh processes per timing.
    pub timing_runs: usize,
    /// Interpreters run at once.
    pub jobs: usize,
    /// Longest any one checked process may take.
    pub timeout_secs: u64,
    /// When not empty, the supervisor runs only these scripts, traced, instead of the checks
    /// (`cargo xtask layer --minimize`).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// `LAYER_PROVIDERS` for the workloads: the LiteLLM providers the spec names.
    #[serde(default)]
    pub providers: Vec<String>,
}

/// What the supervisor found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub timings: Timings,
    /// Workload mode: what each workload touched (`py/trace.py`'s result), in order.
    #[serde(default)]
    pub traces: Vec<serde_json::Value>,
}

/// `cargo xtask verify-inside`: reads a plan on stdin, prints an outcome on stdout.
pub fn main() -> Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the verify plan from stdin")?;
    let plan: Plan = serde_json::from_str(&text).context("parsing the verify plan")?;
    let outcome = run(&plan)?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

/// One finished interpreter.
struct PyRun {
    /// The object the script passed to `_report`, if it got that far.
    result: Option<serde_json::Value>,
    elapsed: Duration,
    /// Why there is no result, in words: did not start, timed out, crashed, said nothing.
    failure: Option<String>,
}

impl PyRun {
    fn egress(&self) -> Vec<String> {
        self.list("egress")
    }

    fn writes(&self) -> Vec<String> {
        self.list("writes")
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.result
            .as_ref()
            .and_then(|r| r[key].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn field(&self, key: &str) -> &serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        self.result.as_ref().map_or(&NULL, |r| &r[key])
    }
}

const MARKER: &str = "@@verify-result@@";

/// Runs one check script (the audit prelude + `script`) in a fresh interpreter.
fn run_python(plan: &Plan, script: Option<&str>, args: &[&str]) -> PyRun {
    let (program, pre) = match plan.launcher.split_first() {
        Some((first, rest)) => (first.clone(), {
            let mut v = rest.to_vec();
            v.push(plan.python.clone());
            v
        }),
        None => (plan.python.clone(), Vec::new()),
    };
    let mut cmd = Command::new(&program);
    cmd.args(&pre);
    match script {
        Some(script) => {
            cmd.arg("-c").arg(format!("{AUDIT}\n{script}"));
        }
        None => {
            cmd.arg("-c").arg("pass");
        }
    }
    cmd.args(args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return PyRun {
                result: None,
                elapsed: start.elapsed(),
                failure: Some(format!("could not start {program}: {e}")),
            }
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_end(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut s);
        }
        s
    });
    let timeout = Duration::from_secs(plan.timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {} s", plan.timeout_secs));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("waiting for the interpreter: {e}")),
        }
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MARKER))
        .and_then(|j| serde_json::from_str(j).ok());
    let failure = match (&status, &result) {
        (Err(e), _) => Some(e.clone()),
        (Ok(_), Some(_)) => None,
        (Ok(status), None) if script.is_none() && status.success() => None,
        (Ok(status), None) => Some(format!(
            "the interpreter {} without a result; stderr: {}",
            describe_status(status),
            tail(&stderr, 600)
        )),
    };
    PyRun {
        result,
        elapsed,
        failure,
    }
}

fn describe_status(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_owned(),
    }
}

/// The last `max` characters of `s`, on one line.
fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let start = s
        .char_indices()
        .rev()
        .nth(max.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    let t = s[start..].replace('\n', " | ");
    if t.is_empty() {
        "(empty)".to_owned()
    } else {
        t
    }
}

/// Collects what the audit hook saw, by process.
#[derive(Default)]
struct Audit {
    egress: Vec<String>,
    writes: Vec<String>,
}

impl Audit {
    fn add(&mut self, who: &str, run: &PyRun) {
        for e in run.egress() {
            self.egress.push(format!("{who}: {e}"));
        }
        for w in run.writes() {
            self.writes.push(format!("{who}: {w}"));
        }
    }
}

/// Runs `f` over `items` on `jobs` threads, keeping the order of `items`.
fn pool<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// Runs the plan's workloads, each in a fresh traced interpreter, against the loopback
/// server; a check per workload says whether it ran through.
fn run_workloads(plan: &Plan, mock: &MockOpenAi) -> Outcome {
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

/// Runs every check of the plan.
pub fn run(plan: &Plan) -> Result<Outcome> {
    let mock = MockOpenAi::start().context("starting the loopback OpenAI-compatible server")?;
    if !plan.workloads.is_empty() {
        return Ok(run_workloads(plan, &mock));
    }
    let mut checks = Vec::new();
    let mut audit = Audit::default();

    // 1. The interpreter and the standard library.
    let rt = run_python(plan, Some(RUNTIME), &[]);
    audit.add("runtime", &rt);
    match &rt.failure {
        Some(why) => checks.push(Check::new("runtime: interpreter", false, why.clone())),
        None => {
            let version = rt.field("version").as_str().unwrap_or("?");
            let machine = rt.field("machine").as_str().unwrap_or("?");
            let prefix = rt.field("prefix").as_str().unwrap_or("?");
            let ok = machine == plan.machine;
            let mut detail = format!("Python {version} on {machine}, sys.prefix {prefix}");
            if !ok {
                detail += &format!(" (expected {})", plan.machine);
            }
            checks.push(Check::new("runtime: interpreter", ok, detail));
            if let Some(mods) = rt.field("modules").as_object() {
                for (name, r) in mods {
                    checks.push(Check::new(
                        format!("runtime: {name}"),
                        r["ok"].as_bool().unwrap_or(false),
                        r["detail"].as_str().unwrap_or("").to_owned(),
                    ));
                }
            }
        }
    }

    // 2. Every top-level module, each in a fresh interpreter.
    let to_import: Vec<&String> = plan
        .modules
        .iter()
        .filter(|m| !plan.skipped.contains_key(*m))
        .collect();
    let runs = pool(&to_import, plan.jobs, |m| {
        run_python(plan, Some(IMPORT_ONE), &[m.as_str()])
    });
    let mut import_checks = Vec::new();
    for module in &plan.modules {
        if let Some(reason) = plan.skipped.get(module) {
            import_checks.push(Check::new(
                format!("import: {module}"),
                true,
                format!("not imported alone: {reason} (spec [verify] skip-imports)"),
            ));
        }
    }
    for (module, run) in to_import.iter().zip(&runs) {
        audit.add(&format!("import {module}"), run);
        let (ok, detail) = match &run.failure {
            Some(why) => (false, why.clone()),
            None if run.field("ok").as_bool() == Some(true) => {
                let mut problems = run.egress();
                problems.extend(run.writes());
                if problems.is_empty() {
                    (true, format!("{:.2} s", run.elapsed.as_secs_f64()))
                } else {
                    (
                        false,
                        format!("imports, but at import: {}", problems.join("; ")),
                    )
                }
            }
            None => {
                let mut detail = run.field("error").as_str().unwrap_or("failed").to_owned();
                let mut problems = run.egress();
                problems.extend(run.writes());
                if !problems.is_empty() {
                    detail += &format!("; at import: {}", problems.join("; "));
                }
                (false, detail)
            }
        };
        import_checks.push(Check::new(format!("import: {module}"), ok, detail));
    }
    import_checks.sort_by(|a, b| a.name.cmp(&b.name));
    checks.extend(import_checks);

    // 3. Metadata of every locked distribution.
    let dist_args: Vec<&str> = plan.dists.iter().map(String::as_str).collect();
    let md = run_python(plan, Some(METADATA), &dist_args);
    audit.add("metadata", &md);
    match &md.failure {
        Some(why) => checks.push(Check::new("metadata", false, why.clone())),
        None => {
            for dist in &plan.dists {
                let r = &md.field("versions")[dist];
                let ok = r["ok"].as_bool() == Some(true);
                let detail = if ok {
                    format!("version {}", r["version"].as_str().unwrap_or("?"))
                } else {
                    r["error"].as_str().unwrap_or("no answer").to_owned()
                };
                checks.push(Check::new(format!("metadata: {dist}"), ok, detail));
            }
        }
    }

    // 4. LiteLLM against the loopback server.
    let base = mock.base_url();
    let before = mock.requests();
    let ll = run_python(plan, Some(LITELLM), &[base.as_str()]);
    audit.add("litellm", &ll);
    let want = mock.reply_text();
    match &ll.failure {
        Some(why) => checks.push(Check::new("litellm", false, why.clone())),
        None => {
            let text_check = |name: &str, got: Option<&str>, r: &serde_json::Value| {
                if r["ok"].as_bool() != Some(true) {
                    return Check::new(
                        name,
                        false,
                        r["error"].as_str().unwrap_or("did not run").to_owned(),
                    );
                }
                match got {
                    Some(g) if g == want => Check::new(
                        name,
                        true,
                        format!("got the server's {} characters", want.len()),
                    ),
                    Some(g) => {
                        Check::new(name, false, format!("got {g:?}, the server sent {want:?}"))
                    }
                    None => Check::new(name, false, "no text in the answer".to_owned()),
                }
            };
            let imp = ll.field("import");
            checks.push(if imp["ok"].as_bool() == Some(true) {
                Check::new(
                    "litellm: import",
                    true,
                    format!("{:.2} s", ll.field("import_s").as_f64().unwrap_or(0.0)),
                )
            } else {
                Check::new(
                    "litellm: import",
                    false,
                    imp["error"].as_str().unwrap_or("failed").to_owned(),
                )
            });
            let c = ll.field("completion");
            checks.push(text_check("litellm: completion", c["value"].as_str(), c));
            let s = ll.field("stream");
            let mut stream = text_check(
                "litellm: streamed completion",
                s["value"]["text"].as_str(),
                s,
            );
            if stream.ok {
                stream.detail += &format!(" in {} chunks", s["value"]["chunks"]);
            }
            checks.push(stream);
            let a = ll.field("acompletion");
            checks.push(text_check("litellm: acompletion", a["value"].as_str(), a));
            let m = ll.field("models");
            let models: Vec<&str> = m["value"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            checks.push(if models.contains(&"gpt-4o-mini") {
                Check::new(
                    "litellm: /v1/models",
                    true,
                    format!("listed {}", models.join(", ")),
                )
            } else {
                Check::new(
                    "litellm: /v1/models",
                    false,
                    m["error"]
                        .as_str()
                        .map_or_else(|| format!("listed {models:?}"), str::to_owned),
                )
            });
            let served = mock.requests() - before;
            checks.push(Check::new(
                "litellm: through the loopback server",
                // The library server counts the three completions; /v1/models may not count.
                served >= 3,
                format!(
                    "the server counted {served} requests (at least the 3 completions expected)"
                ),
            ));
        }
    }

    // 5. Timings: medians of fresh processes.
    let mut starts = Vec::new();
    let mut imports = Vec::new();
    let mut completions = Vec::new();
    for i in 0..plan.timing_runs {
        let start = run_python(plan, None, &[]);
        if start.failure.is_none() {
            starts.push(start.elapsed.as_secs_f64());
        }
        let t = run_python(plan, Some(LITELLM), &[base.as_str(), "--timing"]);
        audit.add(&format!("timing run {}", i + 1), &t);
        if t.failure.is_none() && t.field("completion")["ok"].as_bool() == Some(true) {
            imports.extend(t.field("import_s").as_f64());
            completions.extend(t.field("completion_s").as_f64());
        }
    }
    let timings = Timings {
        runs: plan.timing_runs,
        interpreter_start_s: median(starts),
        import_litellm_s: median(imports),
        first_completion_s: median(completions),
    };

    // 6. What the audit hook saw, over every process.
    let list = |v: &[String]| {
        if v.len() > 12 {
            format!("{}; and {} more", v[..12].join("; "), v.len() - 12)
        } else {
            v.join("; ")
        }
    };
    checks.push(if audit.egress.is_empty() {
        Check::new(
            "audit: no egress",
            true,
            "no connection or lookup beyond loopback".to_owned(),
        )
    } else {
        Check::new("audit: no egress", false, list(&audit.egress))
    });
    checks.push(if audit.writes.is_empty() {
        Check::new(
            "audit: no writes outside /tmp",
            true,
            "nothing opened for writing outside /tmp".to_owned(),
        )
    } else {
        Check::new("audit: no writes outside /tmp", false, list(&audit.writes))
    });
    Ok(Outcome {
        checks,
        timings,
        traces: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn tails() {
        assert_eq!(tail("", 10), "(empty)");
        assert_eq!(tail("a\nb\n", 10), "a | b");
        assert_eq!(tail("abcdef", 3), "def");
    }

    #[test]
    fn pool_keeps_order() {
        let items: Vec<u32> = (0..20).collect();
        assert_eq!(
            pool(&items, 3, |x| x * 2),
            (0..20).map(|x| x * 2).collect::<Vec<_>>()
        );
    }
}

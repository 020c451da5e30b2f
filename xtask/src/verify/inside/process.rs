//! One checked interpreter: starting it (through the emulator when there is one) with the
//! plan's environment, under the audit prelude, with a timeout; and the pool that runs many.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Plan;
use crate::verify::memory::CpuQuota;

const AUDIT: &str = include_str!("../py/audit.py");

/// One finished interpreter.
pub(super) struct PyRun {
    /// The object the script passed to `_report`, if it got that far.
    pub(super) result: Option<serde_json::Value>,
    pub(super) elapsed: Duration,
    /// Why there is no result, in words: did not start, timed out, crashed, said nothing.
    pub(super) failure: Option<String>,
    /// `verify --memory`: killed by SIGKILL without a result, which in the memory group is the
    /// OOM killer at the memory limit.
    pub(super) memory_killed: bool,
}

impl PyRun {
    pub(super) fn egress(&self) -> Vec<String> {
        self.list("egress")
    }

    pub(super) fn writes(&self) -> Vec<String> {
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

    pub(super) fn field(&self, key: &str) -> &serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        self.result.as_ref().map_or(&NULL, |r| &r[key])
    }
}

const MARKER: &str = "@@verify-result@@";
/// The line an interpreter prints when its INIT is over (`py/workload.py`).
const INIT_DONE: &str = "@@verify-init-done@@";

/// `verify --memory`: lifts the CPU quota before an interpreter starts and applies it once,
/// at the end of the interpreter's INIT; remembers a failed write.
struct InitGate {
    quota: Option<CpuQuota>,
    ended: AtomicBool,
    error: Mutex<Option<String>>,
}

impl InitGate {
    fn new(quota: Option<CpuQuota>) -> InitGate {
        InitGate {
            quota,
            ended: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    fn begin(&self) -> Result<(), String> {
        match &self.quota {
            Some(q) => std::fs::write(&q.file, &q.unthrottled)
                .map_err(|e| format!("could not lift the CPU quota ({}): {e}", q.file)),
            None => Ok(()),
        }
    }

    fn end(&self) {
        let Some(q) = &self.quota else { return };
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = std::fs::write(&q.file, &q.throttled) {
            if let Ok(mut slot) = self.error.lock() {
                *slot = Some(format!("could not apply the CPU quota ({}): {e}", q.file));
            }
        }
    }

    fn init_limit(&self) -> Duration {
        Duration::from_secs(self.quota.as_ref().map_or(u64::MAX, |q| q.init_limit_secs))
    }

    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}

/// Runs one check script (the audit prelude + `script`) in a fresh interpreter.
///
/// Long on purpose: spawning, draining both pipes on threads, the timeout loop and reading the
/// result marker share the child and the clock; apart they would pass them all around.
pub(super) fn run_python(plan: &Plan, script: Option<&str>, args: &[&str]) -> PyRun {
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
    let gate = Arc::new(InitGate::new(plan.cpu_quota.clone()));
    if let Err(why) = gate.begin() {
        return PyRun {
            result: None,
            elapsed: Duration::ZERO,
            failure: Some(why),
            memory_killed: false,
        };
    }
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return PyRun {
                result: None,
                elapsed: start.elapsed(),
                failure: Some(format!("could not start {program}: {e}")),
                memory_killed: false,
            }
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_gate = Arc::clone(&gate);
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = stdout.take() {
            let mut o = BufReader::new(o);
            loop {
                let at = s.len();
                match o.read_until(b'\n', &mut s) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if s[at..].trim_ascii_end() == INIT_DONE.as_bytes() => out_gate.end(),
                    Ok(_) => {}
                }
            }
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
            Ok(None) => {
                if start.elapsed() > gate.init_limit() {
                    gate.end();
                }
                std::thread::sleep(Duration::from_millis(5))
            }
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
        (Ok(_), _) if gate.error().is_some() => gate.error(),
        (Ok(_), Some(_)) => None,
        (Ok(status), None) if script.is_none() && status.success() => None,
        (Ok(status), None) => Some(format!(
            "the interpreter {}{} without a result; stderr: {}",
            describe_status(status),
            match (plan.cpu_quota.is_some(), status.signal()) {
                (true, Some(9)) =>
                    " (with --memory most likely by the OOM killer at the memory \
                                    limit: see the `memory:` check)",
                _ => "",
            },
            tail(&stderr, 600)
        )),
    };
    let memory_killed = plan.cpu_quota.is_some()
        && result.is_none()
        && matches!(&status, Ok(s) if s.signal() == Some(9));
    PyRun {
        result,
        elapsed,
        failure,
        memory_killed,
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

/// Runs `f` over `items` on `jobs` threads, keeping the order of `items`.
pub(super) fn pool<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
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

pub(super) fn median(mut xs: Vec<f64>) -> Option<f64> {
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

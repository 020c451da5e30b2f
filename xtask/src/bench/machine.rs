//! Where the figures came from (CPU, memory, tool versions), and pythonexec-rs's worker
//! benchmark.

use anyhow::{Context, Result};
use xshell::cmd;

use super::Machine;
use crate::util::run;

/// What a command printed, whatever its exit status; `None` when it could not start.
fn output_of(program: &str, args: &[&str]) -> Option<std::process::Output> {
    let sh = crate::util::shell().ok()?;
    cmd!(sh, "{program} {args...}")
        .quiet()
        .ignore_status()
        .output()
        .ok()
}

/// First line of a command's output, or `unknown`.
fn version_of(program: &str, args: &[&str]) -> String {
    output_of(program, args)
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(super) fn machine() -> Machine {
    let cpuinfo = fs_err::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = fs_err::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        );
    let kernel = fs_err::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        memory,
        kernel,
        rustc: version_of("rustc", &["--version"]),
        pip: version_of("python3", &["-m", "pip", "--version"]),
        uv: version_of("uv", &["--version"]),
        // `zip -v` opens with a copyright line; the version is on the next.
        zip: output_of("zip", &["-v"])
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("This is ").map(str::to_owned))
            })
            .unwrap_or_else(|| "not installed".to_owned()),
    }
}

pub(super) fn now_utc() -> String {
    version_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

/// Runs pythonexec-rs's worker benchmark and returns its JSON.
pub(super) fn worker_bench() -> Result<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let sh = crate::util::shell()?;
    let _in_root = sh.push_dir(crate::core::project_root());
    let stdout = run(cmd!(
        sh,
        "{cargo} bench -p pythonexec-rs --bench worker -- --json"
    ))
    .context("running pythonexec-rs's worker benchmark")?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the worker benchmark printed no JSON")?;
    serde_json::from_str(line).context("the worker benchmark printed bad JSON")
}

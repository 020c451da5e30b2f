//! The report for people: one line per check, then the timings.

use std::fmt::Write as _;

use super::{Execution, VerifyReport};

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), |v| format!("{v:.3} s"))
}

/// The report for people: one line per check, then the timings.
pub fn render(r: &VerifyReport) -> String {
    let mut s = String::new();
    let how = match &r.execution {
        Execution::Sandboxed { emulator: None } => "bubblewrap sandbox".to_owned(),
        Execution::Sandboxed { emulator: Some(e) } => format!("bubblewrap sandbox, {e}"),
        Execution::Plain { .. } => "NO SANDBOX".to_owned(),
        Execution::NotRun { .. } => "NOT EXECUTED".to_owned(),
    };
    let _ = writeln!(s, "layer  {} ({}, {how})", r.layer, r.arch);
    for w in &r.warnings {
        let _ = writeln!(s, "WARNING: {w}");
    }
    let width = r
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(s, "\n{:<width$}  {:<4}  detail", "check", "ok");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "{:<width$}  {:<4}  {}",
            c.name,
            if c.ok { "pass" } else { "FAIL" },
            c.detail
        );
    }
    let t = &r.timings;
    if t.runs > 0 {
        let _ = writeln!(s, "\ntimings (median of {} fresh processes)", t.runs);
        let _ = writeln!(s, "  interpreter start  {:>9}", secs(t.interpreter_start_s));
        let import = if t.preload.is_empty() {
            "import".to_owned()
        } else {
            format!("import {}", t.preload.join(", "))
        };
        let _ = writeln!(s, "  {import:<17}  {:>9}", secs(t.import_seconds));
        if t.import_cpu_seconds.is_some() {
            let _ = writeln!(s, "  (its CPU time)     {:>9}", secs(t.import_cpu_seconds));
        }
        let _ = writeln!(s, "  first call         {:>9}", secs(t.first_call_seconds));
        if t.cold_start_seconds.is_some() {
            let _ = writeln!(s, "  cold start         {:>9}", secs(t.cold_start_seconds));
        }
        if let Some(b) = t.peak_rss_bytes {
            let mb = b as f64 / f64::from(1 << 20);
            let _ = writeln!(s, "  peak RSS           {:>6.0} MB", mb);
        }
    }
    let failed = r.checks.iter().filter(|c| !c.ok).count();
    let _ = writeln!(s);
    if let (true, Some(why)) = (r.ok, &r.not_a_verification) {
        let _ = writeln!(
            s,
            "NOT a verification: {} checks passed, but {why}",
            r.checks.len()
        );
    } else if r.ok {
        let _ = writeln!(s, "verified: all {} checks passed", r.checks.len());
    } else {
        let _ = writeln!(
            s,
            "NOT VERIFIED: {failed} of {} checks failed",
            r.checks.len()
        );
    }
    s
}

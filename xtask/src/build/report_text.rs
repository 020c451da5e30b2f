//! `layer-size-report.txt`: the size report for people, read top to bottom like the build's
//! output (`report.rs` has the data and `report.json`).

use std::fmt::Write as _;

use crate::build::report::Report;
use crate::core::{LAMBDA_UNPACKED_LIMIT, LAMBDA_ZIP_LIMIT};
use crate::util::fmt::mb;

impl Report {
    /// The report for people.
    ///
    /// Long on purpose: the sections one after another, read top to bottom like the output.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "layer   {} ({}, Python {}, glibc <= {})",
            self.zip_path, self.arch, self.python_version, self.glibc
        );
        let _ = writeln!(
            s,
            "zip     {:>10}  {:>4} of Lambda's 50 MB direct upload",
            mb(self.zip_bytes),
            pct(self.zip_bytes, LAMBDA_ZIP_LIMIT)
        );
        let _ = writeln!(
            s,
            "unzip   {:>10}  {:>4} of Lambda's 250 MB for function + layers",
            mb(self.unpacked_bytes),
            pct(self.unpacked_bytes, LAMBDA_UNPACKED_LIMIT)
        );
        if let Some(b) = self.budget.zip_bytes {
            let _ = writeln!(s, "budget  zip {} ({})", mb(b), pct(self.zip_bytes, b));
        }
        if let Some(b) = self.budget.unpacked_bytes {
            let _ = writeln!(
                s,
                "budget  unpacked {} ({})",
                mb(b),
                pct(self.unpacked_bytes, b)
            );
        }
        if !self.profile.is_empty() {
            let _ = writeln!(s, "profile {}", self.profile);
        }
        let _ = writeln!(
            s,
            "site-packages {} unpacked, {} compressed, {} files",
            mb(self.site_packages.bytes),
            mb(self.site_packages.compressed_bytes),
            self.site_packages.files
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<32} {:>12} {:>10} {:>12} {:>7} {:>10}",
            "part", "version", "files", "unpacked", "zipped", "before"
        );
        let _ = writeln!(
            s,
            "{:<32} {:>12} {:>10} {:>12} {:>7}",
            "(runtime: CPython)",
            self.python_version,
            self.runtime.files,
            mb(self.runtime.bytes),
            mb(self.runtime.compressed_bytes)
        );
        for p in &self.packages {
            let _ = writeln!(
                s,
                "{:<32} {:>12} {:>10} {:>12} {:>7} {:>10}",
                p.name,
                p.version,
                p.files,
                mb(p.bytes),
                mb(p.compressed_bytes),
                p.bytes_before.map(mb).unwrap_or_default()
            );
        }
        if !self.removed.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<40} {:>8} {:>12}",
                "removed by rule", "files", "bytes"
            );
            for r in &self.removed {
                let _ = writeln!(s, "{:<40} {:>8} {:>12}", r.rule, r.files, mb(r.bytes));
            }
        }
        if !self.stripped.is_empty() {
            let _ = writeln!(s);
            let saved: u64 = self
                .stripped
                .iter()
                .filter_map(|f| f.after.map(|a| f.before - a.min(f.before)))
                .sum();
            let _ = writeln!(
                s,
                "stripped {} ELF files, saved {}",
                self.stripped.len(),
                mb(saved)
            );
            for f in &self.stripped {
                match f.after {
                    Some(a) => {
                        let _ = writeln!(
                            s,
                            "  {:<70} {:>12} saved",
                            f.path,
                            f.before - a.min(f.before)
                        );
                    }
                    None => {
                        let _ = writeln!(s, "  {:<70} left as it was", f.path);
                    }
                }
            }
        }
        if !self.refused.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "protected files rules tried to delete (kept):");
            for r in &self.refused {
                let _ = writeln!(s, "  {} by `{}`: {}", r.path, r.rule, r.why);
            }
        }
        if let Some(m) = &self.minimized {
            let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "minimized by trace ({}; providers: {}): python/lib kept {} files ({}), removed {} files ({}); {} module(s) listed as removed",
                m.trace,
                m.providers.join(", "),
                m.kept_files,
                mb(m.kept_bytes),
                m.removed_files,
                mb(m.removed_bytes),
                m.removed_modules
            );
            if let Some(proof) = &m.proof {
                let _ = writeln!(s, "  {}", proof.describe());
            }
            if !m.dropped_accelerators.is_empty() {
                let _ = writeln!(
                    s,
                    "  native accelerators left out (pure-Python fallbacks): {}",
                    m.dropped_accelerators.join(", ")
                );
            }
            let _ = writeln!(
                s,
                "  {:<28} {:>7} {:>10} {:>8} {:>10}",
                "part", "kept", "kept MB", "removed", "removed MB"
            );
            for d in &m.distributions {
                let _ = writeln!(
                    s,
                    "  {:<28} {:>7} {:>10.2} {:>8} {:>10.2}",
                    d.name,
                    d.kept_files,
                    d.kept_bytes as f64 / 1e6,
                    d.removed_files,
                    d.removed_bytes as f64 / 1e6
                );
            }
        }
        if let Some(stack) = &self.split {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "split into {} layers, stacked in this order (--layers, first to last):",
                stack.parts.len()
            );
            for p in &stack.parts {
                let _ = writeln!(
                    s,
                    "  {}. {:<44} {:>10} zip {:>10} unpacked {:>6} files",
                    p.part,
                    p.file,
                    mb(p.zip_bytes),
                    mb(p.unpacked_bytes),
                    p.files
                );
            }
        }
        for p in &self.patches {
            let _ = writeln!(
                s,
                "patched {} {} {} with {} (sha256 {}): {}",
                p.distribution, p.version, p.file, p.diff, p.diff_sha256, p.reason
            );
        }
        for note in &self.notes {
            let _ = writeln!(s, "note: {note}");
        }
        if !self.timings.is_empty() {
            let total: f64 = self.timings.iter().map(|t| t.seconds).sum();
            let steps: Vec<String> = self
                .timings
                .iter()
                .map(|t| format!("{} {:.2}", t.step, t.seconds))
                .collect();
            let _ = writeln!(s, "time    {total:.2} s: {}", steps.join(", "));
            // CPU seconds per step, where every step has them: more than the wall time is
            // the cores at work, less is waiting (downloads, disk).
            let cpu: Option<Vec<f64>> = self.timings.iter().map(|t| t.cpu_seconds).collect();
            if let Some(cpu) = cpu {
                let steps: Vec<String> = self
                    .timings
                    .iter()
                    .zip(&cpu)
                    .map(|(t, c)| format!("{} {c:.2}", t.step))
                    .collect();
                let total: f64 = cpu.iter().sum();
                let _ = writeln!(s, "cpu     {total:.2} s: {}", steps.join(", "));
            }
        }
        if !self.cache.is_empty() {
            let stages: Vec<String> = self
                .cache
                .iter()
                .map(|c| {
                    let what = match c.stage.as_str() {
                        "install" => "wheels",
                        "bytecode" => "modules",
                        "strip" => "ELF files",
                        "zip" => "zip entries",
                        "trace" => "traces",
                        "imports" => "import scans (one per distribution)",
                        "proof" => "proofs",
                        "prune" => "pruning plans",
                        "runtime" => "runtimes",
                        _ => "items",
                    };
                    format!(
                        "{}: {} {what}, {} from the stage cache",
                        c.stage,
                        c.hits + c.misses,
                        c.hits
                    )
                })
                .collect();
            let _ = writeln!(s, "cache   {}", stages.join("; "));
        }
        if self.over_budget.is_empty() {
            let _ = writeln!(s, "\nfits: within Lambda's limits and the spec's budget");
        } else {
            let _ = writeln!(s);
            for o in &self.over_budget {
                let _ = writeln!(s, "OVER: {o}");
            }
        }
        s
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.0}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_text_report_prints_the_time_of_each_step() {
        let part = serde_json::json!({"bytes": 0, "compressed_bytes": 0, "files": 0});
        let limits = serde_json::json!({"zip_bytes": null, "unpacked_bytes": null});
        let mut report: super::Report = serde_json::from_value(serde_json::json!({
            "name": "l", "arch": "x86_64", "zip_path": "l.zip", "zip_bytes": 1,
            "unpacked_bytes": 2, "python_version": "3.11.9", "glibc": "2.26",
            "runtime": part, "packages": [], "limits": limits, "budget": limits,
            "over_budget": [],
        }))
        .unwrap();
        assert!(report.timings.is_empty(), "an old report.json has none");
        assert!(!report.to_text().contains("time "));
        report.timings = vec![
            crate::build::report::StepTime {
                step: "fetch".into(),
                seconds: 0.25,
                cpu_seconds: None,
            },
            crate::build::report::StepTime {
                step: "site-packages zip".into(),
                seconds: 1.5,
                cpu_seconds: Some(2.75),
            },
        ];
        let text = report.to_text();
        assert!(
            text.contains("time    1.75 s: fetch 0.25, site-packages zip 1.50"),
            "{text}"
        );
        assert!(
            !text.contains("cpu "),
            "not every step has CPU seconds: {text}"
        );
        report.timings[0].cpu_seconds = Some(0.5);
        let text = report.to_text();
        assert!(
            text.contains("cpu     3.25 s: fetch 0.50, site-packages zip 2.75"),
            "{text}"
        );
        report.cache = vec![crate::build::cache::StageCount {
            stage: "install".into(),
            hits: 51,
            misses: 0,
        }];
        let text = report.to_text();
        assert!(
            text.contains("cache   install: 51 wheels, 51 from the stage cache"),
            "{text}"
        );
    }
}

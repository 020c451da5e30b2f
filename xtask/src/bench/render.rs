//! The comparison for people: the markdown table, the failed checks, the guide's figures,
//! the worker benchmark.

use std::fmt::Write as _;

use super::{BenchReport, Variant};
use crate::util::fmt::{mb_number as mb, secs};

/// The markdown table (as pasted into BENCHMARKS.md), then what failed and the guide's figures.
/// Several specs: a side-by-side summary (one row per spec and variant), then each spec's
/// own report.
pub fn render_specs(runs: &[super::SpecBench]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "side by side (zip and unpacked in MB, import in s):\n");
    let _ = writeln!(
        s,
        "| spec | variant | zip | unpacked | verify | import | first call | {} |",
        super::coldstart::headers().join(" | ")
    );
    let _ = writeln!(
        s,
        "| --- | --- | ---: | ---: | --- | ---: | ---: | {}",
        "---: | "
            .repeat(super::coldstart::SIZES.len() * 2)
            .trim_end()
    );
    for run in runs {
        for v in &run.report.variants {
            let verify = match v.verify_ok {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "not run",
            };
            let secs = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {verify} | {} | {} | {} |",
                run.requirements.join(" "),
                v.name,
                v.zip_bytes as f64 / 1e6,
                v.unpacked_bytes as f64 / 1e6,
                secs(v.timings.import_seconds),
                secs(v.timings.first_call_seconds),
                super::coldstart::cells(&v.cold_start).join(" | "),
            );
        }
    }
    for run in runs {
        let _ = writeln!(s, "\n## {} ({})\n", run.requirements.join(" "), run.spec);
        s.push_str(&render(&run.report));
    }
    s
}

pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bench {} on {} ({} cores), {}; timings: medians of {} fresh processes\n",
        r.arch, r.machine.cpu, r.machine.nproc, r.date, r.timing_runs
    );
    s.push_str(&render_table(&r.variants));
    let failures: Vec<String> = r
        .variants
        .iter()
        .flat_map(|v| {
            // A few per variant: the guide's row fails one check per distribution.
            const SHOWN: usize = 4;
            let mut lines: Vec<String> = v
                .verify_failed
                .iter()
                .take(SHOWN)
                .map(|c| format!("- {}: `{}`: {}", v.name, c.name, one_line(&c.detail, 300)))
                .collect();
            if v.verify_failed.len() > SHOWN {
                lines.push(format!(
                    "- {}: ... and {} more failed checks (bench.json lists them)",
                    v.name,
                    v.verify_failed.len() - SHOWN
                ));
            }
            if let Some(e) = &v.verify_error {
                lines.push(format!(
                    "- {}: verify could not run: {}",
                    v.name,
                    one_line(e, 300)
                ));
            }
            lines
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\nverify failures:");
        for f in failures {
            let _ = writeln!(s, "{f}");
        }
    }
    if !r.guide_rules.is_empty() {
        let _ = writeln!(
            s,
            "\nthe guide's categories on the plain tree's site-packages:\n"
        );
        let _ = writeln!(s, "| # | category | entries | MB |");
        let _ = writeln!(s, "| ---: | --- | ---: | ---: |");
        for g in &r.guide_rules {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                g.category,
                g.name,
                g.entries,
                mb(g.bytes)
            );
        }
    }
    if let Some(w) = &r.worker {
        s.push_str(&render_worker(w));
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s);
        for n in &r.notes {
            let _ = writeln!(s, "note: {n}");
        }
    }
    s
}

/// pythonexec-rs's worker figures (`{"interpreter", "results": [{name, count, median_us,
/// p99_us, per_second}]}`); fields it lacks print as `?`.
fn render_worker(w: &serde_json::Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\npythonexec-rs worker (interpreter: {}):\n",
        w["interpreter"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "| benchmark | n | median µs | p99 µs | req/s |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
    let num = |v: &serde_json::Value, digits: usize| {
        v.as_f64()
            .map_or_else(|| "?".to_owned(), |x| format!("{x:.digits$}"))
    };
    for row in w["results"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            row["name"].as_str().unwrap_or("?"),
            num(&row["count"], 0),
            num(&row["median_us"], 1),
            num(&row["p99_us"], 1),
            num(&row["per_second"], 0),
        );
    }
    s
}

/// One row per variant; sizes in decimal MB, ratios against the plain way (first row); the
/// peak RSS in MiB (as Lambda's memory setting counts).
pub fn render_table(variants: &[Variant]) -> String {
    let mut s = String::new();
    let cold = super::coldstart::headers();
    let _ = writeln!(
        s,
        "| variant | zip MB | unpacked MB | zip vs plain | unpacked vs plain | verify | start | import litellm | first completion | peak RSS MiB | {} | build warm | unchanged | build cold |",
        cold.join(" | ")
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | {}---: | ---: | ---: |",
        "---: | ".repeat(cold.len())
    );
    for v in variants {
        let verify = verify_cell(v);
        let rss = v.timings.peak_rss_bytes.map_or_else(
            || "n/a".to_owned(),
            |b| format!("{:.0}", b as f64 / 1048576.0),
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2}x | {:.2}x | {} | {} | {} | {} | {rss} | {} | {} | {} | {} |",
            v.name,
            mb(v.zip_bytes),
            mb(v.unpacked_bytes),
            v.zip_ratio,
            v.unpacked_ratio,
            verify,
            secs(v.timings.interpreter_start_s),
            secs(v.timings.import_seconds),
            secs(v.timings.first_call_seconds),
            super::coldstart::cells(&v.cold_start).join(" | "),
            secs(v.build_warm_s),
            secs(v.build_unchanged_s),
            secs(v.build_cold_s),
        );
    }
    s
}

/// `pass`, or what failed: up to three check names (a size check over Lambda's 50 MB
/// is a failure too, and the reader should see that it is only that).
fn verify_cell(v: &Variant) -> String {
    match v.verify_ok {
        Some(true) => "pass".to_owned(),
        None => "not run".to_owned(),
        Some(false) => {
            let names: Vec<&str> = v.verify_failed.iter().map(|c| c.name.as_str()).collect();
            match names.len() {
                0 => "FAIL".to_owned(),
                1..=3 => format!("FAIL: {}", names.join(", ")),
                n => format!("FAIL: {} checks ({}, ...)", n, names[..2].join(", ")),
            }
        }
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}...", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fill_ratios;
    use crate::verify::{Check, Timings};

    fn variant(name: &str, zip: u64, unpacked: u64, ok: bool) -> Variant {
        Variant {
            name: name.to_owned(),
            zip: "x.zip".into(),
            zip_bytes: zip,
            unpacked_bytes: unpacked,
            files: 1,
            zip_ratio: 0.0,
            unpacked_ratio: 0.0,
            verify_ok: Some(ok),
            verify_failed: if ok {
                vec![]
            } else {
                vec![
                    Check::new("package: metadata", false, "PackageNotFoundError: httpx"),
                    Check::new("litellm: import", false, "no"),
                ]
            },
            verify_error: None,
            timings: Timings {
                runs: 5,
                interpreter_start_s: Some(0.0213),
                preload: vec!["litellm".to_owned()],
                import_seconds: ok.then_some(2.5),
                first_call_seconds: None,
                import_cpu_seconds: None,
                cold_start_seconds: None,
                peak_rss_bytes: ok.then_some(290 << 20),
            },
            build_warm_s: Some(12.345),
            build_unchanged_s: None,
            build_cold_s: None,
            cold_start: if ok {
                vec![crate::bench::coldstart::ColdStart {
                    memory_mb: 512,
                    init_wait_s: Some(3.1),
                    no_wait_s: Some(9.87),
                }]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn table_has_ratios_against_the_plain_way() {
        let mut v = vec![
            variant("plain", 50_000_000, 160_000_000, true),
            variant("guide", 25_000_000, 80_000_000, false),
        ];
        fill_ratios(&mut v);
        assert_eq!(v[0].zip_ratio, 1.0);
        assert_eq!(v[1].zip_ratio, 0.5);
        let table = render_table(&v);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[2],
            "| plain | 50.0 | 160.0 | 1.00x | 1.00x | pass | 0.02 s | 2.50 s | n/a | 290 | 3.10 s | 9.87 s | n/a | n/a | 12.35 s | n/a | n/a |"
        );
        assert_eq!(
            lines[3],
            "| guide | 25.0 | 80.0 | 0.50x | 0.50x | FAIL: package: metadata, litellm: import | 0.02 s | n/a | n/a | n/a | n/a | n/a | n/a | n/a | 12.35 s | n/a | n/a |"
        );
    }

    #[test]
    fn worker_figures_render_as_a_table() {
        let w = serde_json::json!({"interpreter": "python3", "results": [
            {"name": "worker ping (sequential)", "count": 2000, "median_us": 80.5,
             "p99_us": 218.0, "per_second": 9737.2}
        ]});
        let text = render_worker(&w);
        assert!(
            text.contains("| worker ping (sequential) | 2000 | 80.5 | 218.0 | 9737 |"),
            "{text}"
        );
    }
}

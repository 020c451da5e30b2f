//! The supervisor's own checks: the interpreter and standard library, every top-level module
//! imported alone, the metadata of every distribution, and what the audit hook saw.

use super::process::{pool, run_python, PyRun};
use super::Plan;
use crate::verify::Check;

const RUNTIME: &str = include_str!("../py/runtime.py");
const IMPORT_ONE: &str = include_str!("../py/import_one.py");
const METADATA: &str = include_str!("../py/metadata.py");

/// Collects what the audit hook saw, by process; and the largest peak RSS a process reported.
#[derive(Default)]
pub(super) struct Audit {
    egress: Vec<String>,
    writes: Vec<String>,
    pub(super) peak_rss_kb: Option<u64>,
    /// Who the OOM killer killed at `--memory`'s limit (`import MODULE`, a workload's name).
    pub(super) memory_killed: Vec<String>,
}

impl Audit {
    pub(super) fn add(&mut self, who: &str, run: &PyRun) {
        if run.memory_killed {
            self.memory_killed.push(who.to_owned());
        }
        if let Some(kb) = run.field("peak_rss_kb").as_u64() {
            self.peak_rss_kb = Some(self.peak_rss_kb.map_or(kb, |p| p.max(kb)));
        }
        for e in run.egress() {
            self.egress.push(format!("{who}: {e}"));
        }
        for w in run.writes() {
            self.writes.push(format!("{who}: {w}"));
        }
    }
}

/// The interpreter reports the expected machine, and the standard library's modules work.
pub(super) fn runtime(plan: &Plan, audit: &mut Audit) -> Vec<Check> {
    let mut checks = Vec::new();
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

    checks
}

/// Every top-level module, each in a fresh interpreter, in the order of their names.
pub(super) fn imports(plan: &Plan, audit: &mut Audit) -> Vec<Check> {
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
    import_checks
}

/// `importlib.metadata.version()` answers for every distribution of the plan.
pub(super) fn metadata(plan: &Plan, audit: &mut Audit) -> Vec<Check> {
    let mut checks = Vec::new();
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

    checks
}

/// What the audit hook saw over every process: no egress, no writes outside /tmp.
pub(super) fn audit_checks(audit: &Audit) -> Vec<Check> {
    let mut checks = Vec::new();
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
    checks
}

//! The import profile as text: the distributions by their own time, then the heaviest modules
//! with the chain of imports that pulled each in.

use std::fmt::Write as _;

use super::ImportReport;

impl ImportReport {
    pub fn to_text(&self, top: usize) -> String {
        let p = &self.profile;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "import profile of {}: `{}`, median of {} fresh processes under python -X importtime",
            self.layer, self.code, self.runs
        );
        let _ = writeln!(
            s,
            "  python: {} ({}{}){}",
            self.python,
            if self.own_python {
                "the layer's own"
            } else {
                "given with --python"
            },
            self.python_version
                .as_ref()
                .map_or(String::new(), |v| format!(", {v}")),
            self.emulator
                .as_ref()
                .map_or(String::new(), |e| format!(", under {e}")),
        );
        let _ = writeln!(s, "  sandbox: {}", self.sandbox);
        let _ = writeln!(s, "  bytecode: {}", self.bytecode);
        let _ = writeln!(
            s,
            "  {} modules imported in {:.0} ms (wall clock {:.0} ms, with importtime's own overhead); the interpreter's start-up imports took {:.0} ms more",
            p.modules, p.imports_ms, p.wall_ms, p.startup_ms
        );
        if p.modules_not_in_every_run > 0 {
            let _ = writeln!(
                s,
                "  {} modules were imported in some runs only (left out)",
                p.modules_not_in_every_run
            );
        }
        let _ = writeln!(s, "\ndistributions by their own import time (top {top}):");
        let _ = writeln!(
            s,
            "  {:<28} {:<12} {:>9} {:>7} {:>10} {:>7}  first imported by",
            "distribution", "version", "self ms", "share", "cumul. ms", "modules"
        );
        for d in p.distributions.iter().take(top) {
            let _ = writeln!(
                s,
                "  {:<28} {:<12} {:>9.1} {:>6.1}% {:>10.1} {:>7}  {}",
                d.name,
                d.version.as_deref().unwrap_or("-"),
                d.self_ms,
                d.share * 100.0,
                d.cumulative_ms,
                d.modules,
                d.first_chain.join(" → ")
            );
        }
        for (what, list) in [
            ("cumulative time", &p.heaviest),
            ("their own time", &p.heaviest_self),
        ] {
            let _ = writeln!(s, "\nheaviest modules by {what} (top {top}):");
            let _ = writeln!(
                s,
                "  {:>10} {:>8}  {:<24} module, and the chain that imported it",
                "cumul. ms", "self ms", "distribution"
            );
            for h in list.iter().take(top) {
                let _ = writeln!(
                    s,
                    "  {:>10.1} {:>8.1}  {:<24} {}",
                    h.cumulative_ms,
                    h.self_ms,
                    h.dist,
                    h.chain.join(" → ")
                );
            }
        }
        s
    }
}

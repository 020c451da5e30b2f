//! The analysis as text for people.

use std::fmt::Write as _;

use super::report::{Analysis, Bucket, Pruning};
use super::scan::ScanReport;
use crate::util::fmt::mb;

pub(super) fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

impl Analysis {
    /// The report, section by section in the order a reader wants them; long because it is
    /// a flat list of sections (the larger ones are `pruning_text` and `scan_text`).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let est = if self.compressed_estimated {
            " (estimated)"
        } else {
            ""
        };
        let _ = writeln!(s, "layer       {}", self.layer);
        if let Some(z) = self.zip_bytes {
            let _ = writeln!(s, "zip         {}", mb(z));
        }
        let _ = writeln!(
            s,
            "unpacked    {} in {} files; compressed {}{est}",
            mb(self.unpacked_bytes),
            self.files,
            mb(self.compressed_bytes)
        );
        if let Some(py) = &self.python {
            let _ = writeln!(
                s,
                "python      {py} ({})",
                self.machine.as_deref().unwrap_or("architecture unknown")
            );
        }
        for site in &self.sites {
            let _ = writeln!(
                s,
                "site        {}",
                if site.as_str().is_empty() {
                    "(layer root)"
                } else {
                    site.as_str()
                }
            );
        }
        let total = self.files_bytes;
        let _ = writeln!(s, "\nby distribution");
        let _ = writeln!(
            s,
            "  {:<32} {:>12} {:>7} {:>10} {:>10} {:>6}",
            "name", "version", "files", "unpacked", "zipped", "share"
        );
        let other = [&self.outside_site_packages, &self.unattributed];
        for d in &self.distributions {
            let _ = writeln!(
                s,
                "  {:<32} {:>12} {:>7} {:>10} {:>10} {:>6}",
                d.name,
                d.version,
                d.files,
                mb(d.bytes),
                mb(d.compressed_bytes),
                pct(d.bytes, total)
            );
        }
        for b in other.into_iter().filter(|b| b.files > 0) {
            let _ = writeln!(
                s,
                "  {:<32} {:>12} {:>7} {:>10} {:>10} {:>6}",
                b.name,
                "",
                b.files,
                mb(b.bytes),
                mb(b.compressed_bytes),
                pct(b.bytes, total)
            );
        }
        let table = |s: &mut String, title: &str, rows: &[Bucket], limit: usize| {
            let _ = writeln!(s, "\n{title}");
            for b in rows.iter().take(limit) {
                let _ = writeln!(
                    s,
                    "  {:<56} {:>7} {:>10} {:>10} {:>6}",
                    b.name,
                    b.files,
                    mb(b.bytes),
                    mb(b.compressed_bytes),
                    pct(b.bytes, total)
                );
            }
            if rows.len() > limit {
                let _ = writeln!(s, "  ... {} more", rows.len() - limit);
            }
        };
        table(&mut s, "by kind of file", &self.kinds, usize::MAX);
        table(&mut s, "by top-level folder", &self.folders, 25);
        let _ = writeln!(s, "\nlargest files");
        for f in &self.largest {
            let _ = writeln!(
                s,
                "  {:>10}  {:<9} {}{}",
                mb(f.bytes),
                f.kind.as_str(),
                f.path,
                f.distribution
                    .as_ref()
                    .map(|d| format!("  ({d})"))
                    .unwrap_or_default()
            );
        }
        if let Some(p) = &self.pruning {
            pruning_text(&mut s, p);
        }
        if !self.duplicates.is_empty() {
            let _ = writeln!(s, "\ndistributions present more than once");
            for d in &self.duplicates {
                let _ = writeln!(s, "  {}: {}", d.name, d.copies.join("; "));
            }
        }
        let r = &self.requirements;
        let _ = writeln!(s, "\nrequirements ({})", r.roots_from);
        let _ = writeln!(s, "  roots: {}", r.roots.join(", "));
        if r.roots_from.starts_with("spec") {
            if r.not_required.is_empty() {
                let _ = writeln!(s, "  every distribution is pulled in by the requirements");
            } else {
                let _ = writeln!(
                    s,
                    "  nothing in the requirements pulls in: {}",
                    r.not_required.join(", ")
                );
            }
        }
        if let Some(scan) = &self.scan {
            scan_text(&mut s, scan);
        }
        if !self.pth_files.is_empty() {
            let _ = writeln!(
                s,
                "\n.pth files (site executes their `import` lines at every start)"
            );
            for p in &self.pth_files {
                let verdict = match (&p.executes, &p.allowed) {
                    (None, _) => "paths only".to_owned(),
                    (Some(line), Some(why)) => format!("executes `{line}`: {why}"),
                    (Some(line), None) => {
                        format!("EXECUTES UNKNOWN CODE: `{line}` (verify fails on it)")
                    }
                };
                let _ = writeln!(s, "  {}  {verdict}", p.path);
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The command.

/// What the rules would still remove, by level and rule.
fn pruning_text(s: &mut String, p: &Pruning) {
    let _ = writeln!(s, "\nwhat the rules ({}) would still remove", p.rules_file);
    if p.levels.is_empty() {
        let _ = writeln!(s, "  nothing: every rule's files are already gone");
    }
    for l in &p.levels {
        let _ = writeln!(
            s,
            "  level {:<6} {:>7} files {:>10} unpacked {:>10} zipped",
            l.level,
            l.files,
            mb(l.bytes),
            mb(l.compressed_bytes)
        );
        for r in &l.rules {
            let _ = writeln!(
                s,
                "    {:<36} {:>7} {:>10} {:>10}",
                r.rule,
                r.files,
                mb(r.bytes),
                mb(r.compressed_bytes)
            );
        }
    }
    if p.refused_files > 0 {
        let _ = writeln!(
            s,
            "  ({} more files matched a rule but are protected)",
            p.refused_files
        );
    }
}

/// The providers and modules the scanned source refers to.
fn scan_text(s: &mut String, scan: &ScanReport) {
    let _ = writeln!(s, "\nsource scan of {} ({} files)", scan.dir, scan.files);
    let _ = writeln!(
        s,
        "  LiteLLM providers referenced ({} known, from {}):",
        scan.providers_known, scan.provider_names_from
    );
    if scan.providers.is_empty() {
        let _ = writeln!(s, "    none");
    }
    for p in &scan.providers {
        let _ = writeln!(
            s,
            "    {:<20} {:>4}x  e.g. {}",
            p.provider,
            p.count,
            p.examples.first().map(String::as_str).unwrap_or("")
        );
    }
    let _ = writeln!(s, "  layer modules imported directly:");
    if scan.modules.is_empty() {
        let _ = writeln!(s, "    none");
    }
    for m in &scan.modules {
        let _ = writeln!(
            s,
            "    {:<20} {:>4}x  from {}  e.g. {}",
            m.module,
            m.count,
            m.distribution.as_deref().unwrap_or("?"),
            m.example
        );
    }
    if !scan.modules_elsewhere.is_empty() {
        let _ = writeln!(
            s,
            "  imported, not in the layer (standard library or missing): {}",
            scan.modules_elsewhere.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "  distributions nothing imported needs (candidates to leave out):"
    );
    if scan.distributions_not_needed.is_empty() {
        let _ = writeln!(s, "    none");
    }
    for (d, b) in &scan.distributions_not_needed {
        let _ = writeln!(s, "    {:<32} {:>10}", d, mb(*b));
    }
    let _ = writeln!(
        s,
        "  (LiteLLM imports every provider's code at start-up: the provider list says what the code uses, not what can be deleted)"
    );
}

//! The text rendering of a `BuildPlan`, for `cargo xtask layer --plan`.

use std::fmt::Write;

use crate::build::plan::{ArchiveSource, BuildPlan, HostPython, Origin};

/// One section per decision, in the order the build carries them out.
///
/// Long on purpose: the sections one after another, read top to bottom like the output.
pub fn render(plan: &BuildPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan: layer {} for {} from {} (Python {}, glibc <= {}){}",
        plan.layer,
        plan.arch,
        plan.spec_path,
        plan.python_version,
        plan.glibc,
        if plan.offline { ", offline" } else { "" }
    );
    let _ = writeln!(s, "\nruntime:");
    archive(&mut s, &plan.runtime);
    let _ = writeln!(s, "\nbytecode interpreter:");
    match &plan.host_python {
        HostPython::Runtime => {
            let _ = writeln!(s, "  the runtime itself (this machine is {})", plan.arch);
        }
        HostPython::Archive(source) => archive(&mut s, source),
        HostPython::Unavailable { why } => {
            let _ = writeln!(s, "  unavailable: {why}");
        }
    }
    let _ = writeln!(s, "\nwheels ({}):", plan.wheels.len());
    for w in &plan.wheels {
        let _ = writeln!(s, "  {} {}: {}", w.package, w.version, w.file);
        let _ = writeln!(s, "    sha256 {}; {}", w.sha256, w.why);
    }
    let p = &plan.profile;
    let _ = writeln!(s, "\nprofile {}: {}", p.name, p.description);
    let _ = writeln!(
        s,
        "  levels [{}], bytecode {:?} (optimize {}, column positions {}), strip {}, site-packages.zip {}, standard library zip {}",
        p.levels.join(", "),
        p.bytecode,
        p.optimize,
        yes(p.debug_ranges),
        yes(p.strip),
        yes(p.site_packages_zip),
        yes(p.stdlib_zip)
    );
    let _ = writeln!(
        s,
        "  rules ({}, from {}): {}",
        p.rules.len(),
        p.rules_file,
        if p.rules.is_empty() {
            "none".to_owned()
        } else {
            p.rules.join(", ")
        }
    );
    let m = &plan.minimize;
    if m.enabled {
        let _ = writeln!(
            s,
            "\nminimize: on{}",
            if m.forced { " (forced)" } else { "" }
        );
        match &m.trace_given {
            Some(t) => {
                let _ = writeln!(s, "  trace: the saved {t}");
            }
            None => {
                let _ = writeln!(
                    s,
                    "  trace: recorded by workloads {} with providers {}",
                    m.workloads.join(", "),
                    m.providers.join(", ")
                );
            }
        }
        if !m.dropped_accelerators.is_empty() {
            let _ = writeln!(
                s,
                "  accelerators left out: {}",
                m.dropped_accelerators.join(", ")
            );
        }
    } else {
        let _ = writeln!(s, "\nminimize: off");
    }
    let _ = writeln!(s, "\nenvironment defaults:");
    for (k, v) in &plan.env {
        let _ = writeln!(s, "  {k}={v}");
    }
    if !plan.patches.is_empty() {
        let _ = writeln!(s, "\npatches ({}):", plan.patches.len());
        for p in &plan.patches {
            let _ = writeln!(
                s,
                "  {} {} {}: {}",
                p.distribution, p.version, p.file, p.diff
            );
            let _ = writeln!(s, "    sha256 {}; {}", p.diff_sha256, p.reason);
        }
    }
    let _ = writeln!(
        s,
        "\nclients: python/lib/pythonexec/worker.py{}",
        if plan.clients_node {
            ", nodejs/node_modules/pythonexec/"
        } else {
            " (Node.js package off: [clients] node = false)"
        }
    );
    let o = &plan.paths;
    let _ = writeln!(s, "\noutputs in {}:", o.out);
    match &plan.split {
        None => {
            let _ = writeln!(s, "  zip     {}", o.zip);
        }
        Some(split) => {
            let _ = writeln!(
                s,
                "  parts   {} (--split: up to {} layers, each at most {} zipped, together at most {} unpacked; the single zip is not kept)",
                split.parts,
                split.max_parts,
                crate::util::fmt::mb(split.part_zip_bytes),
                crate::util::fmt::mb(split.unpacked_bytes)
            );
            let _ = writeln!(
                s,
                "  stack   {} (the order to give --layers)",
                split.stack_file
            );
        }
    }
    let _ = writeln!(s, "  tree    {}", o.tree);
    let _ = writeln!(s, "  report  {} and {}", o.report_json, o.report_text);
    if m.enabled {
        let _ = writeln!(s, "  trace   {}", o.trace);
    }
    s
}

fn archive(s: &mut String, a: &ArchiveSource) {
    let origin = match a.origin {
        Origin::Pinned => "the spec's pinned download",
        Origin::Mirror => "the spec's asset from LAYER_PYTHON_MIRROR",
        Origin::Explicit => "given on the command line",
    };
    let _ = writeln!(s, "  {} ({origin})", a.location);
    let flavour = a
        .flavour
        .and_then(|f| serde_json::to_value(f).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "found when unpacked".into());
    let _ = writeln!(
        s,
        "  file {}, sha256 {}, flavour {flavour}",
        a.file_name, a.sha256
    );
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

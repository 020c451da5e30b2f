//! `cargo xtask doctor`: what this machine has and lacks for each command.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use camino::Utf8PathBuf;
use serde::Serialize;

use crate::spec::{Arch, Spec};

#[derive(Debug, Serialize)]
struct Finding {
    what: String,
    ok: bool,
    detail: String,
    /// What a missing piece disables.
    needed_for: String,
}

fn tool(what: &str, names: &[&str], needed_for: &str) -> Finding {
    let found = crate::util::which_any(names.iter().copied()).map(String::from);
    Finding {
        what: what.to_owned(),
        ok: found.is_some(),
        detail: found.unwrap_or_else(|| format!("none of {names:?} on PATH")),
        needed_for: needed_for.to_owned(),
    }
}

fn reachable(url: &str) -> (bool, String) {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(8)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .http_status_as_error(false)
        .build();
    let agent: ureq::Agent = config.into();
    match agent.head(url).call() {
        Ok(resp) => (
            resp.status().as_u16() < 500,
            format!("HTTP {}", resp.status().as_u16()),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// What `cargo xtask doctor` was asked.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The spec whose CPython download host is checked (skipped when it does not load).
    pub spec: Utf8PathBuf,
    /// Print the findings as JSON.
    pub json: bool,
}

/// Prints what this machine has and lacks for each command.
pub fn run(options: &DoctorOptions) -> Result<ExitCode> {
    let spec = Spec::load(&options.spec).ok();
    let mut findings = vec![
        tool(
            "uv",
            &["uv"],
            "`cargo xtask lock` (resolving the requirements)",
        ),
        tool(
            "bubblewrap",
            &["bwrap"],
            "`cargo xtask verify` in a Lambda-like sandbox (falls back to a plain folder)",
        ),
        tool(
            "qemu-aarch64-static",
            &["qemu-aarch64-static", "qemu-aarch64"],
            "running arm64 layers on this machine (verify, arm64 fixture)",
        ),
        tool("strip", &["strip"], "stripping x86_64 native code"),
        tool(
            "aarch64-linux-gnu-strip",
            &["aarch64-linux-gnu-strip"],
            "stripping arm64 native code on an x86_64 machine",
        ),
        tool("patchelf", &["patchelf"], "`cargo xtask fixture-runtime`"),
        tool(
            "apt-get",
            &["apt-get"],
            "`cargo xtask fixture-runtime --arch arm64` (Debian's arm64 packages)",
        ),
        tool(
            "chromium",
            &["chromium", "chromium-browser"],
            "the browser test of `cargo xtask analyze --html`",
        ),
    ];
    let index =
        std::env::var("PIP_INDEX_URL").unwrap_or_else(|_| "https://pypi.org/simple/".to_owned());
    let (ok, detail) = reachable(&index);
    findings.push(Finding {
        what: "package index".into(),
        ok,
        detail: format!("{index}: {detail}"),
        needed_for: "`cargo xtask lock` and the first build (wheels are cached after)".into(),
    });
    if let Some(spec) = &spec {
        let (url, _) = spec.runtime_location(Arch::X86_64, None);
        let (ok, detail) = if url.starts_with("http") {
            reachable(&url)
        } else {
            (true, "local mirror".into())
        };
        findings.push(Finding {
                what: "CPython download host".into(),
                ok,
                detail: format!("{url}: {detail}"),
                needed_for: "fetching python-build-standalone; without it pass --python-archive or set LAYER_PYTHON_MIRROR".into(),
            });
    }
    findings.push(Finding {
        what: "cache".into(),
        ok: true,
        detail: crate::core::cache_dir().to_string(),
        needed_for: "offline builds (`--offline`)".into(),
    });
    if options.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            let mark = if f.ok { "ok  " } else { "MISS" };
            println!("{mark} {:<24} {}", f.what, f.detail);
            if !f.ok {
                println!("     {:<24} disables: {}", "", f.needed_for);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

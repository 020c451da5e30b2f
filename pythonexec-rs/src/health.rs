//! `verify_python_environment`: what interpreter runs, and can it import LiteLLM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::interpreter::{Choice, Interpreter};
use crate::run::{run_with_args, RunOptions};

const HEALTH_PY: &str = include_str!("health.py");

/// Where a `site-packages` entry of `sys.path` lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitePackages {
    pub path: String,
    /// `"directory"`, `"zip"` (a layer may ship `site-packages.zip`) or `"missing"`.
    pub kind: String,
}

/// The health check's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthReport {
    /// The program that was started, and why it was chosen.
    pub interpreter: PathBuf,
    pub choice: Choice,
    pub reason: String,
    /// `sys.executable`.
    pub executable: String,
    pub version: String,
    pub implementation: String,
    pub machine: String,
    pub platform: String,
    pub prefix: String,
    pub base_prefix: String,
    pub sys_path: Vec<String>,
    pub site_packages: Vec<SitePackages>,
    /// Distribution name to version; `None` when the distribution is absent.
    pub packages: BTreeMap<String, Option<String>>,
    /// From spawning the process to the first line of the script.
    pub startup: Duration,
    /// How long `import litellm` took; `None` when it failed.
    pub import_litellm: Option<Duration>,
    pub import_litellm_error: Option<String>,
    /// The whole check, wall clock.
    pub total: Duration,
}

impl HealthReport {
    pub fn litellm_version(&self) -> Option<&str> {
        self.packages.get("litellm").and_then(|v| v.as_deref())
    }
}

#[derive(Deserialize)]
struct Raw {
    started_at: f64,
    executable: String,
    version: String,
    implementation: String,
    machine: String,
    platform: String,
    prefix: String,
    base_prefix: String,
    sys_path: Vec<String>,
    site_packages: Vec<SitePackages>,
    packages: BTreeMap<String, Option<String>>,
    import_litellm_seconds: Option<f64>,
    import_litellm_error: Option<String>,
}

/// Check the interpreter [`Interpreter::locate`] picks.
pub async fn verify_python_environment() -> Result<HealthReport> {
    verify_python_environment_with(&Interpreter::locate(None), Duration::from_secs(120)).await
}

/// Check a given interpreter; `timeout` bounds the whole check (importing LiteLLM is slow).
pub async fn verify_python_environment_with(
    interpreter: &Interpreter,
    timeout: Duration,
) -> Result<HealthReport> {
    let spawned_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let options = RunOptions::default().timeout(timeout);
    let out = run_with_args(interpreter, &["-u", "-c", HEALTH_PY], &options).await?;
    let value = out.json.ok_or_else(|| Error::BadJson {
        line: String::new(),
        source: None,
    })?;
    let raw: Raw = serde_json::from_value(value).map_err(|source| Error::BadJson {
        line: crate::error::tail(&out.stdout, 200),
        source: Some(source),
    })?;
    Ok(HealthReport {
        interpreter: interpreter
            .resolve()
            .unwrap_or_else(|_| interpreter.program.clone()),
        choice: interpreter.choice.clone(),
        reason: interpreter.reason(),
        executable: raw.executable,
        version: raw.version,
        implementation: raw.implementation,
        machine: raw.machine,
        platform: raw.platform,
        prefix: raw.prefix,
        base_prefix: raw.base_prefix,
        sys_path: raw.sys_path,
        site_packages: raw.site_packages,
        packages: raw.packages,
        startup: secs(raw.started_at - spawned_at),
        import_litellm: raw.import_litellm_seconds.map(secs),
        import_litellm_error: raw.import_litellm_error,
        total: out.duration,
    })
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}

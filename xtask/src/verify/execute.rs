//! How the runtime checks run: the emulator for a foreign architecture, the plan the
//! supervisor gets, and the sandbox (or, without bubblewrap, the plain folder) it runs in. Both
//! `verify` and minimization's `run_workloads` build their plan and sandbox here.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::inside::{self, Outcome, Plan, Workload};
use super::sandbox;
use crate::spec::{Arch, Spec};
use crate::util::cgroup::Group;

/// How a layer of an architecture runs here: all `None` natively.
#[derive(Debug, Clone, Default)]
pub(super) struct Emulation {
    /// The emulator on this machine.
    pub qemu: Option<Utf8PathBuf>,
    pub sysroot: Option<Utf8PathBuf>,
    /// The emulator's name, for the report.
    pub name: Option<String>,
}

/// How a layer of `arch` runs here; the error says why it cannot run at all.
pub(super) fn emulation(
    arch: Arch,
    sysroot_flag: Option<&Utf8PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<Emulation, String> {
    if Some(arch) == Arch::host() {
        return Ok(Emulation::default());
    }
    if arch != Arch::Arm64 {
        return Err(format!("nothing here can execute a {arch} layer"));
    }
    let qemu = crate::util::which("qemu-aarch64-static");
    // The flag, else the fixture runtime's Debian arm64 sysroot (cached download).
    let sysroot = match sysroot_flag {
        Some(s) => Some(s.clone()).filter(|s| s.is_dir()),
        None => crate::util::debian::arm64_sysroot()
            .map_err(|e| warnings.push(format!("no arm64 sysroot: {e:#}")))
            .ok(),
    };
    match (qemu, sysroot) {
        (Some(q), Some(s)) => Ok(Emulation {
            qemu: Some(q),
            sysroot: Some(s),
            name: Some("qemu-aarch64-static".to_owned()),
        }),
        (q, s) => {
            let mut why = Vec::new();
            if q.is_none() {
                why.push("qemu-aarch64-static is not installed (Debian: qemu-user-static)");
            }
            if s.is_none() {
                why.push("no arm64 sysroot (pass --sysroot or set LAYER_ARM64_SYSROOT)");
            }
            Err(format!(
                "nothing here can execute an arm64 layer: {}",
                why.join("; ")
            ))
        }
    }
}

/// The plan's defaults for `arch`: nothing to check yet, and no interpreter until
/// [`Setup`] says where it runs. Any one process may take `timeouts.0` seconds natively,
/// `timeouts.1` under emulation.
pub(super) fn plan(arch: Arch, emulation: &Emulation, timeouts: (u64, u64)) -> Plan {
    Plan {
        python: String::new(),
        launcher: Vec::new(),
        env: Vec::new(),
        machine: arch.machine().to_owned(),
        modules: Vec::new(),
        skipped: BTreeMap::new(),
        dists: Vec::new(),
        timing_runs: 0,
        jobs: 1,
        timeout_secs: if emulation.qemu.is_some() {
            timeouts.1
        } else {
            timeouts.0
        },
        workloads: Vec::new(),
        providers: Vec::new(),
        workload: None,
        preload: Vec::new(),
        cpu_quota: None,
        timings_only: false,
        import_after_init: false,
    }
}

/// The layer unpacked at `root`, ready to run in the sandbox or on the plain folder.
pub(super) struct Setup<'a> {
    root: &'a Utf8Path,
    emulation: &'a Emulation,
    exe: Utf8PathBuf,
    /// `python/bin/python3.X`, relative to the layer.
    interpreter: Utf8PathBuf,
    xy: String,
    /// `verify --memory`: the control group the sandbox runs in.
    group: Option<&'a Group>,
    quota_file: Option<Utf8PathBuf>,
}

impl<'a> Setup<'a> {
    pub fn new(spec: &Spec, root: &'a Utf8Path, emulation: &'a Emulation) -> Result<Setup<'a>> {
        let xy = spec.python_xy();
        Ok(Setup {
            root,
            emulation,
            exe: crate::util::utf8(std::env::current_exe().context("finding this xtask binary")?)?,
            interpreter: Utf8PathBuf::from(format!("python/bin/python{xy}")),
            xy,
            group: None,
            quota_file: None,
        })
    }

    /// Runs the sandbox in `group`, its CPU quota file bound for the supervisor.
    pub fn in_group(mut self, group: Option<&'a Group>) -> Setup<'a> {
        self.group = group;
        self.quota_file = group.map(Group::cpu_quota_file);
        self
    }

    fn sandbox_spec(&self) -> sandbox::SandboxSpec<'_> {
        sandbox::SandboxSpec {
            layer: self.root,
            exe: &self.exe,
            sysroot: self.emulation.sysroot.as_deref(),
            qemu: self.emulation.qemu.as_deref(),
            cpu_quota: self.quota_file.as_deref(),
        }
    }

    /// Whether bubblewrap can be used here (and `no_sandbox` is false); the error says why not.
    pub fn probe(&self, no_sandbox: bool) -> Result<(), String> {
        if no_sandbox {
            return Err("--no-sandbox was given".to_owned());
        }
        sandbox::probe_bwrap(&self.sandbox_spec())
    }

    /// Runs `plan` in bubblewrap, the layer at /opt.
    pub fn run_sandboxed(&self, mut plan: Plan) -> Result<Outcome> {
        plan.python = format!("/opt/{}", self.interpreter);
        plan.env = sandbox::lambda_env("/opt", &self.xy);
        if self.emulation.qemu.is_some() {
            plan.launcher = vec![
                sandbox::INSIDE_QEMU.to_owned(),
                "-L".to_owned(),
                sandbox::INSIDE_SYSROOT.to_owned(),
            ];
        }
        run_in_bwrap(&self.sandbox_spec(), &plan, self.group)
    }

    /// Runs `plan` in-process on the plain folder, unsandboxed.
    pub fn run_plain(&self, mut plan: Plan) -> Result<Outcome> {
        plan.python = self.root.join(&self.interpreter).into_string();
        plan.env = sandbox::lambda_env(self.root.as_str(), &self.xy);
        if let (Some(q), Some(s)) = (&self.emulation.qemu, &self.emulation.sysroot) {
            plan.launcher = vec![q.to_string(), "-L".to_owned(), s.to_string()];
        }
        inside::run(&plan)
    }
}

/// Runs `workloads` in the layer unpacked at `root` the way `verify` runs its checks (in the
/// sandbox, next to the loopback server, under qemu for arm64), each under the tracing hook
/// of `py/trace.py`. Used by `cargo xtask layer --minimize`.
pub fn run_workloads(
    spec: &Spec,
    arch: Arch,
    root: &Utf8Path,
    workloads: Vec<Workload>,
    providers: Vec<String>,
) -> Result<Outcome> {
    let mut warnings = Vec::new();
    let emulation = emulation(arch, None, &mut warnings).map_err(|why| anyhow::anyhow!("{why}"))?;
    let mut plan = plan(arch, &emulation, (300, 1200));
    plan.workloads = workloads;
    plan.providers = providers;
    let setup = Setup::new(spec, root, &emulation)?;
    match setup.probe(false) {
        Ok(()) => setup.run_sandboxed(plan),
        // The trace's paths must be those of /opt: without the sandbox there is no /opt.
        Err(why) => bail!("the minimization workload runs only in the verify sandbox: {why}"),
    }
}

/// Runs the supervisor (this binary) inside bubblewrap and reads its outcome.
fn run_in_bwrap(
    s: &sandbox::SandboxSpec<'_>,
    plan: &Plan,
    group: Option<&Group>,
) -> Result<Outcome> {
    let mut cmd = match group {
        Some(g) => g.command("bwrap"),
        None => Command::new("bwrap"),
    };
    let mut child = cmd
        .args(sandbox::bwrap_args(s))
        .arg(sandbox::INSIDE_EXE)
        .arg("verify-inside")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting bwrap")?;
    let input = serde_json::to_vec(plan)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .context("sending the plan to the sandboxed supervisor")?;
    }
    let out = child
        .wait_with_output()
        .context("waiting for the sandboxed supervisor")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the sandboxed supervisor failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = stdout.lines().last().unwrap_or("");
    let outcome: Outcome = serde_json::from_str(line).with_context(|| {
        format!(
            "the sandboxed supervisor printed no outcome; stderr: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    // What ran inside is not in this process's count of its children (bwrap keeps it).
    if let Some(seconds) = outcome.cpu_seconds {
        crate::util::cpu::add_unseen(seconds);
    }
    Ok(outcome)
}

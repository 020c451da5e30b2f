//! Fresh interpreters of any layer under `python -X importtime`, in verify's sandbox (the layer
//! read-only at /opt, /tmp the only writable place, no network): what `cargo xtask analyze
//! --imports` measures. Only the running is here; reading the numbers is analyze's.
//!
//! A layer that carries no interpreter (a plain `pip install --target` folder, or a layer for
//! Lambda's own Python runtimes) runs under one given with `--python`: its installation is
//! bound read-only at its own path, its own site-packages hidden, so that nothing but the layer
//! and the standard library can be imported. Such a layer is put on `sys.path` the way Lambda's
//! Python runtimes put one: `/opt/python/lib/python3.X/site-packages` and `/opt/python`.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::{execute, sandbox, unpack};
use crate::spec::Arch;

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct ImportTimeRequest<'a> {
    /// A layer zip, a layer folder (with `python/` in it) or a site-packages folder.
    pub layer: &'a Utf8Path,
    /// An interpreter outside the layer (default: the layer's `python/bin/python3.X`).
    pub python: Option<&'a Utf8Path>,
    /// The Python each process runs with `-c`.
    pub code: &'a str,
    /// Fresh processes (default 5, or 3 under emulation).
    pub runs: Option<usize>,
    /// Run once first with a writable bytecode cache (`PYTHONPYCACHEPREFIX` in /tmp, kept
    /// across the runs), for a layer that ships no bytecode: the timed runs then do not
    /// include compiling.
    pub warm_up: bool,
}

/// One finished process.
#[derive(Debug, Clone)]
pub struct ImportTimeRun {
    pub stdout: String,
    pub stderr: String,
}

/// Every timed run, and how they ran.
#[derive(Debug, Clone)]
pub struct ImportTimeRuns {
    /// The interpreter as the sandbox saw it.
    pub python: String,
    /// Whether it is the layer's own.
    pub own_python: bool,
    pub emulator: Option<String>,
    pub runs: Vec<ImportTimeRun>,
}

/// The interpreter and how the sandbox shows it and the layer.
struct Interpreter {
    /// Its path inside the sandbox.
    path: String,
    own: bool,
    xy: String,
    arch: Arch,
    /// `bwrap` arguments that make it visible (none for the layer's own).
    binds: Vec<String>,
}

/// Runs `request.code` under `-X importtime` in `runs` fresh sandboxed processes.
///
/// Long on purpose: the sandbox's arguments (verify's, the interpreter's binds, the cache, the
/// environment) are built in one place, in the order bubblewrap applies them.
pub fn import_times(request: &ImportTimeRequest<'_>) -> Result<ImportTimeRuns> {
    let work_root = crate::core::target_dir().join("verify");
    fs_err::create_dir_all(&work_root)?;
    // Not under /tmp, as verify's: the sandbox's /tmp is its own.
    let work = tempfile::Builder::new()
        .prefix("imports-")
        .tempdir_in(&work_root)
        .with_context(|| format!("creating a folder in {work_root}"))?;
    let work_dir = crate::util::utf8(work.path().to_owned())?;
    let (opt, site_only) = layer_root(request.layer, &work_dir)?;
    let interp = interpreter(&opt, request.python)?;
    let mut warnings = Vec::new();
    let emulation = execute::emulation(interp.arch, None, &mut warnings)
        .map_err(|why| anyhow::anyhow!("{why}"))?;
    let exe = crate::util::utf8(std::env::current_exe().context("finding this xtask binary")?)?;
    let spec = sandbox::SandboxSpec {
        layer: &opt,
        exe: &exe,
        sysroot: emulation.sysroot.as_deref(),
        qemu: emulation.qemu.as_deref(),
        // Unthrottled: `analyze --imports` has no `--memory` (yet), it measures the import.
        cpu_quota: None,
    };
    sandbox::probe_bwrap(&spec).map_err(|why| {
        anyhow::anyhow!("analyze --imports runs only in the verify sandbox: {why}")
    })?;
    let mut extra = interp.binds.clone();
    if let Some(site) = &site_only {
        extra.extend(["--ro-bind".into(), site.to_string(), "/opt/python".into()]);
    }
    let cache = work_dir.join("pycache");
    if request.warm_up {
        fs_err::create_dir_all(&cache)?;
        extra.extend(["--bind".into(), cache.to_string(), "/tmp/pycache".into()]);
    }
    let mut env = sandbox::lambda_env("/opt", &interp.xy);
    if !interp.own {
        env.retain(|(k, _)| k != "PYTHONHOME" && k != "PYTHONPATH");
        env.push((
            "PYTHONPATH".into(),
            format!(
                "/opt/python/lib/python{}/site-packages:/opt/python",
                interp.xy
            ),
        ));
    }
    if request.warm_up {
        env.push(("PYTHONPYCACHEPREFIX".into(), "/tmp/pycache".into()));
    }
    let mut args = sandbox::bwrap_args(&spec);
    // Mount points for the binds can only be made before the root turns read-only.
    let at = args
        .iter()
        .position(|a| a == "--remount-ro")
        .unwrap_or(args.len() - 1);
    args.splice(at..at, extra.iter().map(OsString::from));
    args.pop(); // the final `--`
    for (k, v) in &env {
        args.extend(["--setenv".into(), k.into(), v.into()]);
    }
    args.push("--".into());
    if emulation.qemu.is_some() {
        args.extend([sandbox::INSIDE_QEMU, "-L", sandbox::INSIDE_SYSROOT].map(OsString::from));
    }
    args.extend([&interp.path, "-X", "importtime", "-c", request.code].map(OsString::from));
    let (runs, timeout) = match emulation.qemu {
        Some(_) => (request.runs.unwrap_or(3), Duration::from_secs(1200)),
        None => (request.runs.unwrap_or(5), Duration::from_secs(300)),
    };
    if request.warm_up {
        run_one(&args, timeout).context("the warm-up run")?;
    }
    let runs = (1..=runs.max(1))
        .map(|i| run_one(&args, timeout).with_context(|| format!("run {i}")))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("importing in {}", request.layer))?;
    Ok(ImportTimeRuns {
        python: interp.path,
        own_python: interp.own,
        emulator: emulation.name,
        runs,
    })
}

/// The folder to bind at /opt (a zip unpacked into `work`), and a site-packages folder to bind
/// at /opt/python when the layer is only that.
fn layer_root(layer: &Utf8Path, work: &Utf8Path) -> Result<(Utf8PathBuf, Option<Utf8PathBuf>)> {
    let meta = fs_err::metadata(layer)?;
    let root = if meta.is_dir() {
        layer.canonicalize_utf8()?
    } else {
        let dest = work.join("opt");
        unpack::unzip(layer, &dest).with_context(|| format!("unpacking {layer}"))?;
        dest
    };
    if root.join("python").is_dir() {
        return Ok((root, None));
    }
    let empty = work.join("empty-opt");
    fs_err::create_dir_all(empty.join("python"))?;
    Ok((empty, Some(root)))
}

/// The layer's own interpreter, or the one given, with what the sandbox must show of it.
fn interpreter(opt: &Utf8Path, given: Option<&Utf8Path>) -> Result<Interpreter> {
    let Some(given) = given else {
        let bin = opt.join("python/bin");
        let own = fs_err::read_dir(&bin).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| {
                    n.strip_prefix("python3.")
                        .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
                })
                .max()
        });
        let Some(name) = own else {
            bail!("the layer has no python/bin/python3.X: pass --python PATH (an interpreter of the Python the layer was installed for)");
        };
        let arch = unpack::arch_of(&bin.join(&name))
            .or(Arch::host())
            .unwrap_or(Arch::X86_64);
        return Ok(Interpreter {
            path: format!("/opt/python/bin/{name}"),
            own: true,
            xy: name.trim_start_matches("python").to_owned(),
            arch,
            binds: Vec::new(),
        });
    };
    // Asked outside the sandbox, isolated (-I -S): where it is installed, which version.
    let probe = "import sys; print(sys.base_prefix); print(sys.executable); print('%d.%d' % sys.version_info[:2])";
    let out = Command::new(given.as_std_path())
        .args(["-I", "-S", "-c", probe])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running the interpreter {given}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let [prefix, exe, xy] = lines.as_slice() else {
        bail!(
            "{given} is not a Python interpreter: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    };
    let exe = Utf8Path::new(exe)
        .canonicalize_utf8()
        .with_context(|| format!("finding the interpreter {given} ran from"))?;
    let stdlib = format!("{prefix}/lib/python{xy}");
    let mut binds: Vec<String> = Vec::new();
    let mut bind = |from: &str| binds.extend(["--ro-bind".into(), from.into(), from.into()]);
    // The sandbox shows /usr but hides its Pythons; elsewhere nothing of the host is there.
    if prefix.starts_with("/usr") {
        bind(&stdlib);
        bind(exe.as_str());
    } else {
        bind(prefix);
    }
    for own_site in [
        format!("{stdlib}/site-packages"),
        format!("{stdlib}/dist-packages"),
    ] {
        if Utf8Path::new(&own_site).is_dir() {
            binds.extend(["--tmpfs".into(), own_site]);
        }
    }
    Ok(Interpreter {
        path: exe.to_string(),
        own: false,
        xy: (*xy).to_owned(),
        arch: unpack::arch_of(&exe)
            .or(Arch::host())
            .unwrap_or(Arch::X86_64),
        binds,
    })
}

/// One sandboxed process; an error when it fails or outlasts `timeout`, with its stderr's end.
fn run_one(args: &[OsString], timeout: Duration) -> Result<ImportTimeRun> {
    use std::io::Read;
    let start = Instant::now();
    let mut child = Command::new("bwrap")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting bwrap")?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let drain = |pipe: Option<&mut dyn Read>| {
        let mut s = Vec::new();
        if let Some(p) = pipe {
            let _ = p.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    };
    let (stdout, stderr, status) = std::thread::scope(|scope| {
        let o = scope.spawn(|| drain(out.as_mut().map(|p| p as &mut dyn Read)));
        let e = scope.spawn(|| drain(err.as_mut().map(|p| p as &mut dyn Read)));
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if start.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(anyhow::anyhow!("timed out after {} s", timeout.as_secs()));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => break Err(anyhow::anyhow!("waiting for the interpreter: {e}")),
            }
        };
        (
            o.join().unwrap_or_default(),
            e.join().unwrap_or_default(),
            status,
        )
    });
    let status = status?;
    if !status.success() {
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("import time:"))
            .collect();
        let tail = tail[tail.len().saturating_sub(6)..].join(" | ");
        bail!("the interpreter failed ({status}): {tail}");
    }
    Ok(ImportTimeRun { stdout, stderr })
}

//! How the layer's interpreter is run the way Lambda would run it.
//!
//! # The network namespace
//!
//! Lambda gives a function no route out unless it is attached to a VPC with one; the checks
//! must see the same, yet LiteLLM has to reach the xtask's OpenAI-compatible server. A
//! server on this machine's loopback is invisible from a `bwrap --unshare-net` sandbox (the
//! sandbox has its own loopback), and leaving the network shared would give the layer a
//! route to the internet. So the xtask runs *itself* inside one sandbox: `bwrap
//! --unshare-net ... -- /run/verify/xtask verify-inside`, with the plan on stdin. That
//! supervisor starts the mock server on the sandbox's own 127.0.0.1 and spawns every checked
//! interpreter (each a fresh process) inside the same namespaces, then prints its findings
//! as JSON on stdout. Nothing in the sandbox can reach anything but that loopback; the
//! audit hook (`py/audit.py`) additionally names every attempt.
//!
//! Without bubblewrap the same supervisor runs in-process on a plain unpacked folder, and
//! the report says loudly that nothing was isolated.

use std::ffi::OsString;
use std::process::{Command, Stdio};

use camino::Utf8Path;

/// Where the supervisor binary and the arm64 sysroot appear inside the sandbox.
pub const INSIDE_EXE: &str = "/run/verify/xtask";
pub const INSIDE_SYSROOT: &str = "/run/verify/sysroot";
pub const INSIDE_QEMU: &str = "/run/verify/qemu-aarch64-static";
/// `verify --memory`: the control group's CPU quota file, for the supervisor (`memory.rs`).
pub const INSIDE_CPU_QUOTA: &str = "/run/verify/cpu-quota";

/// The environment Lambda gives a function, with the variables the deployment docs tell
/// users to set for this layer's interpreter. `root` is where the layer is (`/opt`).
pub fn lambda_env(root: &str, python_xy: &str) -> Vec<(String, String)> {
    let root = root.trim_end_matches('/');
    [
        ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "layer-verify".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_nodejs22.x".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("PATH", format!("/usr/local/bin:/usr/bin/:/bin:{root}/bin")),
        (
            "LD_LIBRARY_PATH",
            format!("/var/lang/lib:/lib64:/usr/lib64:{root}/lib"),
        ),
        ("PYTHONHOME", format!("{root}/python")),
        ("PYTHONPATH", format!("{root}/python/lib/python{python_xy}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What the sandbox needs from this machine.
pub struct SandboxSpec<'a> {
    /// The unpacked layer, bound read-only at `/opt`.
    pub layer: &'a Utf8Path,
    /// This xtask binary, bound read-only at [`INSIDE_EXE`].
    pub exe: &'a Utf8Path,
    /// For arm64 under emulation: the sysroot and the emulator.
    pub sysroot: Option<&'a Utf8Path>,
    pub qemu: Option<&'a Utf8Path>,
    /// `verify --memory`: the control group's CPU quota file, bound writable at
    /// [`INSIDE_CPU_QUOTA`].
    pub cpu_quota: Option<&'a Utf8Path>,
}

/// The `bwrap` arguments up to and including `--`: the host's `/usr` and `/etc` read-only
/// (a stand-in for Lambda's base image), `/root`, `/home` and every other host folder
/// absent, the layer read-only at `/opt`, an empty read-only `/var/task`, `/tmp` the only
/// writable place, no network but loopback.
pub fn bwrap_args(s: &SandboxSpec<'_>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(&["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]);
    // Merged-/usr systems have /lib, /lib64, /bin and /sbin as links into /usr; others
    // have real folders.
    for top in ["/lib", "/lib64", "/lib32", "/bin", "/sbin"] {
        let path = std::path::Path::new(top);
        match std::fs::read_link(path) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                push(&["--symlink", &target, top]);
            }
            Err(_) if path.is_dir() => push(&["--ro-bind", top, top]),
            Err(_) => {}
        }
    }
    // This machine's own Python must not stand in for anything the layer lacks: its
    // standard library folders become empty and its interpreters empty files.
    for dir in ["/usr/lib", "/usr/local/lib"] {
        for name in host_pythons(dir, |n| {
            n.starts_with("python3") || n.starts_with("python2")
        }) {
            push(&["--tmpfs", &name]);
        }
    }
    for dir in ["/usr/bin", "/usr/local/bin"] {
        for name in host_pythons(dir, |n| n.starts_with("python") || n.starts_with("pip")) {
            push(&["--ro-bind", "/dev/null", &name]);
        }
    }
    push(&["--ro-bind", s.layer.as_str(), "/opt"]);
    push(&["--ro-bind", s.exe.as_str(), INSIDE_EXE]);
    if let Some(sysroot) = s.sysroot {
        push(&["--ro-bind", sysroot.as_str(), INSIDE_SYSROOT]);
    }
    if let Some(qemu) = s.qemu {
        push(&["--ro-bind", qemu.as_str(), INSIDE_QEMU]);
    }
    if let Some(quota) = s.cpu_quota {
        push(&["--bind", quota.as_str(), INSIDE_CPU_QUOTA]);
    }
    push(&[
        "--tmpfs",
        "/tmp",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--dir",
        "/var/task",
        "--dir",
        "/var/runtime",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-pid",
        "--die-with-parent",
        "--new-session",
        "--chdir",
        "/var/task",
        "--remount-ro",
        "/",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--",
    ]);
    a
}

/// Entries of `dir` whose names pass `keep`, as full paths, sorted.
fn host_pythons(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| keep(n))
                .map(|n| format!("{dir}/{n}"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Whether bubblewrap can build the sandbox here; the error says why not.
pub fn probe_bwrap(s: &SandboxSpec<'_>) -> Result<(), String> {
    let mut cmd = Command::new("bwrap");
    cmd.args(bwrap_args(s))
        .arg(INSIDE_EXE)
        .arg("--version")
        .stdin(Stdio::null());
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "bwrap failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
            "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
                .to_owned(),
        ),
        Err(e) => Err(format!("bwrap could not start: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_environment() {
        let env = lambda_env("/opt", "3.11");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PYTHONHOME"), Some("/opt/python"));
        assert_eq!(get("PYTHONPATH"), Some("/opt/python/lib/python3.11"));
        assert_eq!(
            get("LD_LIBRARY_PATH"),
            Some("/var/lang/lib:/lib64:/usr/lib64:/opt/lib")
        );
        assert_eq!(get("PATH"), Some("/usr/local/bin:/usr/bin/:/bin:/opt/bin"));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/var/task"));
        assert!(get("AWS_LAMBDA_FUNCTION_NAME").is_some());
        assert_eq!(get("HOME"), None, "Lambda functions have no HOME");
    }

    #[test]
    fn sandbox_hides_home_and_cuts_the_network() {
        let args = bwrap_args(&SandboxSpec {
            layer: "/x/layer".into(),
            exe: "/x/xtask".into(),
            sysroot: None,
            qemu: None,
            cpu_quota: None,
        });
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--ro-bind /x/layer /opt"), "{joined}");
        assert!(joined.contains("--unshare-net"), "{joined}");
        assert!(joined.contains("--tmpfs /tmp"), "{joined}");
        assert!(joined.contains("--remount-ro /"), "{joined}");
        assert!(!joined.contains("/root"), "{joined}");
        assert!(!joined.contains("/home"), "{joined}");
        assert_eq!(args.last().map(String::as_str), Some("--"));
    }
}

//! Shared fixtures for the end-to-end tests: they run the real `xtask` binary.
//!
//! Fixture runtimes and built layers are expensive (tens of seconds), so each is made once
//! under `target/test-fixtures/` and reused by every test; a file lock keeps concurrent tests
//! (threads of this binary, or two `cargo test` runs) from building the same thing twice.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn fixtures_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root().join(target)
    };
    let dir = target.join("test-fixtures");
    std::fs::create_dir_all(&dir).expect("create target/test-fixtures");
    dir
}

/// The real binary, run from the workspace root.
pub fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.current_dir(root())
        .env("CI", "true")
        .env_remove("LAYER_PYTHON_MIRROR");
    cmd
}

/// `cargo xtask layer --arch x86_64 --profile PROFILE --spec SPEC --out OUT` on the x86_64
/// fixture runtime; add flags (`--trace`, `--split`) before running it.
pub fn layer_cmd(spec: &Path, profile: &str, out: &Path) -> Command {
    let (archive, sha) = fixture_archive("x86_64");
    let mut cmd = xtask();
    cmd.args(["layer", "--arch", "x86_64", "--profile", profile, "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--python-archive")
        .arg(archive)
        .args(["--python-sha256", &sha]);
    cmd
}

/// Runs a command, printing its output on failure.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Holds an exclusive lock on a file under the fixtures folder while alive.
pub struct FileLock(std::fs::File);

pub fn lock(name: &str) -> FileLock {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(fixtures_dir().join(format!("{name}.lock")))
        .expect("open lock file");
    file.lock().expect("lock");
    FileLock(file)
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).expect("open");
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// A python-build-standalone-shaped archive of this machine's CPython (x86_64) or of
/// Debian's arm64 CPython, built once.
pub fn fixture_archive(arch: &str) -> (PathBuf, String) {
    let path = fixtures_dir().join(format!("cpython-fixture-{arch}-install_only.tar.gz"));
    let _guard = lock(&format!("fixture-{arch}"));
    if !path.exists() {
        run_ok(
            xtask()
                .args(["fixture-runtime", "--arch", arch, "--out"])
                .arg(&path),
        );
    }
    let sha = sha256_file(&path);
    (path, sha)
}

/// The two maintained specs. Most tests build the seeds' spec (litellm 1.78.7, pure Python):
/// their assertions are about the tool, and today's litellm (layer/layer.toml, three times the
/// size, 4 s to import) would make every one of them slower; `today.rs` builds the default.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    /// `layer/specs/litellm-1.78.7/layer.toml`.
    Seeds,
    /// `layer/layer.toml`, today's litellm.
    Default,
}

impl Which {
    pub fn spec(self) -> PathBuf {
        match self {
            Which::Seeds => root().join("layer/specs/litellm-1.78.7/layer.toml"),
            Which::Default => root().join("layer/layer.toml"),
        }
    }

    /// The fixture folder prefix of its layers.
    fn prefix(self) -> &'static str {
        match self {
            Which::Seeds => "seeds",
            Which::Default => "layer",
        }
    }
}

/// The seeds' spec text, made to work from any folder: its lock and data folder become
/// absolute paths (the repository's), so a test can write it (changed) anywhere.
pub fn seeds_spec_text() -> String {
    let spec_path = Which::Seeds.spec();
    let dir = spec_path.parent().expect("spec folder");
    let text = std::fs::read_to_string(&spec_path).expect("seeds spec");
    let lock = dir.join("pylock.toml");
    let data = root().join("layer");
    let text = text.replace(
        "lock = \"pylock.toml\"",
        &format!("lock = {:?}", lock.to_str().expect("utf-8 path")),
    );
    assert!(
        text.contains("data = \"../..\""),
        "the seeds spec names its data folder"
    );
    text.replace(
        "data = \"../..\"",
        &format!("data = {:?}", data.to_str().expect("utf-8 path")),
    )
}

/// The seeds' spec text with its data folder made absolute and `lock = "pylock.toml"` left
/// relative, for tests that write their own lock beside it.
pub fn seeds_spec_own_lock() -> String {
    let lock = Which::Seeds
        .spec()
        .parent()
        .expect("folder")
        .join("pylock.toml");
    seeds_spec_text().replace(
        &format!("lock = {:?}", lock.to_str().expect("utf-8 path")),
        "lock = \"pylock.toml\"",
    )
}

/// Writes the seeds' spec into `dir` with the data files copied beside it (`data = "."`), for
/// tests that change one of them; returns the spec's path.
pub fn seeds_spec_with_own_data(dir: &Path) -> PathBuf {
    let layer = root().join("layer");
    std::fs::create_dir_all(dir.join("workloads")).expect("spec folder");
    for f in [
        "profiles.toml",
        "rules.toml",
        "sitecustomize.py",
        "lambda-base-libs.toml",
        "litellm-providers.toml",
        "accelerators.toml",
        "advisories.toml",
        "workloads/litellm.py",
        "workloads/litellm_verify.py",
    ] {
        std::fs::copy(layer.join(f), dir.join(f)).expect("copy a data file");
    }
    let text = seeds_spec_text();
    let data_line = format!("data = {:?}", layer.to_str().expect("utf-8 path"));
    let text = text.replace(&data_line, "data = \".\"");
    let spec = dir.join("layer.toml");
    std::fs::write(&spec, text).expect("write spec");
    spec
}

/// A built layer, built once per (spec, arch, profile).
pub struct BuiltLayer {
    pub out: PathBuf,
    pub zip: PathBuf,
    pub tree: PathBuf,
    pub report: serde_json::Value,
}

/// A layer of the seeds' spec (see [`Which`]).
pub fn built_layer(arch: &str, profile: Option<&str>) -> BuiltLayer {
    built(Which::Seeds, arch, profile)
}

/// No in-process lock beside the file lock: `flock` excludes the threads of this binary from
/// each other too (each call opens the lock file anew), and one mutex for all layers would
/// hold every test that wants a built layer behind whichever layer is being built.
pub fn built(which: Which, arch: &str, profile: Option<&str>) -> BuiltLayer {
    let name = format!("{}-{arch}-{}", which.prefix(), profile.unwrap_or("default"));
    let out = fixtures_dir().join(&name);
    let (archive, sha) = fixture_archive(arch);
    let _guard = lock(&name);
    let report_path = out.join("report.json");
    if !report_path.exists() {
        let mut cmd = xtask();
        cmd.args(["layer", "--arch", arch, "--spec"])
            .arg(which.spec())
            .arg("--out")
            .arg(&out);
        cmd.arg("--python-archive")
            .arg(&archive)
            .args(["--python-sha256", &sha]);
        if let Some(p) = profile {
            cmd.args(["--profile", p]);
        }
        if arch == "arm64" {
            let (host, host_sha) = fixture_archive("x86_64");
            cmd.arg("--host-python-archive")
                .arg(host)
                .args(["--host-python-sha256", &host_sha]);
        }
        // Exit 3 means "built, but over the spec's budget" (standard and optimized are over
        // Lambda's 50 MB direct-upload size): the layer is still there to test.
        let out = cmd.output().expect("spawn");
        if !(out.status.success() || out.status.code() == Some(3) && report_path.exists()) {
            panic!("{cmd:?} failed with {}\n{}", out.status, text(&out));
        }
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report.json"))
            .expect("report.json is JSON");
    let zip = PathBuf::from(report["zip_path"].as_str().expect("zip_path"));
    BuiltLayer {
        tree: out.join("tree"),
        zip,
        out,
        report,
    }
}

/// `cargo xtask verify --json --timing-runs 1 ARGS`: the exit code and the report; panics with
/// what verify printed when that is not JSON.
pub fn verify_json(args: &[&std::ffi::OsStr]) -> (i32, serde_json::Value) {
    let out = xtask()
        .args(["verify", "--json", "--timing-runs", "1"])
        .args(args)
        .output()
        .expect("run xtask verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// A verify report's checks: name -> (ok, detail).
pub fn checks_of(report: &serde_json::Value) -> std::collections::BTreeMap<String, (bool, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                (
                    c["ok"].as_bool().unwrap_or(false),
                    c["detail"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

/// A hand-written `pylock.toml` holding `packages` (its `[[packages]]` tables, as TOML text).
pub fn lock_of(packages: &str) -> String {
    format!("lock-version = \"1.0\"\ncreated-by = \"test\"\n\n{packages}")
}

/// One check of a verify report: (ok, detail); panics naming it when the report has none.
pub fn check<'a>(report: &'a serde_json::Value, name: &str) -> (bool, &'a str) {
    let c = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {report}"));
    (
        c["ok"].as_bool().unwrap_or(false),
        c["detail"].as_str().unwrap_or(""),
    )
}

/// Runs `code` with the layer's interpreter the way Lambda would: the layer read-only at
/// /opt, the rest of the system read-only, /tmp writable, /root (and this machine's own
/// Python) hidden, no network.
pub fn run_in_sandbox(tree: &Path, code: &str) -> Output {
    sandbox(tree, code, false)
}

/// The same, but on this machine's network, so that the code can reach a loopback server
/// the test started.
pub fn run_in_sandbox_with_loopback(tree: &Path, code: &str) -> Output {
    sandbox(tree, code, true)
}

fn sandbox(tree: &Path, code: &str, share_net: bool) -> Output {
    let mut cmd = Command::new("bwrap");
    for dir in ["/usr", "/lib", "/lib64", "/etc", "/bin", "/sbin"] {
        if Path::new(dir).exists() {
            cmd.args(["--ro-bind", dir, dir]);
        }
    }
    cmd.arg("--ro-bind").arg(tree).arg("/opt");
    cmd.args([
        "--tmpfs",
        "/tmp",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--clearenv",
    ]);
    if !share_net {
        cmd.arg("--unshare-net");
    }
    cmd.args(["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin"]);
    cmd.args(["--setenv", "PYTHONHOME", "/opt/python"]);
    cmd.args(["--setenv", "LAMBDA_TASK_ROOT", "/var/task"]);
    cmd.args(["--", "/opt/python/bin/python3.11", "-c", code]);
    cmd.output().expect("spawn bwrap")
}

/// Serves `dir` over HTTP on loopback until the returned server is dropped.
pub struct FileServer {
    pub base_url: String,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub fn serve_dir(dir: PathBuf) -> FileServer {
    let server =
        std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
    let port = server.server_addr().to_ip().expect("ip").port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, h) = (server.clone(), hits.clone());
    let thread = std::thread::spawn(move || {
        for request in s.incoming_requests() {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let rel = request.url().trim_start_matches('/').replace("%2B", "+");
            let path = dir.join(rel);
            let response = match std::fs::File::open(&path) {
                Ok(f) if !rel_escapes(request.url()) => tiny_http::Response::from_file(f).boxed(),
                _ => tiny_http::Response::from_string("not found")
                    .with_status_code(404)
                    .boxed(),
            };
            let _ = request.respond(response);
        }
    });
    FileServer {
        base_url: format!("http://127.0.0.1:{port}"),
        server,
        thread: Some(thread),
        hits,
    }
}

fn rel_escapes(url: &str) -> bool {
    url.split('/').any(|c| c == "..")
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

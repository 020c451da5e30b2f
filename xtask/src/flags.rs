//! Command-line flags of every subcommand, in one place.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::spec::Arch;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "Build, verify and analyse AWS Lambda layers that carry their own CPython",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build a layer zip from a spec: runtime, locked wheels, layout, package, report.
    Layer(Layer),
    /// Regenerate the lock file of a spec for every architecture (uses uv).
    Lock(Lock),
    /// Write a python-build-standalone-shaped archive built from local parts.
    ///
    /// FOR TESTS AND OFFLINE DEMOS ONLY: the real layer uses the pinned
    /// python-build-standalone download. x86_64 takes this machine's own
    /// CPython 3.11; arm64 assembles Debian's arm64 CPython 3.11 packages.
    FixtureRuntime(FixtureRuntime),
    /// Report what this machine has and lacks for each command.
    Doctor(Doctor),
    /// What a layer (zip or folder, this tool's or anybody's) is made of; `--diff OLD NEW`
    /// compares two.
    Analyze(Analyze),
    /// Run a layer the way Lambda would and check it: interpreter, standard library, every
    /// package, LiteLLM against a loopback server, no egress, no writes, ELF files, sizes.
    ///
    /// Exit code 0 only when every check passed; 2 when the checks that need to execute the
    /// layer could not run (and --static-only was not given).
    Verify(Verify),
    /// Compare, on this machine, the plain `pip install --target` layer, the original guides'
    /// deletion rules and each profile: sizes, verify, start-up and import times, build times.
    Bench(Bench),
    /// The cache folder: size per stage of the stage cache and of the downloads (default), or
    /// `--clean` to empty the stage cache (`--clean --all`: the downloads too).
    Cache(Cache),
    /// Internal: the supervisor `verify` runs inside its sandbox (plan on stdin, JSON out).
    #[command(hide = true)]
    VerifyInside(VerifyInside),
}

#[derive(Args, Debug, Clone)]
pub struct SpecArgs {
    /// The layer spec.
    #[arg(long, default_value = "layer/layer.toml", env = "LAYER_SPEC")]
    pub spec: Utf8PathBuf,
}

#[derive(Args, Debug)]
pub struct Layer {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Target architecture (default: the spec's `default-arch`).
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Output folder (default: target/layer/<arch>/).
    #[arg(long)]
    pub out: Option<Utf8PathBuf>,
    /// Use this CPython archive (path or URL) instead of the spec's pinned download.
    #[arg(long, requires = "python_sha256")]
    pub python_archive: Option<String>,
    /// The sha256 the runtime archive must have: of `--python-archive`, or, alone, in place
    /// of the spec's pinned hash (for a mirror serving other builds under the same names).
    #[arg(long)]
    pub python_sha256: Option<String>,
    /// For a cross build: the build machine's CPython archive of the same release
    /// (path or URL), used to compile bytecode. Default: the spec's pinned download.
    #[arg(long, requires = "host_python_sha256")]
    pub host_python_archive: Option<String>,
    /// The sha256 that `--host-python-archive` must have.
    #[arg(long)]
    pub host_python_sha256: Option<String>,
    /// Never touch the network: everything must already be in the cache.
    #[arg(long)]
    pub offline: bool,
    /// Named set of pruning, bytecode and stripping choices (see layer/profiles.toml);
    /// default: the spec's `profile`.
    #[arg(long)]
    pub profile: Option<String>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// After slimming, run the spec's [minimize] workload in the verify sandbox and keep only
    /// the files under python/lib it touched; then verify the result (the `minimal` profile
    /// turns this on; profiles that build site-packages.zip cannot be minimized).
    #[arg(long)]
    pub minimize: bool,
    /// Minimize with this saved trace (`trace-<arch>.json` of an earlier build) instead of
    /// running the workload.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<Utf8PathBuf>,
    /// Print what the build would do (runtime, wheels, profile, rules, outputs) and stop:
    /// nothing is downloaded or written. With `--json`, one JSON object.
    #[arg(long)]
    pub plan: bool,
    /// Write the layer as up to five zips (`<name>-<arch>-K-of-N.zip`), each within the zip
    /// budget, and `layers.json` with the order Lambda must stack them in; for a layer too big
    /// for one direct-upload zip.
    #[arg(long)]
    pub split: bool,
}

impl Layer {
    pub fn options(&self) -> anyhow::Result<crate::build::LayerOptions> {
        let sha = |flag: &str, h: &str| -> anyhow::Result<crate::spec::Sha256Hex> {
            h.parse()
                .map_err(|e: String| anyhow::anyhow!("{flag}: {e}"))
        };
        let python_sha256 = match &self.python_sha256 {
            Some(h) => Some(sha("--python-sha256", h)?),
            None => None,
        };
        let host_python_archive = match (&self.host_python_archive, &self.host_python_sha256) {
            (Some(a), Some(h)) => Some((a.clone(), sha("--host-python-sha256", h)?)),
            _ => None,
        };
        Ok(crate::build::LayerOptions {
            arch: self.arch,
            out: self.out.clone(),
            python_archive: self.python_archive.clone(),
            python_sha256,
            host_python_archive,
            profile: self.profile.clone(),
            offline: self.offline,
            minimize: self.minimize || self.trace.is_some(),
            trace: self.trace.clone(),
            split: self.split,
        })
    }
}

#[derive(Args, Debug)]
pub struct Lock {
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Args, Debug)]
pub struct FixtureRuntime {
    /// Architecture of the interpreter to package.
    #[arg(long)]
    pub arch: Arch,
    /// Archive to write (`.tar.gz` or `.tar.zst`).
    #[arg(long)]
    pub out: Utf8PathBuf,
    /// Layout of the archive.
    #[arg(long, value_enum, default_value = "install_only")]
    pub flavour: crate::fixture::Flavour,
}

impl FixtureRuntime {
    pub fn options(&self) -> crate::fixture::FixtureOptions {
        crate::fixture::FixtureOptions {
            arch: self.arch,
            out: self.out.clone(),
            flavour: self.flavour,
        }
    }
}

#[derive(Args, Debug)]
pub struct Cache {
    /// Print the size of each stage and of the downloads (what `cache` does without flags).
    #[arg(long, conflicts_with = "clean")]
    pub size: bool,
    /// Remove the stage cache; the downloads stay.
    #[arg(long)]
    pub clean: bool,
    /// With --clean: remove the downloads (runtimes, wheels) too.
    #[arg(long, requires = "clean")]
    pub all: bool,
}

impl Cache {
    pub fn options(&self) -> crate::cache::CacheOptions {
        crate::cache::CacheOptions {
            clean: self.clean,
            all: self.all,
            dir: None,
        }
    }
}

#[derive(Args, Debug)]
pub struct Doctor {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Doctor {
    pub fn options(&self) -> crate::doctor::DoctorOptions {
        crate::doctor::DoctorOptions {
            spec: self.spec.spec.clone(),
            json: self.json,
        }
    }
}

#[derive(Args, Debug)]
pub struct Analyze {
    /// A layer zip or an unpacked layer folder (default: the last layer built).
    pub layer: Option<Utf8PathBuf>,
    /// Print the analysis (or the diff) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page with a treemap of the layer.
    #[arg(long, value_name = "FILE")]
    pub html: Option<Utf8PathBuf>,
    /// Report which LiteLLM providers and Python modules the code under DIR refers to.
    #[arg(long, value_name = "DIR")]
    pub scan_source: Option<Utf8PathBuf>,
    /// The spec whose requirements and rules apply (default: layer/layer.toml when this tool
    /// built the layer from it; otherwise none, and the roots are the distributions nothing
    /// else requires).
    #[arg(long)]
    pub spec: Option<Utf8PathBuf>,
    /// How many of the largest files to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Compare two layers (markdown for pull-request comments, or `--json`).
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with_all = ["layer", "html", "scan_source"])]
    pub diff: Option<Vec<Utf8PathBuf>>,
    /// Where the import's milliseconds go: run the spec's [verify] preload (`import litellm`)
    /// under `python -X importtime` in fresh sandboxed processes, attribute the time to
    /// distributions and modules, with the chain that imported each (text, --json, and a
    /// flame graph in the --html page).
    #[arg(long)]
    pub imports: bool,
    /// With --imports: import this module instead of the spec's preload (repeatable).
    #[arg(long, value_name = "MODULE", requires = "imports")]
    pub preload: Vec<String>,
    /// With --imports: the interpreter for a layer without its own `python/bin/python3.X`
    /// (a plain `pip install --target` folder).
    #[arg(long, value_name = "PATH", requires = "imports")]
    pub python: Option<Utf8PathBuf>,
    /// With --imports: fresh processes to take medians over (default 5, 3 under emulation).
    #[arg(long, value_name = "N", requires = "imports")]
    pub runs: Option<usize>,
}

#[derive(Args, Debug)]
pub struct Verify {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Target architecture (default: the spec's `default-arch`, or with --layer the
    /// architecture of the layer's interpreter).
    #[arg(long)]
    pub arch: Option<Arch>,
    /// The layer zip (default: the last one `cargo xtask layer` built for the architecture).
    /// A split layer: its folder (with `layers.json`), or its zips in stack order
    /// (`--layer 1.zip 2.zip` or `--layer 1.zip --layer 2.zip`), unpacked in that order into
    /// one /opt as Lambda stacks them.
    #[arg(long, num_args = 1.., value_name = "ZIP|DIR")]
    pub layer: Vec<Utf8PathBuf>,
    /// Print `{"ok", "checks": [{"name", "ok", "detail"}], "timings"}` as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only the checks that read files; succeed even though nothing was executed.
    #[arg(long)]
    pub static_only: bool,
    /// An arm64 sysroot (glibc and friends) for running an arm64 layer under qemu.
    #[arg(long, env = "LAYER_ARM64_SYSROOT")]
    pub sysroot: Option<Utf8PathBuf>,
    /// Fresh processes per timing (default 5, or 3 under emulation).
    #[arg(long)]
    pub timing_runs: Option<usize>,
    /// Interpreters run at once for the import checks (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Do not use bubblewrap even where it works (runs the unsandboxed fallback).
    #[arg(long)]
    pub no_sandbox: bool,
    /// Lambda's memory setting (128 to 10240 MB): the sandbox gets its memory limit and,
    /// after INIT, its CPU share (MB / 1769 of one CPU) through a control group.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(128..=10240))]
    pub memory: Option<u32>,
    /// With --memory: the timing runs import the preload after INIT, at the CPU share, as a
    /// client that does not wait for it at INIT (the cold start "without the wait").
    #[arg(long, requires = "memory")]
    pub import_after_init: bool,
    /// Only the static checks and the timing runs (and their cold start).
    #[arg(long, conflicts_with = "static_only")]
    pub timings_only: bool,
}

#[derive(Args, Debug)]
pub struct VerifyInside {}

impl Analyze {
    pub fn options(&self) -> crate::analyze::AnalyzeOptions {
        crate::analyze::AnalyzeOptions {
            layer: self.layer.clone(),
            json: self.json,
            html: self.html.clone(),
            scan_source: self.scan_source.clone(),
            spec: self.spec.clone(),
            // As before: the repository's spec, wherever the command runs from.
            default_spec: crate::core::project_root().join("layer/layer.toml"),
            top: self.top,
            diff: self.diff.as_ref().and_then(|pair| match pair.as_slice() {
                [old, new] => Some((old.clone(), new.clone())),
                _ => None,
            }),
            imports: self
                .imports
                .then(|| crate::analyze::imports::ImportsOptions {
                    preload: self.preload.clone(),
                    python: self.python.clone(),
                    runs: self.runs,
                }),
        }
    }
}

impl Verify {
    pub fn options(&self) -> crate::verify::VerifyOptions {
        crate::verify::VerifyOptions {
            arch: self.arch,
            layers: self.layer.clone(),
            static_only: self.static_only,
            sysroot: self.sysroot.clone(),
            timing_runs: self.timing_runs,
            jobs: self.jobs,
            no_sandbox: self.no_sandbox,
            memory_mb: self.memory,
            import_after_init: self.import_after_init,
            timings_only: self.timings_only,
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct Bench {
    /// A layer spec; repeat it to bench several side by side (default: every maintained spec,
    /// layer/layer.toml and layer/specs/*/layer.toml).
    #[arg(long, env = "LAYER_SPEC")]
    pub spec: Vec<Utf8PathBuf>,
    /// Also print the results as JSON on stdout (they are always written to OUT/bench.json).
    #[arg(long)]
    pub json: bool,
    /// Where the variants, their caches and bench.json go (default: target/bench/).
    #[arg(long)]
    pub out: Option<Utf8PathBuf>,
    /// Use this CPython archive (path or URL) instead of the spec's pinned download.
    #[arg(long, requires = "python_sha256")]
    pub python_archive: Option<String>,
    /// The sha256 that `--python-archive` must have.
    #[arg(long)]
    pub python_sha256: Option<String>,
    /// Fresh processes per timing (medians).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Only these profiles, comma-separated (default: every profile of profiles.toml).
    #[arg(long, value_delimiter = ',')]
    pub profiles: Option<Vec<String>>,
    /// Skip the cold-cache builds (they download every wheel again).
    #[arg(long)]
    pub skip_cold: bool,
    /// Also run pythonexec-rs's worker benchmark (`cargo bench -p pythonexec-rs --bench worker`).
    #[arg(long)]
    pub worker: bool,
    /// Verify every variant with Lambda's CPU share and memory limit for this size (as
    /// `verify --memory`).
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(128..=10240))]
    pub memory: Option<u32>,
    /// Which variants get the cold-start columns (512 and 1,769 MB, with and without the
    /// INIT wait; minutes per variant): `default` (the plain way and the spec's profile),
    /// `all` or `none`.
    #[arg(long, value_name = "WHICH", default_value = "default", value_parser = ["default", "all", "none"])]
    pub cold_start: String,
}

impl Bench {
    pub fn options(&self) -> anyhow::Result<crate::bench::BenchOptions> {
        Ok(crate::bench::BenchOptions {
            specs: crate::bench::BenchOptions::specs_or_maintained(&self.spec)?,
            json: self.json,
            out: crate::bench::BenchOptions::out_dir(self.out.as_deref())?,
            python_archive: self.python_archive.clone(),
            python_sha256: self.python_sha256.clone(),
            runs: self.runs,
            profiles: self.profiles.clone(),
            skip_cold: self.skip_cold,
            worker: self.worker,
            memory_mb: self.memory,
            cold_start: match self.cold_start.as_str() {
                "all" => crate::bench::ColdStartScope::All,
                "none" => crate::bench::ColdStartScope::None,
                _ => crate::bench::ColdStartScope::Default,
            },
        })
    }
}

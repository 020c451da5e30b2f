//! Bytecode: every `.py` of the layer compiled to unchecked-hash `.pyc` by an interpreter of the
//! target's minor version that runs here, with the run-time `/opt/...` path baked in.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::build::cache::StageCache;
pub use crate::spec::profiles::Mode;

/// One file to compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// The source, relative to the layer root.
    pub source: Utf8PathBuf,
    /// The `.pyc` to write, relative to the layer root.
    pub pyc: Utf8PathBuf,
    /// The path tracebacks show: where the source is at run time (`/opt/python/...`).
    pub dfile: String,
    /// Whether the source is deleted once compiled.
    pub drop_source: bool,
}

/// How the interpreter compiles: both decide the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// py_compile's `optimize` (0, 1 or 2).
    pub optimize: u8,
    /// `false`: `-X no_debug_ranges`, no column positions in the location tables.
    pub debug_ranges: bool,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            optimize: 0,
            debug_ranges: true,
        }
    }
}

impl Flags {
    /// The interpreter options that carry these flags.
    fn interpreter_options(self) -> &'static [&'static str] {
        if self.debug_ranges {
            &[]
        } else {
            &["-X", "no_debug_ranges"]
        }
    }
}

/// What compiling did.
#[derive(Debug, Default)]
pub struct Compiled {
    pub files: usize,
    /// Sources that did not compile (kept as they are), with the error.
    pub failed: Vec<(Utf8PathBuf, String)>,
    pub sources_removed: usize,
    pub stale_removed: usize,
    /// Cached `.pyc` files found changed since they were stored, so compiled again.
    pub cache_changed: usize,
}

/// `cpython-311` for `3.11`.
pub fn cache_tag(xy: &str) -> String {
    format!("cpython-{}", xy.replace('.', ""))
}

/// The bytecode path of a source for a mode; `keep_source` forces `__pycache__` in sourceless mode.
pub fn pyc_path(
    source: &Utf8Path,
    mode: Mode,
    xy: &str,
    optimize: u8,
    keep_source: bool,
) -> Option<Utf8PathBuf> {
    let stem = source.file_stem()?;
    let dir = source.parent().unwrap_or(Utf8Path::new(""));
    let opt = if optimize > 0 {
        format!(".opt-{optimize}")
    } else {
        String::new()
    };
    match mode {
        Mode::None => None,
        Mode::Sourceless if !keep_source => Some(dir.join(format!("{stem}.pyc"))),
        _ => Some(
            dir.join("__pycache__")
                .join(format!("{stem}.{}{opt}.pyc", cache_tag(xy))),
        ),
    }
}

/// The jobs for every `.py` among `files` (layer-relative paths under `python/lib/`); pure.
pub fn plan(
    files: &[Utf8PathBuf],
    mode: Mode,
    xy: &str,
    optimize: u8,
    keep_source: &globset::GlobSet,
) -> Vec<Job> {
    let lib = format!("python/lib/python{xy}/");
    files
        .iter()
        .filter(|f| f.as_str().starts_with(&lib) && f.extension() == Some("py"))
        .filter_map(|f| {
            let keep = keep_source.is_match(f.as_std_path());
            Some(Job {
                pyc: pyc_path(f, mode, xy, optimize, keep)?,
                dfile: format!("/opt/{f}"),
                drop_source: mode == Mode::Sourceless && !keep,
                source: f.clone(),
            })
        })
        .collect()
}

/// Compiles in a fixed order per worker: marshal's output depends on what the process compiled
/// before (reference flags on shared constants), so a racy pool would make builds differ.
const SCRIPT: &str = r#"
import json, py_compile, sys
req = json.load(sys.stdin)
failed = []
for src, cfile, dfile in req["jobs"]:
    try:
        py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True, optimize=req["optimize"],
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except Exception as e:
        failed.append([src, f"{type(e).__name__}: {e}"])
json.dump({"failed": failed}, sys.stdout)
"#;

#[derive(Deserialize)]
struct Answer {
    failed: Vec<(String, String)>,
}

/// Deletes `.pyc` files and `__pycache__` folders that were not made by us (pip's or a runtime's
/// timestamp bytecode), so that every `.pyc` in the layer is reproducible.
fn remove_existing(stage: &Utf8Path) -> Result<usize> {
    let mut removed = 0;
    for w in crate::util::walk(stage)? {
        let full = stage.join(&w.rel);
        if w.file_type.is_dir() && w.rel.file_name() == Some("__pycache__") {
            if full.exists() {
                removed += crate::util::walk(&full)?
                    .iter()
                    .filter(|x| !x.file_type.is_dir())
                    .count();
                fs_err::remove_dir_all(&full)?;
            }
        } else if !w.file_type.is_dir() && w.rel.extension() == Some("pyc") && full.exists() {
            fs_err::remove_file(&full)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Compiles every job with `python` (host interpreter of the target's minor version), one
/// process per core, then deletes the sources of sourceless jobs that compiled. With a
/// stage cache, the `.pyc` files it holds are linked instead and only the others compiled.
pub fn compile(
    stage: &Utf8Path,
    jobs: &[Job],
    python: &Utf8Path,
    flags: Flags,
    cache: Option<&StageCache>,
) -> Result<Compiled> {
    let mut out = Compiled {
        stale_removed: remove_existing(stage)?,
        ..Compiled::default()
    };
    if jobs.is_empty() {
        return Ok(out);
    }
    let failed_sources = match cache {
        None => compile_jobs(stage, jobs, python, flags, &mut out.failed)?,
        Some(cache) => {
            // The interpreter as it is invoked: its options decide the bytes too.
            let mut interpreter = crate::build::cache::bytecode::interpreter_id(python)?;
            for o in flags.interpreter_options() {
                interpreter = format!("{interpreter} {o}");
            }
            let optimize = flags.optimize;
            let (keys, changed) =
                crate::build::cache::bytecode::restore(cache, stage, jobs, &interpreter, optimize)?;
            out.cache_changed = changed;
            let todo: Vec<(&Job, &String)> = jobs
                .iter()
                .zip(&keys)
                .filter(|(_, (_, missing))| *missing)
                .map(|(j, (k, _))| (j, k))
                .collect();
            let todo_jobs: Vec<Job> = todo.iter().map(|(j, _)| (*j).clone()).collect();
            let failed = compile_jobs(stage, &todo_jobs, python, flags, &mut out.failed)?;
            crate::build::cache::bytecode::store(cache, stage, &todo, &failed)?;
            failed
        }
    };
    for j in jobs {
        if failed_sources.contains(&j.source) {
            continue;
        }
        out.files += 1;
        if j.drop_source {
            fs_err::remove_file(stage.join(&j.source))?;
            out.sources_removed += 1;
        }
    }
    Ok(out)
}

/// Compiles `jobs` in one process per core (at least two); returns the sources that failed
/// (also noted in `failed`).
fn compile_jobs(
    stage: &Utf8Path,
    jobs: &[Job],
    python: &Utf8Path,
    flags: Flags,
    failed: &mut Vec<(Utf8PathBuf, String)>,
) -> Result<BTreeSet<Utf8PathBuf>> {
    let mut failed_sources = BTreeSet::new();
    if jobs.is_empty() {
        return Ok(failed_sources);
    }
    // Dealt out in turn, not in two halves: a package's modules sit together and vary in
    // size, and halves left one process compiling alone for seconds. Each process still
    // compiles its share in a fixed order.
    let workers = crate::util::worker_threads().min(jobs.len());
    let answers: Vec<Result<Answer>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || -> Result<Answer> {
                    let share: Vec<_> = jobs
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .map(|j| (stage.join(&j.source), stage.join(&j.pyc), &j.dfile))
                        .collect();
                    let req = serde_json::json!({
                        "optimize": flags.optimize,
                        "jobs": share,
                    });
                    run_script(python, flags.interpreter_options(), &req.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a compile thread panicked")))
            })
            .collect()
    });
    for a in answers {
        for (src, err) in a?.failed {
            let rel = Utf8Path::new(&src)
                .strip_prefix(stage)
                .map(Utf8Path::to_owned)
                .unwrap_or_else(|_| src.clone().into());
            failed_sources.insert(rel.clone());
            failed.push((rel, err));
        }
    }
    Ok(failed_sources)
}

fn run_script(python: &Utf8Path, options: &[&str], stdin: &str) -> Result<Answer> {
    let sh = xshell::Shell::new().context("reading the current folder")?;
    let output = xshell::cmd!(sh, "{python} -I -B -S {options...} -c {SCRIPT}")
        .env("PYTHONHASHSEED", "0")
        .stdin(stdin)
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not start {python} to compile bytecode"))?;
    if !output.status.success() {
        bail!(
            "{python} exited with {} while compiling bytecode: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "{python} printed something other than the expected JSON while compiling bytecode: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> globset::GlobSet {
        globset::GlobSet::empty()
    }

    #[test]
    fn pyc_paths_per_mode() {
        let src = Utf8Path::new("python/lib/python3.11/site-packages/pkg/mod.py");
        assert_eq!(
            pyc_path(src, Mode::Both, "3.11", 0, false).unwrap(),
            "python/lib/python3.11/site-packages/pkg/__pycache__/mod.cpython-311.pyc"
        );
        assert_eq!(
            pyc_path(src, Mode::Sourceless, "3.11", 2, false).unwrap(),
            "python/lib/python3.11/site-packages/pkg/mod.pyc"
        );
        assert_eq!(
            pyc_path(src, Mode::Sourceless, "3.11", 1, true).unwrap(),
            "python/lib/python3.11/site-packages/pkg/__pycache__/mod.cpython-311.opt-1.pyc"
        );
        assert_eq!(pyc_path(src, Mode::None, "3.11", 0, false), None);
    }

    #[test]
    fn plan_covers_stdlib_and_site_packages_and_honours_keep_source() {
        let files: Vec<Utf8PathBuf> = [
            "python/lib/python3.11/os.py",
            "python/lib/python3.11/site-packages/a/b.py",
            "python/lib/python3.11/site-packages/a/data.json",
            "python/bin/python3.11",
        ]
        .map(Utf8PathBuf::from)
        .to_vec();
        let mut keep = globset::GlobSetBuilder::new();
        keep.add(globset::Glob::new("python/lib/python3.11/os.py").unwrap());
        let jobs = plan(&files, Mode::Sourceless, "3.11", 0, &keep.build().unwrap());
        assert_eq!(jobs.len(), 2);
        assert!(!jobs[0].drop_source);
        assert_eq!(
            jobs[1].dfile,
            "/opt/python/lib/python3.11/site-packages/a/b.py"
        );
        assert!(jobs[1].drop_source);
        assert!(plan(&files, Mode::None, "3.11", 0, &none()).is_empty());
    }

    /// Needs the host CPython 3.11 this machine has; skipped elsewhere.
    #[test]
    fn without_debug_ranges_the_pyc_is_smaller_and_has_no_columns() {
        let python = Utf8Path::new("/root/.pyenv/versions/3.11.7/bin/python3.11");
        if !python.exists() {
            eprintln!("skipped: no host CPython 3.11");
            return;
        }
        let source =
            "def f(a, b):\n    return {'sum': a + b, 'items': [x * 2 for x in range(a)]}\n";
        let mut sizes = Vec::new();
        for debug_ranges in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let stage = Utf8Path::from_path(tmp.path()).unwrap();
            let sp = stage.join("python/lib/python3.11/site-packages");
            fs_err::create_dir_all(&sp).unwrap();
            fs_err::write(sp.join("m.py"), source).unwrap();
            let files = vec![Utf8PathBuf::from(
                "python/lib/python3.11/site-packages/m.py",
            )];
            let jobs = plan(&files, Mode::Sourceless, "3.11", 0, &none());
            let flags = Flags {
                optimize: 0,
                debug_ranges,
            };
            assert_eq!(compile(stage, &jobs, python, flags, None).unwrap().files, 1);
            let pyc = sp.join("m.pyc");
            sizes.push(fs_err::metadata(&pyc).unwrap().len());
            // The module still runs; columns are there or not, lines always.
            let script = "import marshal, sys; c = marshal.loads(open(sys.argv[1], 'rb').read()[16:]); \
                          f = [k for k in c.co_consts if hasattr(k, 'co_positions')][0]; \
                          p = list(f.co_positions()); \
                          print(all(x[0] is not None for x in p), any(x[2] is not None for x in p))";
            let out = duct::cmd!(python.as_std_path(), "-I", "-c", script, pyc.as_str())
                .read()
                .unwrap();
            let expected = if debug_ranges {
                "True True"
            } else {
                "True False"
            };
            assert_eq!(out.trim(), expected, "debug_ranges = {debug_ranges}");
        }
        assert!(sizes[1] < sizes[0], "{sizes:?}");
    }

    /// Needs the host CPython 3.11 this machine has; skipped elsewhere.
    #[test]
    fn compiles_unchecked_hash_reproducibly_and_sourceless_imports() {
        let python = Utf8Path::new("/root/.pyenv/versions/3.11.7/bin/python3.11");
        if !python.exists() {
            eprintln!("skipped: no host CPython 3.11");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let stage = Utf8Path::from_path(tmp.path()).unwrap();
        let sp = stage.join("python/lib/python3.11/site-packages");
        fs_err::create_dir_all(sp.join("pkg/__pycache__")).unwrap();
        fs_err::write(
            sp.join("pkg/__init__.py"),
            "X = frozenset({'a', 'b', 'c'})\n",
        )
        .unwrap();
        fs_err::write(sp.join("pkg/bad.py"), "def (:\n").unwrap();
        fs_err::write(sp.join("pkg/__pycache__/stale.cpython-311.pyc"), "old").unwrap();
        let files = vec![
            Utf8PathBuf::from("python/lib/python3.11/site-packages/pkg/__init__.py"),
            Utf8PathBuf::from("python/lib/python3.11/site-packages/pkg/bad.py"),
        ];
        let jobs = plan(&files, Mode::Sourceless, "3.11", 0, &none());
        let done = compile(stage, &jobs, python, Flags::default(), None).unwrap();
        assert_eq!(done.files, 1);
        assert_eq!(done.failed.len(), 1);
        assert_eq!(done.stale_removed, 1);
        assert!(sp.join("pkg/bad.py").exists(), "a failed source is kept");
        let pyc = fs_err::read(sp.join("pkg/__init__.pyc")).unwrap();
        // PEP 552 flags: 0b01 = hash-based, 0b10 clear = unchecked.
        assert_eq!(&pyc[4..8], &[1, 0, 0, 0]);
        assert!(!sp.join("pkg/__init__.py").exists());
        let out = duct::cmd!(
            python.as_std_path(),
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import pkg; print(pkg.__file__)",
            &sp
        )
        .read()
        .unwrap();
        assert!(out.ends_with("pkg/__init__.pyc"), "{out}");
    }
}

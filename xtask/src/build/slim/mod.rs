//! Slimming a staged layer as its profile says: pruning rules, bytecode, stripping and
//! the optional `site-packages.zip`. Each step lives in its own module; this one sequences them.

pub mod bytecode;
pub mod prune;
pub mod sitezip;
pub mod strip;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::plan::ProfilePlan;
use crate::build::report::Removed;
use crate::build::runtime::RuntimeInfo;
use crate::build::slim::prune::{Protections, Refusal, Rule};
use crate::core::Layout;
use crate::core::Owners;
use crate::spec::{Arch, Spec};
use crate::util::progress::Progress;
use crate::util::zipinfo::EntryStat;

/// What the slimming steps may look at.
pub struct SlimContext<'a> {
    pub spec: &'a Spec,
    pub arch: Arch,
    /// The profile the plan chose, with its rules.
    pub profile: &'a ProfilePlan,
    /// The staged layer: holds `python/`.
    pub stage: &'a Utf8Path,
    pub runtime: &'a RuntimeInfo,
    /// `python/lib/python3.X/site-packages`, relative to `stage`.
    pub site_packages: &'a Utf8Path,
    pub owners: &'a Owners,
    /// Returns an interpreter that runs on this machine, of the target's minor version
    /// (fetched on first call for a cross build).
    pub host_python: &'a dyn Fn() -> Result<Utf8PathBuf>,
    pub progress: &'a Progress,
    /// Where bytecode, stripped files and zip entries of earlier builds are kept.
    pub cache: Option<&'a crate::build::cache::StageCache>,
}

/// One ELF file stripping changed or left alone.
#[derive(Debug, Clone)]
pub struct StripNote {
    pub path: Utf8PathBuf,
    pub before: u64,
    /// `None` when the file was left as it was (a note says why).
    pub after: Option<u64>,
}

/// What slimming did, for the report.
#[derive(Debug, Default)]
pub struct Slimmed {
    pub profile: String,
    pub removed: Vec<Removed>,
    pub notes: Vec<String>,
    /// Files a rule tried to delete but may not.
    pub refused: Vec<Refusal>,
    /// Unpacked bytes of each distribution (by name as installed) before slimming.
    pub bytes_before: BTreeMap<String, u64>,
    pub stripped: Vec<StripNote>,
    /// The entries of `site-packages.zip`, as layer paths under site-packages (for the report).
    pub zip_entries: Vec<EntryStat>,
    /// The layer path of `site-packages.zip`, when written.
    pub site_zip: Option<Utf8PathBuf>,
    /// Distributions a rule removed whole (their METADATA went with them).
    pub removed_distributions: Vec<crate::core::RemovedDistribution>,
}

impl Slimmed {
    /// The layer zip's entries with `site-packages.zip` replaced by what it holds, so that the
    /// report counts each distribution's files wherever they ended up.
    pub fn stats_for_report(
        &self,
        stats: &crate::util::zipinfo::ZipStats,
    ) -> crate::util::zipinfo::ZipStats {
        let mut out = stats.clone();
        if let Some(zip) = &self.site_zip {
            out.entries.retain(|e| &e.path != zip);
            out.entries.extend(self.zip_entries.iter().cloned());
        }
        out
    }

    /// Moves what slimming did into the report.
    pub fn fill(self, report: &mut crate::build::report::Report) {
        report.profile = self.profile;
        report.removed = self.removed;
        report.removed_distributions = self.removed_distributions;
        report.notes.extend(self.notes);
        if self.site_zip.is_some() {
            report.notes.push(
                "per-distribution sizes count the entries inside site-packages.zip; the unpacked total counts the zip as one file, as Lambda unpacks it".into(),
            );
        }
        report.refused = self
            .refused
            .into_iter()
            .map(|r| crate::build::report::Refused {
                rule: r.rule,
                path: r.path,
                why: r.why,
            })
            .collect();
        report.stripped = self
            .stripped
            .into_iter()
            .map(|s| crate::build::report::StrippedFile {
                path: s.path,
                before: s.before,
                after: s.after,
            })
            .collect();
        for p in &mut report.packages {
            p.bytes_before = self.bytes_before.get(&p.name).copied();
        }
    }
}

/// Begins slimming: says which profile applies and records each distribution's size before.
pub fn start(ctx: &SlimContext<'_>) -> Slimmed {
    let profile = ctx.profile;
    let mut out = Slimmed {
        profile: profile.name.clone(),
        ..Slimmed::default()
    };
    ctx.progress
        .line(format!("profile {}: {}", profile.name, profile.description));
    for (rel, &i) in &ctx.owners.files {
        if let Ok(meta) = fs_err::symlink_metadata(ctx.stage.join(ctx.site_packages).join(rel)) {
            *out.bytes_before
                .entry(ctx.owners.dists[i].0.clone())
                .or_default() += meta.len();
        }
    }
    out
}

fn layout(ctx: &SlimContext<'_>) -> Layout {
    Layout {
        xy: ctx.runtime.xy.clone(),
    }
}

/// Step "prune": the profile's rules, planned per file (`prune::plan`), then carried out.
pub fn prune_step(ctx: &SlimContext<'_>, out: &mut Slimmed) -> Result<()> {
    let defs = &ctx.profile.rule_defs;
    if defs.is_empty() {
        return Ok(());
    }
    let rules_file = &ctx.profile.rules_data;
    let layout = layout(ctx);
    let rules: Vec<Rule> = defs
        .iter()
        .map(|d| Rule::compile(d, &layout))
        .collect::<Result<_>>()?;
    let mut startup = rules_file.protect.startup_modules.clone();
    startup.extend(startup_modules(&(ctx.host_python)()?)?);
    let needed = interpreter_files(ctx.stage, &ctx.runtime.exe)?;
    let protections = Protections::new(
        &layout,
        &rules_file.protect.paths,
        &startup,
        &needed,
        &ctx.spec.prune.keep,
    )?;
    let entries = crate::build::slim::prune::entries(ctx.stage, ctx.owners)?;
    let make_plan = || {
        let mut plan = crate::build::slim::prune::plan(&entries, &rules, &protections);
        crate::build::slim::prune::protect_imports_cached(
            &mut plan,
            &entries,
            &rules,
            &layout.site_packages(),
            &|p| fs_err::read_to_string(ctx.stage.join(p)).ok(),
            ctx.cache,
        );
        plan
    };
    // Everything `plan` and `protect_imports` decide by, besides the tree itself.
    let settings = format!(
        "{defs:?}\n{:?}\n{startup:?}\n{needed:?}\n{:?}\n{}",
        rules_file.protect.paths, ctx.spec.prune.keep, layout.xy
    );
    let plan = crate::build::slim::prune::plancache::cached(
        ctx.cache,
        &entries,
        &layout.site_packages(),
        &|p| crate::util::digest::sha256(&ctx.stage.join(p)).ok(),
        settings.as_bytes(),
        make_plan,
    )?;
    crate::build::slim::prune::execute(ctx.stage, &plan, &rules)?;
    out.removed_distributions = removed_distributions(ctx.owners, &plan, &rules);
    for (rule, files, bytes) in &plan.totals {
        if *files > 0 {
            out.removed.push(Removed {
                rule: rule.clone(),
                files: *files,
                bytes: *bytes,
            });
        }
    }
    for rule in &plan.unmatched {
        out.notes.push(format!("rule `{rule}` matched nothing"));
    }
    for (rule, path) in &plan.kept {
        out.notes.push(format!(
            "kept by layer.toml [prune] keep: {path} (rule `{rule}`)"
        ));
    }
    out.refused = plan.refused;
    ctx.progress.line(format!(
        "pruned {} files ({}) by {} rules; {} protected files refused",
        plan.delete.len(),
        crate::util::fmt::mb(out.removed.iter().map(|r| r.bytes).sum()),
        rules.len(),
        out.refused.len()
    ));
    Ok(())
}

/// Step "bytecode": compiles what the profile's mode asks for (`bytecode::plan`), with an
/// interpreter of this machine.
pub fn bytecode_step(ctx: &SlimContext<'_>, out: &mut Slimmed) -> Result<()> {
    let profile = &ctx.profile.settings;
    let layout = layout(ctx);
    materialize_linked_sources(ctx.stage)?;
    let files: Vec<Utf8PathBuf> = crate::util::files_under(ctx.stage)?;
    let mut keep_source = globset::GlobSetBuilder::new();
    for g in ctx
        .profile
        .rules_data
        .sources
        .keep
        .iter()
        .chain(&ctx.spec.prune.keep_source)
    {
        keep_source.add(
            globset::Glob::new(&format!("{}/{g}", layout.site_packages()))
                .with_context(|| format!("keep-source glob `{g}`"))?,
        );
    }
    let jobs = crate::build::slim::bytecode::plan(
        &files,
        profile.bytecode,
        &layout.xy,
        profile.optimize,
        &keep_source.build()?,
    );
    let compiled = if jobs.is_empty() {
        crate::build::slim::bytecode::compile(
            ctx.stage,
            &[],
            Utf8Path::new("python3"),
            crate::build::slim::bytecode::Flags::default(),
            None,
        )?
    } else {
        let python = (ctx.host_python)()?;
        ctx.progress
            .line(format!("compiling {} modules with {python}", jobs.len()));
        crate::build::slim::bytecode::compile(
            ctx.stage,
            &jobs,
            &python,
            crate::build::slim::bytecode::Flags {
                optimize: profile.optimize,
                debug_ranges: profile.debug_ranges,
            },
            ctx.cache,
        )?
    };
    if compiled.cache_changed > 0 {
        out.notes.push(format!(
            "{} of the stage cache's .pyc files had been changed since they were stored (a file of a built tree edited in place?); compiled again",
            compiled.cache_changed
        ));
    }
    if compiled.stale_removed > 0 {
        out.notes.push(format!(
            "removed {} .pyc files the runtime or wheels brought (replaced by unchecked-hash bytecode)",
            compiled.stale_removed
        ));
    }
    if !compiled.failed.is_empty() {
        let shown: Vec<String> = compiled
            .failed
            .iter()
            .take(5)
            .map(|(p, e)| format!("{p} ({e})"))
            .collect();
        out.notes.push(format!(
            "{} sources did not compile and are kept as sources: {}{}",
            compiled.failed.len(),
            shown.join("; "),
            if compiled.failed.len() > 5 {
                "; ..."
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// Step "strip": debug symbols out of the layer's ELF files, when the profile says so.
pub fn strip_step(ctx: &SlimContext<'_>, out: &mut Slimmed) -> Result<()> {
    if !ctx.profile.strip {
        return Ok(());
    }
    for s in crate::build::slim::strip::strip_tree(ctx.stage, ctx.arch, ctx.cache)? {
        let note = match s.outcome {
            crate::build::slim::strip::Outcome::Stripped { before, after } => StripNote {
                path: s.path,
                before,
                after: Some(after),
            },
            crate::build::slim::strip::Outcome::Kept(why) => {
                out.notes
                    .push(format!("not stripped, left as it was: {} ({why})", s.path));
                StripNote {
                    before: fs_err::metadata(ctx.stage.join(&s.path))?.len(),
                    path: s.path,
                    after: None,
                }
            }
        };
        out.stripped.push(note);
    }
    Ok(())
}

/// Standard-library modules loaded by `python -c pass` (with `site`): what start-up needs.
fn startup_modules(python: &Utf8Path) -> Result<Vec<String>> {
    let sh = xshell::Shell::new().context("reading the current folder")?;
    let script = "import sys, json; print(json.dumps(sorted(sys.modules)))";
    let out = xshell::cmd!(sh, "{python} -I -B -c {script}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not start {python} to list start-up modules"))?;
    if !out.status.success() {
        bail!(
            "{python} exited with {} while listing start-up modules: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{python} printed bad JSON while listing start-up modules"))
}

/// The interpreter and the shared libraries of the layer it needs (DT_NEEDED found in
/// `python/lib`, links followed), as layer paths.
fn interpreter_files(stage: &Utf8Path, exe: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let exe_rel = Utf8Path::new("python").join(exe);
    let bytes = fs_err::read(stage.join(&exe_rel))?;
    goblin::elf::Elf::parse(&bytes).with_context(|| format!("{exe_rel} is not an ELF file"))?;
    let libs = crate::util::elf::needed_closure(
        stage,
        Utf8Path::new("python/lib"),
        std::slice::from_ref(&exe_rel),
        crate::util::elf::Depth::Direct,
    )?;
    Ok(std::iter::once(exe_rel).chain(libs).collect())
}

/// The distributions whose METADATA the plan deletes: a rule removed them whole, so
/// `importlib.metadata` must no longer find them, and `verify` must not look for them.
fn removed_distributions(
    owners: &Owners,
    plan: &crate::build::slim::prune::Plan,
    rules: &[Rule],
) -> Vec<crate::core::RemovedDistribution> {
    let mut out = Vec::new();
    for (rel, &index) in &owners.files {
        if rel.file_name() != Some("METADATA")
            || !rel
                .parent()
                .is_some_and(|p| p.as_str().ends_with(".dist-info"))
        {
            continue;
        }
        let layer_path = owners.site_packages.join(rel);
        if let Some(&rule) = plan.delete.get(&layer_path) {
            let (name, version, _) = &owners.dists[index];
            out.push(crate::core::RemovedDistribution {
                name: name.clone(),
                version: version.clone(),
                rule: rules.get(rule).map(|r| r.name.clone()).unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Replaces each link to a `.py` file by a copy of it. Debian's stdlib links
/// `_sysconfigdata__linux_<arch>.py` to the multiarch name: a sourceless profile would leave
/// that link dangling (its target becomes `.pyc`), and `both` would compile nothing for it.
fn materialize_linked_sources(stage: &Utf8Path) -> Result<()> {
    for entry in crate::util::walk(stage)? {
        if !entry.file_type.is_symlink() || entry.rel.extension() != Some("py") {
            continue;
        }
        let link = stage.join(&entry.rel);
        // Only links that resolve to a file inside the layer; the runtime refuses others.
        let Ok(target) = fs_err::canonicalize(&link) else {
            continue;
        };
        let Ok(stage_real) = fs_err::canonicalize(stage) else {
            continue;
        };
        if !target.starts_with(&stage_real) || !target.is_file() {
            continue;
        }
        let bytes = fs_err::read(&target)?;
        fs_err::remove_file(&link)?;
        fs_err::write(&link, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::slim::bytecode::Mode;
    use crate::spec::profiles::{ProfilesFile, DEFAULT_PROFILE};
    use crate::spec::rules::Level;

    #[test]
    fn the_repository_profiles_parse() {
        let path = crate::core::project_root().join("layer/profiles.toml");
        let p = ProfilesFile::load(&path).unwrap();
        let standard = p.get("standard", &path).unwrap();
        assert!(standard.levels.is_empty() && standard.bytecode == Mode::Both && !standard.strip);
        let slim = p.get("slim", &path).unwrap();
        assert_eq!(slim.bytecode, Mode::Sourceless);
        assert!(p.get("optimized", &path).unwrap().levels == [Level::Safe]);
        assert!(p.get(DEFAULT_PROFILE, &path).is_ok());
        assert!(p
            .get("nope", &path)
            .unwrap_err()
            .to_string()
            .contains("standard"));
    }

    #[test]
    fn optimize_needs_sourceless() {
        let tmp = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(tmp.path()).unwrap().join("p.toml");
        fs_err::write(
            &path,
            "[profile.x]\ndescription='d'\nlevels=[]\nbytecode='both'\noptimize=1\n",
        )
        .unwrap();
        let err = ProfilesFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("sourceless"), "{err}");
    }

    #[test]
    fn links_to_sources_become_copies() {
        let tmp = tempfile::tempdir().unwrap();
        let stage = Utf8Path::from_path(tmp.path()).unwrap();
        let lib = stage.join("python/lib/python3.11");
        fs_err::create_dir_all(&lib).unwrap();
        fs_err::write(
            lib.join("_sysconfigdata__aarch64-linux-gnu.py"),
            "build_time_vars = {}\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "_sysconfigdata__aarch64-linux-gnu.py",
            lib.join("_sysconfigdata__linux_aarch64-linux-gnu.py"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/hostname", lib.join("outside.py")).unwrap();
        materialize_linked_sources(stage).unwrap();
        let linked = lib.join("_sysconfigdata__linux_aarch64-linux-gnu.py");
        assert!(linked.symlink_metadata().unwrap().file_type().is_file());
        assert_eq!(
            fs_err::read_to_string(linked).unwrap(),
            "build_time_vars = {}\n"
        );
        assert!(
            lib.join("outside.py")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink(),
            "links leaving the layer are not followed"
        );
    }
}

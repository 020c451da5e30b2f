//! Step "site-packages zip" of a build: the plans of `sitezip` and `sitezip::stdlib` made
//! for the staged layer, written, and described in the report's notes.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::slim::{layout, SlimContext, Slimmed};
use crate::util::zipinfo::EntryStat;

/// Step "site-packages zip": pure-Python distributions into `site-packages.zip`, when the
/// profile says so (`sitezip::plan` decides which stay out), and the standard library's
/// bytecode into `python3X.zip`, when it says that.
pub fn site_packages_zip_step(ctx: &SlimContext<'_>, out: &mut Slimmed) -> Result<()> {
    if ctx.profile.site_packages_zip {
        site_zip(ctx, out)?;
    }
    if ctx.profile.stdlib_zip {
        stdlib_zip(ctx, out)?;
    }
    Ok(())
}

fn site_zip(ctx: &SlimContext<'_>, out: &mut Slimmed) -> Result<()> {
    let layout = layout(ctx);
    let sp = ctx.stage.join(ctx.site_packages);
    let files: Vec<Utf8PathBuf> = crate::util::files_under(&sp)?;
    let names: Vec<String> = ctx.owners.dists.iter().map(|d| d.0.clone()).collect();
    let owner = |f: &Utf8Path| {
        ctx.owners
            .files
            .get(f)
            .map(|&i| crate::python::wheel::normalize(&names[i]))
    };
    let section = &ctx.profile.rules_data.site_zip;
    let mut plan = super::plan(&files, &owner, &section.keep_out);
    if section.split_modules {
        use super::split;
        let whole: Vec<String> = section
            .keep_out
            .iter()
            .filter(|k| !k.split)
            .map(|k| crate::python::wheel::normalize(&k.distribution))
            .collect();
        let allowed = |d: &str| plan.kept_out.contains_key(d) && !whole.iter().any(|w| w == d);
        let candidates = split::candidates(&files, &owner, &allowed);
        let decided = split::decide(&sp, candidates, &section.split_unless_names)?;
        plan.add_split(decided);
    }
    let dest_rel = layout.stdlib().join(super::FILE_NAME);
    let entries = super::write(&sp, &ctx.stage.join(&dest_rel), &plan, ctx.cache)?;
    for (dist, why) in &plan.kept_out {
        out.notes
            .push(format!("kept out of site-packages.zip: {dist}: {why}"));
    }
    for (dist, (moved, stayed, names)) in &plan.split.by_distribution {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut note = if *moved == 0 {
            format!("site-packages.zip holds no module of {dist}")
        } else {
            format!("site-packages.zip also holds {moved} plain modules of {dist}")
        };
        if *stayed > 0 {
            note += &format!(
                "; {stayed} stay unpacked because their bytecode names {}",
                names.join(", ")
            );
        }
        out.notes.push(note);
    }
    out.zip_entries = entries
        .into_iter()
        .map(|e| EntryStat {
            path: ctx.site_packages.join(&e.path),
            ..e
        })
        .collect();
    out.site_zip = Some(dest_rel);
    Ok(())
}

/// The standard library's bytecode into `python/lib/python3X.zip` (`sitezip::stdlib`).
fn stdlib_zip(ctx: &SlimContext<'_>, out: &mut Slimmed) -> Result<()> {
    use super::{stdlib, write_zip};
    let layout = layout(ctx);
    let dir = ctx.stage.join(layout.stdlib());
    let files = stdlib::candidates(&dir)?;
    let names = &ctx.profile.rules_data.site_zip.split_unless_names;
    let plan = stdlib::plan(
        &files,
        &ctx.profile.rules_data.stdlib_zip.keep,
        &mut stdlib::reader(&dir, names),
    )?;
    let dest = ctx
        .stage
        .join(layout.python())
        .join("lib")
        .join(stdlib::file_name(&layout.xy));
    let zipped: Vec<(Utf8PathBuf, String)> = plan
        .zipped
        .iter()
        .map(|f| (f.clone(), f.to_string()))
        .collect();
    write_zip(&dir, &dest, &zipped, ctx.cache)?;
    crate::util::remove_files_and_empty_dirs(&dir, &plan.zipped, |path| {
        format!("removing {path}, now in {dest}")
    })?;
    let stayed: Vec<String> = plan
        .stayed
        .iter()
        .filter(|(_, why)| why.contains("names"))
        .map(|(top, _)| top.trim_end_matches(".pyc").to_owned())
        .collect();
    out.notes.push(format!(
        "{} holds {} standard-library files; {} modules and packages stay in the folder \
         (bytecode naming files or resources: {})",
        stdlib::file_name(&layout.xy),
        plan.zipped.len(),
        plan.stayed.len(),
        stayed.join(", ")
    ));
    Ok(())
}

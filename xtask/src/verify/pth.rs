//! `.pth` files: `site` executes every line of one that starts with `import`, at every start
//! of the interpreter, before any of the function's code. The compromised litellm releases
//! 1.82.7 and 1.82.8 used exactly this to run a credential stealer. Verify lists every `.pth`
//! file of the layer and fails on one that executes code unless it is known to be benign.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::spec::advisories::AdvisoriesFile;
use crate::spec::Spec;
use crate::verify::Check;

/// One `.pth` file of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PthFile {
    /// Relative to the layer root.
    pub path: Utf8PathBuf,
    /// The first line that executes code, when one does.
    pub executes: Option<String>,
    pub sha256: String,
}

/// The first line `site` would execute: one starting with `import` (after optional blanks,
/// stricter than `site`, which needs `import` at column 0 and a blank after it).
pub fn executing_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("import"))
}

/// A `.pth` file's verdict, from its layer path and content.
pub fn inspect(path: Utf8PathBuf, bytes: &[u8]) -> PthFile {
    let text = String::from_utf8_lossy(bytes);
    PthFile {
        executes: executing_line(&text).map(str::to_owned),
        sha256: crate::util::sha256_hex(bytes),
        path,
    }
}

/// Every `.pth` file under `root`, sorted by path.
pub fn find(root: &Utf8Path) -> Result<Vec<PthFile>> {
    let mut out = Vec::new();
    for w in crate::util::walk(root)? {
        if !w.file_type.is_file() || w.rel.extension() != Some("pth") {
            continue;
        }
        let bytes = fs_err::read(root.join(&w.rel)).context("reading a .pth file")?;
        out.push(inspect(w.rel, &bytes));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Why an executing `.pth` file is allowed, if it is: named in `allow` (the spec's
/// `[verify] allow-pth`), or in advisories.toml's `[[benign-pth]]` (matching the content's
/// sha256 when one is given).
pub fn allowed(file: &PthFile, allow: &[String], data: &AdvisoriesFile) -> Option<String> {
    let name = file.path.file_name().unwrap_or_default();
    if allow.iter().any(|a| a == name) {
        return Some("allowed by the spec's [verify] allow-pth".into());
    }
    data.benign_pth
        .iter()
        .find(|b| b.file == name && b.sha256.as_ref().is_none_or(|s| s == &file.sha256))
        .map(|b| match &b.distribution {
            Some(d) => format!("known benign (advisories.toml, from {d}): {}", b.reason),
            None => format!("known benign (advisories.toml): {}", b.reason),
        })
}

/// The check: every `.pth` file listed; fails naming each that executes code unallowed.
pub fn check(spec: &Spec, root: &Utf8Path) -> Result<Check> {
    let files = find(root)?;
    let data = AdvisoriesFile::for_spec(spec)?;
    let mut ok = true;
    let mut lines = Vec::new();
    for f in &files {
        let Some(line) = &f.executes else {
            lines.push(format!("/opt/{} (paths only)", f.path));
            continue;
        };
        match allowed(f, &spec.verify.allow_pth, &data) {
            Some(why) => lines.push(format!("/opt/{} executes `{line}`: {why}", f.path)),
            None => {
                ok = false;
                lines.push(format!(
                    "/opt/{} EXECUTES CODE at every interpreter start: `{line}`; not known to be benign (name it in [verify] allow-pth if it is)",
                    f.path
                ));
            }
        }
    }
    let detail = if lines.is_empty() {
        "no .pth files".to_owned()
    } else {
        lines.join("; ")
    };
    Ok(Check::new("static: .pth files", ok, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_line_executes_and_paths_do_not() {
        assert_eq!(
            executing_line("/opt/x\n  import os; os.system('x')\n"),
            Some("import os; os.system('x')")
        );
        assert_eq!(executing_line("../lib\n# import nothing\n"), None);
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let sp = root.join("python/lib/python3.11/site-packages");
        fs_err::create_dir_all(&sp).unwrap();
        fs_err::write(sp.join("evil.pth"), "import os\n").unwrap();
        fs_err::write(sp.join("paths.pth"), "extra\n").unwrap();
        fs_err::write(sp.join("distutils-precedence.pth"), "import os; x=1\n").unwrap();
        let mut spec = Spec::load(&crate::core::project_root().join("layer/layer.toml")).unwrap();
        let c = check(&spec, root).unwrap();
        assert!(!c.ok);
        assert!(c.detail.contains("evil.pth EXECUTES CODE"), "{}", c.detail);
        assert!(c.detail.contains("paths.pth (paths only)"));
        assert!(c
            .detail
            .contains("distutils-precedence.pth executes `import os; x=1`: known benign"));
        spec.verify.allow_pth = vec!["evil.pth".into()];
        assert!(check(&spec, root).unwrap().ok);
    }
}

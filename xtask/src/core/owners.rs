//! Which distribution each installed file belongs to.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

/// Which distribution each site-packages file belongs to.
pub struct Owners {
    /// `python/lib/python3.X/site-packages/`, relative to the layer root.
    pub site_packages: Utf8PathBuf,
    /// Path relative to site-packages -> index into `dists`.
    pub files: BTreeMap<Utf8PathBuf, usize>,
    pub dists: Vec<(String, String, String)>,
}

impl Owners {
    pub fn new(site_packages: Utf8PathBuf) -> Owners {
        Owners {
            site_packages,
            files: BTreeMap::new(),
            dists: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, version: &str, wheel: &str, files: &[Utf8PathBuf]) {
        let index = self.dists.len();
        self.dists
            .push((name.to_owned(), version.to_owned(), wheel.to_owned()));
        for f in files {
            self.files.insert(f.clone(), index);
        }
    }

    /// The distribution owning a layer path, `None` for the runtime.
    pub fn owner(&self, layer_path: &Utf8Path) -> Option<usize> {
        let rel = layer_path.strip_prefix(&self.site_packages).ok()?;
        if let Some(i) = self.files.get(rel) {
            return Some(*i);
        }
        // Bytecode that was compiled after install belongs to its source's distribution.
        let rel_str = rel.as_str();
        if rel_str.ends_with(".pyc") {
            let source = source_of_pyc(rel)?;
            return self.files.get(&source).copied();
        }
        None
    }
}

/// `pkg/__pycache__/mod.cpython-311.pyc` and `pkg/mod.pyc` both belong to `pkg/mod.py`.
pub fn source_of_pyc(rel: &Utf8Path) -> Option<Utf8PathBuf> {
    let file = rel.file_name()?;
    let parent = rel.parent().unwrap_or(Utf8Path::new(""));
    if parent.file_name() == Some("__pycache__") {
        let stem = file.split('.').next()?;
        Some(
            parent
                .parent()
                .unwrap_or(Utf8Path::new(""))
                .join(format!("{stem}.py")),
        )
    } else {
        Some(parent.join(format!("{}.py", file.strip_suffix(".pyc")?)))
    }
}

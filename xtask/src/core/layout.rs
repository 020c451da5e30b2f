//! Where things are in a layer, as paths relative to its root.

use camino::Utf8PathBuf;

/// Where things are in a staged layer, as paths relative to its root.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `3.11`.
    pub xy: String,
}

impl Layout {
    pub fn python(&self) -> Utf8PathBuf {
        "python".into()
    }
    pub fn stdlib(&self) -> Utf8PathBuf {
        format!("python/lib/python{}", self.xy).into()
    }
    pub fn site_packages(&self) -> Utf8PathBuf {
        self.stdlib().join("site-packages")
    }
}

//! Where a build writes what: one folder per layer, the same names everywhere.

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::core::Arch;

/// Every output of one build, under its output folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerPaths {
    /// The output folder (`--out`, default `target/layer/<arch>/`).
    pub out: Utf8PathBuf,
    /// `<name>-<arch>.zip`: the layer.
    pub zip: Utf8PathBuf,
    /// `tree/`: the layer unpacked, exactly what the zip holds.
    pub tree: Utf8PathBuf,
    /// `report.json`: the report for machines.
    pub report_json: Utf8PathBuf,
    /// `layer-size-report.txt`: the report for people.
    pub report_text: Utf8PathBuf,
    /// `trace-<arch>.json`: what the minimization workload touched (minimizing builds only).
    pub trace: Utf8PathBuf,
}

impl LayerPaths {
    pub fn new(out: &Utf8Path, name: &str, arch: Arch) -> LayerPaths {
        LayerPaths {
            out: out.to_owned(),
            zip: out.join(format!("{name}-{arch}.zip")),
            tree: out.join("tree"),
            report_json: out.join("report.json"),
            report_text: out.join("layer-size-report.txt"),
            trace: out.join(format!("trace-{arch}.json")),
        }
    }

    /// The paths of a build into the default folder, `<target>/layer/<arch>/`.
    pub fn default_for(name: &str, arch: Arch) -> LayerPaths {
        LayerPaths::new(&default_out_dir(arch), name, arch)
    }
}

/// `<target>/layer/<arch>/`, where `cargo xtask layer` writes when `--out` is not given.
pub fn default_out_dir(arch: Arch) -> Utf8PathBuf {
    crate::util::target_dir().join("layer").join(arch.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_layer_and_arch() {
        let p = LayerPaths::new(Utf8Path::new("/o"), "litellm", Arch::Arm64);
        assert_eq!(p.zip, "/o/litellm-arm64.zip");
        assert_eq!(p.tree, "/o/tree");
        assert_eq!(p.report_json, "/o/report.json");
        assert_eq!(p.report_text, "/o/layer-size-report.txt");
        assert_eq!(p.trace, "/o/trace-arm64.json");
    }
}

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

/// The workspace root, found from this crate's manifest directory.
pub fn project_root() -> Utf8PathBuf {
    let dir = Utf8Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_owned()
}

/// The workspace's target directory as cargo reports it (`cargo metadata`), so that
/// `CARGO_TARGET_DIR` and `build.target-dir` are respected; asked once per process. Where cargo
/// cannot be run (a copied binary), `CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir() -> Utf8PathBuf {
    static DIR: std::sync::OnceLock<Utf8PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        cargo_metadata::MetadataCommand::new()
            .manifest_path(project_root().join("Cargo.toml"))
            .no_deps()
            .exec()
            .map(|m| m.target_directory)
            .unwrap_or_else(|_| target_dir_without_cargo())
    })
    .clone()
}

fn target_dir_without_cargo() -> Utf8PathBuf {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => {
            let dir = Utf8PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                project_root().join(dir)
            }
        }
        _ => project_root().join("target"),
    }
}

/// Where downloads are cached, by content hash: `$LAYER_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/lambda-python-layer`, else `~/.cache/lambda-python-layer`.
pub fn cache_dir() -> Utf8PathBuf {
    if let Ok(dir) = std::env::var("LAYER_CACHE_DIR") {
        if !dir.is_empty() {
            return Utf8PathBuf::from(dir);
        }
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .ok()
        .filter(|d| !d.is_empty())
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".to_owned());
            Utf8PathBuf::from(home).join(".cache")
        });
    base.join("lambda-python-layer")
}

/// `<target>/layer/<arch>/`, where `cargo xtask layer` writes when `--out` is not given.
pub fn default_out_dir(arch: Arch) -> Utf8PathBuf {
    target_dir().join("layer").join(arch.as_str())
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

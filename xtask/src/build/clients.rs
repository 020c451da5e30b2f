//! Step "clients": the worker protocol's Python side and the Node.js package, written into the
//! layer from the copies compiled into this tool, so that the layer's clients and the
//! `pythonexec-rs` a function links speak the same protocol version.

use anyhow::{Context, Result};
use camino::Utf8Path;

/// The Node.js package's files, as `clients/node/pythonexec/package.json` lists them.
const NODE_PACKAGE: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../../clients/node/pythonexec/package.json"),
    ),
    (
        "index.mjs",
        include_str!("../../../clients/node/pythonexec/index.mjs"),
    ),
    (
        "index.d.ts",
        include_str!("../../../clients/node/pythonexec/index.d.ts"),
    ),
    (
        "README.md",
        include_str!("../../../clients/node/pythonexec/README.md"),
    ),
    (
        "lib/errors.mjs",
        include_str!("../../../clients/node/pythonexec/lib/errors.mjs"),
    ),
    (
        "lib/locate.mjs",
        include_str!("../../../clients/node/pythonexec/lib/locate.mjs"),
    ),
    (
        "lib/worker.mjs",
        include_str!("../../../clients/node/pythonexec/lib/worker.mjs"),
    ),
    (
        "lib/run.mjs",
        include_str!("../../../clients/node/pythonexec/lib/run.mjs"),
    ),
];

/// Where Lambda's Node.js runtimes look for packages of a layer: `/opt/nodejs/node_modules`.
pub const NODE_PACKAGE_DIR: &str = "nodejs/node_modules/pythonexec";

/// Writes `python/lib/pythonexec/worker.py` and, when `node`, the Node.js package into `stage`.
/// Runs after slimming and minimization: the worker is run by path, never imported, so neither
/// bytecode (sourceless would delete it) nor the trace may judge it.
pub fn write(stage: &Utf8Path, node: bool) -> Result<()> {
    let worker = stage.join(pythonexec::WORKER_PY_IN_LAYER);
    write_file(&worker, pythonexec::WORKER_PY)?;
    if node {
        let dir = stage.join(NODE_PACKAGE_DIR);
        for (rel, text) in NODE_PACKAGE {
            write_file(&dir.join(rel), text)?;
        }
    }
    Ok(())
}

fn write_file(path: &Utf8Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::write(path, text).with_context(|| format!("writing the client file {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_package_lists_is_shipped() {
        let manifest: serde_json::Value =
            serde_json::from_str(NODE_PACKAGE[0].1).expect("package.json parses");
        let listed: Vec<&str> = manifest["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        for f in &listed {
            assert!(
                NODE_PACKAGE.iter().any(|(rel, _)| rel == f),
                "{f} is in package.json's files but not shipped"
            );
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let stage = Utf8Path::from_path(tmp.path()).expect("utf8");
        write(stage, true).expect("write");
        assert!(stage.join("python/lib/pythonexec/worker.py").is_file());
        assert!(stage
            .join(NODE_PACKAGE_DIR)
            .join("lib/worker.mjs")
            .is_file());
        let tmp2 = tempfile::tempdir().expect("tmp");
        let stage2 = Utf8Path::from_path(tmp2.path()).expect("utf8");
        write(stage2, false).expect("write");
        assert!(!stage2.join("nodejs").exists());
    }
}

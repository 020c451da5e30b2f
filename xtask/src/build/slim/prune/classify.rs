//! What a file of a layer is, from its path alone: the vocabulary of the pruning rules and of
//! `analyze`.

use camino::Utf8Path;

/// What a file of a layer is, from its path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    ModuleSource,
    Bytecode,
    /// A `.so` Python imports (`mod.cpython-311-x86_64-linux-gnu.so`, `mod.abi3.so`, `mod.so`).
    ExtensionModule,
    /// Any other shared library (`libfoo.so.1`, `libpython3.11.so.1.0`).
    SharedLibrary,
    /// `*.dist-info/METADATA`: importlib.metadata needs it.
    DistMetadata,
    /// `RECORD`, `INSTALLER`, `WHEEL`, `REQUESTED`, `direct_url.json`.
    DistRecord,
    /// Any other file of a `.dist-info` folder.
    DistOther,
    License,
    TypeStub,
    CSource,
    Doc,
    Test,
    PackageData,
}

/// Classifies a path (relative to any root); pure.
pub fn classify(path: &Utf8Path) -> FileKind {
    let name = path.file_name().unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let in_dist_info = path
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .any(|c| c.as_str().ends_with(".dist-info"));
    let license_like = crate::python::distinfo::is_license(path);
    if in_dist_info {
        return match name {
            "METADATA" => FileKind::DistMetadata,
            "RECORD" | "INSTALLER" | "WHEEL" | "REQUESTED" | "direct_url.json" => {
                FileKind::DistRecord
            }
            _ if license_like => FileKind::License,
            _ => FileKind::DistOther,
        };
    }
    if license_like {
        return FileKind::License;
    }
    if lower.ends_with(".so") || lower.contains(".so.") {
        let stem = name.split('.').next().unwrap_or_default();
        return if stem.starts_with("lib")
            && !lower.contains(".cpython-")
            && !lower.contains(".abi3.")
        {
            FileKind::SharedLibrary
        } else {
            FileKind::ExtensionModule
        };
    }
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    let in_dir = |names: &[&str]| {
        path.parent()
            .into_iter()
            .flat_map(|p| p.components())
            .any(|c| names.contains(&c.as_str()))
    };
    match ext {
        "pyi" => FileKind::TypeStub,
        _ if name == "py.typed" => FileKind::TypeStub,
        "c" | "h" | "cc" | "cpp" | "cxx" | "hpp" | "pyx" | "pxd" | "pxi" => FileKind::CSource,
        _ if in_dir(&["tests", "test", "_tests"]) || name == "conftest.py" => FileKind::Test,
        "py" => FileKind::ModuleSource,
        "pyc" => FileKind::Bytecode,
        "md" | "rst" | "markdown" => FileKind::Doc,
        _ if in_dir(&["docs", "doc"]) => FileKind::Doc,
        _ => FileKind::PackageData,
    }
}

//! What an unpacked runtime holds: its version, its interpreter, the machine it runs on.

use std::io::Read;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::unpack::safe_relative;
use super::RuntimeInfo;
use crate::spec::Arch;

/// Finds the interpreter, its version, and checks that it is built for `arch`.
pub(super) fn inspect(
    root: &Utf8Path,
    metadata: Option<&serde_json::Value>,
    arch: Arch,
) -> Result<RuntimeInfo> {
    let meta_str = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };

    let exe = match meta_str("python_exe") {
        // `install/bin/python3.11` in the full layout, which we moved up one level.
        Some(exe) => {
            let rel = safe_relative(&exe).context("reading python_exe in PYTHON.json")?;
            rel.strip_prefix("install")
                .map(Utf8Path::to_owned)
                .unwrap_or(rel)
        }
        None => find_interpreter(root)?,
    };
    let exe_name = exe.file_name().unwrap_or("");
    let xy = match meta_str("python_major_minor_version") {
        Some(xy) => xy,
        None => exe_name
            .strip_prefix("python")
            .filter(|v| is_xy(v))
            .map(str::to_owned)
            .with_context(|| {
                format!("cannot tell the Python version from the interpreter name `{exe}`")
            })?,
    };
    let version = meta_str("python_version")
        .or_else(|| patchlevel_version(root, &xy))
        .unwrap_or_else(|| xy.clone());
    if !root.join("lib").join(format!("python{xy}")).is_dir() {
        bail!("the runtime has no standard library folder lib/python{xy}");
    }

    let exe_path = root.join(&exe);
    let meta = fs_err::symlink_metadata(&exe_path)
        .with_context(|| format!("the interpreter {exe} is missing"))?;
    if !meta.is_file() {
        bail!("the interpreter {exe} is not a regular file");
    }
    let machine = elf_machine(&exe_path)?;
    if machine != arch.elf_machine() {
        bail!(
            "runtime interpreter {exe} is {} but the target is {}",
            // A Lambda architecture by the name wheel tags and `uname -m` give it.
            Arch::ALL
                .into_iter()
                .find(|a| a.elf_machine() == machine)
                .map_or_else(
                    || crate::util::elf::machine_name(machine),
                    |a| a.machine().to_owned()
                ),
            arch.machine()
        );
    }
    Ok(RuntimeInfo {
        root: root.to_owned(),
        version,
        xy,
        exe,
    })
}

/// `3.11`, `3.12`...
pub(super) fn is_xy(v: &str) -> bool {
    v.split_once('.').is_some_and(|(x, y)| {
        !x.is_empty()
            && !y.is_empty()
            && x.bytes().all(|b| b.is_ascii_digit())
            && y.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `bin/python3.X` that is a real file (`python3` and `python` are links to it).
pub(super) fn find_interpreter(root: &Utf8Path) -> Result<Utf8PathBuf> {
    let bin = root.join("bin");
    let mut found = Vec::new();
    for entry in fs_err::read_dir(&bin)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && name.strip_prefix("python").is_some_and(is_xy) {
            found.push(name);
        }
    }
    found.sort();
    match found.as_slice() {
        [one] => Ok(Utf8Path::new("bin").join(one)),
        [] => bail!("no interpreter bin/python3.X (a regular file) in {root}"),
        many => bail!("several interpreters in {bin}: {}", many.join(", ")),
    }
}

/// `PY_VERSION` from `include/python3.X/patchlevel.h`, best effort.
pub(super) fn patchlevel_version(root: &Utf8Path, xy: &str) -> Option<String> {
    let text =
        fs_err::read_to_string(root.join(format!("include/python{xy}/patchlevel.h"))).ok()?;
    text.lines().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("#define")?
            .trim()
            .strip_prefix("PY_VERSION")?;
        let version = rest.trim().trim_matches('"');
        (version.starts_with(xy) && version.len() > xy.len()).then(|| version.to_owned())
    })
}

/// `e_machine` of an ELF file, read from its header only.
pub(super) fn elf_machine(path: &Utf8Path) -> Result<u16> {
    let mut header = [0u8; 64];
    let mut file = fs_err::File::open(path)?;
    file.read_exact(&mut header)
        .with_context(|| format!("{path} is not an ELF file (too short)"))?;
    let parsed = goblin::elf::Elf::parse_header(&header)
        .map_err(|e| anyhow::anyhow!("{path} is not an ELF file: {e}"))?;
    Ok(parsed.e_machine)
}

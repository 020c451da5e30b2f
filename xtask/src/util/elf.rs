//! ELF inspection for the static checks: the machine a file is built for, the libraries it
//! needs (`DT_NEEDED`), where it looks for them (`RPATH`/`RUNPATH`) and the newest glibc
//! symbol version it requires (from `.gnu.version_r`); and, reading a tree, the libraries a set
//! of ELF files needs.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use goblin::elf::header;

use crate::core::Glibc;

/// What the static checks need to know about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// `e_machine`: `EM_X86_64`, `EM_AARCH64`, ...
    pub machine: u16,
    /// `DT_NEEDED` entries, in file order.
    pub needed: Vec<String>,
    /// `DT_RPATH` and `DT_RUNPATH` entries, split on `:` (`$ORIGIN` not expanded).
    pub search_paths: Vec<String>,
    /// The newest `GLIBC_2.X` version required from any library, if any.
    pub max_glibc: Option<Glibc>,
}

/// True when `bytes` start with the ELF magic number.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Parses an ELF file's header, dynamic section and version needs.
pub fn inspect(bytes: &[u8]) -> Result<ElfInfo> {
    let elf = goblin::elf::Elf::parse(bytes).context("parsing the ELF headers")?;
    let mut max_glibc: Option<Glibc> = None;
    if let Some(verneed) = &elf.verneed {
        for need in verneed.iter() {
            for aux in need.iter() {
                // Names are offsets into the dynamic string table; a name that is not
                // there is a malformed file, but one bad entry should not hide the rest.
                let Some(name) = elf.dynstrtab.get_at(aux.vna_name) else {
                    continue;
                };
                if let Some(v) = glibc_version_of(name) {
                    max_glibc = Some(max_glibc.map_or(v, |m| m.max(v)));
                }
            }
        }
    }
    let search_paths = elf
        .rpaths
        .iter()
        .chain(&elf.runpaths)
        .flat_map(|p| p.split(':'))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(ElfInfo {
        machine: elf.header.e_machine,
        needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
        search_paths,
        max_glibc,
    })
}

/// `GLIBC_2.34` -> 2.34. Other version names (`GLIBCXX_3.4.29`, `GCC_3.0`, `GLIBC_PRIVATE`)
/// are not glibc releases and give `None`.
pub fn glibc_version_of(name: &str) -> Option<Glibc> {
    let rest = name.strip_prefix("GLIBC_")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(Glibc { major, minor })
}

/// A name for people, spelled as `readelf` spells it: `x86-64`, `AArch64`, or the number.
pub fn machine_name(machine: u16) -> String {
    match machine {
        header::EM_X86_64 => "x86-64".to_owned(),
        header::EM_AARCH64 => "AArch64".to_owned(),
        header::EM_386 => "i386".to_owned(),
        header::EM_ARM => "ARM".to_owned(),
        other => format!("e_machine {other}"),
    }
}

/// How far [`needed_closure`] follows `DT_NEEDED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Only what the roots themselves name.
    Direct,
    /// What the roots name, what those name, and so on.
    Transitive,
}

/// The libraries under `lib_dir` (relative to `root`) that the ELF files `roots` need
/// (`DT_NEEDED`), as paths relative to `root`, with every link on the way and the file behind
/// it. A name not found in `lib_dir` is the system's (glibc, ...) and is left out; a root that
/// is not a readable ELF file contributes nothing.
pub fn needed_closure(
    root: &Utf8Path,
    lib_dir: &Utf8Path,
    roots: &[Utf8PathBuf],
    depth: Depth,
) -> Result<BTreeSet<Utf8PathBuf>> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<Utf8PathBuf> = roots.to_vec();
    let mut seen = BTreeSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let Ok(bytes) = fs_err::read(root.join(&p)) else {
            continue;
        };
        if !is_elf(&bytes) {
            continue;
        }
        let Ok(info) = inspect(&bytes) else {
            continue;
        };
        for name in info.needed {
            let mut rel = lib_dir.join(&name);
            // A soname is usually a link (`libssl.so.3` -> `libssl.so.3.0.2`): keep the chain.
            for _ in 0..8 {
                let full = root.join(&rel);
                if full.symlink_metadata().is_err() {
                    break;
                }
                out.insert(rel.clone());
                match fs_err::read_link(&full) {
                    Ok(target) => {
                        let target = crate::util::utf8(target)?;
                        rel = rel.parent().unwrap_or(Utf8Path::new("")).join(target);
                    }
                    Err(_) => {
                        if depth == Depth::Transitive {
                            todo.push(rel.clone());
                        }
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_file(path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    #[test]
    fn glibc_version_names() {
        assert_eq!(
            glibc_version_of("GLIBC_2.34"),
            Some(Glibc {
                major: 2,
                minor: 34
            })
        );
        assert_eq!(
            glibc_version_of("GLIBC_2.2.5"),
            Some(Glibc { major: 2, minor: 2 })
        );
        assert_eq!(glibc_version_of("GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version_of("GLIBCXX_3.4.29"), None);
        assert_eq!(glibc_version_of("GCC_3.0"), None);
    }

    #[test]
    fn reads_this_machines_ls() {
        // Every Linux machine that runs these tests has an `ls` that needs libc.
        let Some(bytes) = host_file("/bin/ls") else {
            return;
        };
        assert!(is_elf(&bytes));
        let info = inspect(&bytes).expect("ls parses");
        assert_eq!(
            Some(info.machine),
            crate::core::Arch::host().map(|a| a.elf_machine())
        );
        assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{info:?}");
        let glibc = info.max_glibc.expect("ls needs versioned glibc symbols");
        assert!(glibc >= Glibc { major: 2, minor: 2 }, "{glibc}");
    }

    #[test]
    fn reads_a_shared_library_with_runpath_or_not() {
        for path in [
            "/usr/lib/x86_64-linux-gnu/libz.so.1",
            "/lib/x86_64-linux-gnu/libz.so.1",
        ] {
            if let Some(bytes) = host_file(path) {
                let info = inspect(&bytes).expect("libz parses");
                assert_eq!(info.machine, header::EM_X86_64);
                assert_eq!(info.needed, vec!["libc.so.6".to_owned()]);
                return;
            }
        }
    }

    #[test]
    fn not_elf() {
        assert!(!is_elf(b"#!/bin/sh\n"));
        assert!(inspect(b"\x7fELF garbage").is_err());
    }

    #[test]
    fn machine_names() {
        assert_eq!(machine_name(header::EM_X86_64), "x86-64");
        assert_eq!(machine_name(header::EM_AARCH64), "AArch64");
        assert_eq!(machine_name(9999), "e_machine 9999");
    }
}

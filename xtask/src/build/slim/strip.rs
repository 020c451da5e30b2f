//! Stripping: debug information removed from every ELF file of the target's architecture with a
//! binutils `strip` that understands it; a result that no longer looks like the same loadable
//! file is thrown away and the original kept.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use goblin::elf::{program_header::PT_LOAD, Elf};

use crate::build::cache::StageCache;
use crate::spec::Arch;

/// What stripping did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stripped {
        before: u64,
        after: u64,
    },
    /// Left as it was, and why (corrupted by strip, strip failed).
    Kept(String),
}

/// A file stripping looked at.
#[derive(Debug, Clone)]
pub struct Stripped {
    /// Relative to the layer root.
    pub path: Utf8PathBuf,
    pub outcome: Outcome,
}

/// What a file is to the stripper; pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Candidate {
    NotElf,
    /// An ELF file of another machine; nothing in the layer should be one (verify reports it).
    OtherMachine(u16),
    /// No `.debug_*` sections: nothing to gain.
    AlreadyStripped,
    HasDebug,
}

pub fn candidate(bytes: &[u8], arch: Arch) -> Candidate {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Candidate::NotElf;
    }
    let Ok(elf) = Elf::parse(bytes) else {
        return Candidate::NotElf;
    };
    if elf.header.e_machine != arch.elf_machine() {
        return Candidate::OtherMachine(elf.header.e_machine);
    }
    let has_debug = elf.section_headers.iter().any(|sh| {
        elf.shdr_strtab
            .get_at(sh.sh_name)
            .is_some_and(|n| n.starts_with(".debug_") || n.starts_with(".zdebug_"))
    });
    if has_debug {
        Candidate::HasDebug
    } else {
        Candidate::AlreadyStripped
    }
}

/// Why a stripped file must not replace its original, if it must not; pure.
pub fn check_stripped(before: &[u8], after: &[u8]) -> Option<String> {
    let Ok(old) = Elf::parse(before) else {
        return Some("the original does not parse".into());
    };
    let new = match Elf::parse(after) {
        Ok(e) => e,
        Err(e) => return Some(format!("the stripped file does not parse: {e}")),
    };
    if after.len() > before.len() {
        return Some("the stripped file is larger".into());
    }
    if new.header.e_machine != old.header.e_machine || new.header.e_type != old.header.e_type {
        return Some("the stripped file changed machine or type".into());
    }
    let loads = |e: &Elf<'_>| {
        e.program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| (p.p_offset, p.p_vaddr, p.p_align, p.p_filesz))
            .collect::<Vec<_>>()
    };
    let (old_loads, new_loads) = (loads(&old), loads(&new));
    if old_loads.len() != new_loads.len() {
        return Some("the stripped file has a different number of PT_LOAD segments".into());
    }
    for (off, vaddr, align, filesz) in &new_loads {
        if *align > 1 && off % align != vaddr % align {
            return Some(format!(
                "ELF load command address/offset not properly aligned (offset {off:#x}, address {vaddr:#x}, align {align:#x})"
            ));
        }
        if off + filesz > after.len() as u64 {
            return Some("a PT_LOAD segment runs past the end of the stripped file".into());
        }
    }
    if old.dynamic.is_some() != new.dynamic.is_some() || old.libraries != new.libraries {
        return Some("the dynamic section changed".into());
    }
    None
}

/// A `strip` that handles the target's machine: the cross binutils of that machine, the host's
/// own when the machines match, else llvm-strip (which handles every machine).
pub fn tool(arch: Arch) -> Result<Utf8PathBuf> {
    let mut names = vec![format!("{}-linux-gnu-strip", arch.machine())];
    if Arch::host() == Some(arch) {
        names.push("strip".into());
    }
    names.push("llvm-strip".into());
    if let Some(found) = crate::util::which_any(names.iter().map(String::as_str)) {
        return Ok(found);
    }
    bail!(
        "no strip tool for {arch} ELF files on PATH (tried {}); on Debian: apt-get install binutils-{}-linux-gnu",
        names.join(", "),
        arch.machine().replace('_', "-")
    )
}

/// Strips one file in place (its inode kept, so hard links stay links); `None` when the file
/// is not an ELF file of `arch` with debug information.
/// With a stage cache (`cache`: the cache and the tool's identity), the stripped bytes come
/// from there when it has them; a stripped result is stored there, a kept one is not.
pub fn strip_file(
    path: &Utf8Path,
    arch: Arch,
    tool: &Utf8Path,
    cache: Option<(&StageCache, &str)>,
) -> Result<Option<Outcome>> {
    let before = fs_err::read(path)?;
    if candidate(&before, arch) != Candidate::HasDebug {
        return Ok(None);
    }
    let key = cache.map(|(_, tool_id)| {
        crate::build::cache::key(
            crate::build::cache::Stage::Strip,
            &[
                crate::util::sha256_hex(&before).as_bytes(),
                tool_id.as_bytes(),
                STRIP_ARGS.as_bytes(),
            ],
        )
    });
    if let (Some((cache, _)), Some(key)) = (cache, &key) {
        if let Some(after) = cache.get_file(crate::build::cache::Stage::Strip, key) {
            crate::util::rewrite_file(path, &after)
                .with_context(|| format!("writing the stripped {path}"))?;
            return Ok(Some(Outcome::Stripped {
                before: before.len() as u64,
                after: after.len() as u64,
            }));
        }
    }
    let tmp = tempfile::tempdir().context("creating a folder for stripping")?;
    let out = tmp.path().join("stripped");
    let sh = xshell::Shell::new().context("reading the current folder")?;
    let status = xshell::cmd!(sh, "{tool} {STRIP_ARGS} -o {out} {path}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not start {tool} on {path}"))?;
    if !status.status.success() {
        return Ok(Some(Outcome::Kept(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        ))));
    }
    let after = fs_err::read(&out)?;
    if let Some(why) = check_stripped(&before, &after) {
        return Ok(Some(Outcome::Kept(why)));
    }
    crate::util::rewrite_file(path, &after)
        .with_context(|| format!("writing the stripped {path}"))?;
    if let (Some((cache, _)), Some(key)) = (cache, &key) {
        cache.put_file(crate::build::cache::Stage::Strip, key, &after)?;
    }
    Ok(Some(Outcome::Stripped {
        before: before.len() as u64,
        after: after.len() as u64,
    }))
}

/// What `strip` is asked to do, part of the stage cache's key.
const STRIP_ARGS: &str = "--strip-debug";

/// The tool's path and the first line of its `--version`: what decides its output.
fn tool_identity(tool: &Utf8Path) -> Result<String> {
    let sh = xshell::Shell::new().context("reading the current folder")?;
    let out = xshell::cmd!(sh, "{tool} --version")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not start {tool}"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    Ok(format!(
        "{tool}\n{}",
        version.lines().next().unwrap_or_default()
    ))
}

/// Strips every ELF file of `arch` under `stage`, through the stage cache when given.
pub fn strip_tree(
    stage: &Utf8Path,
    arch: Arch,
    cache: Option<&StageCache>,
) -> Result<Vec<Stripped>> {
    let mut tool_path = None;
    let mut tool_id: Option<String> = None;
    let mut out = Vec::new();
    for w in crate::util::walk(stage)? {
        // Links are skipped: their target is a file of the walk too.
        if !w.file_type.is_file() || w.len < 64 {
            continue;
        }
        let full = stage.join(&w.rel);
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            let mut f = fs_err::File::open(&full)?;
            if f.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
                continue;
            }
        }
        let tool = match &tool_path {
            Some(t) => t,
            None => tool_path.insert(tool(arch)?),
        };
        let cached = match cache {
            Some(c) => {
                let id = match &tool_id {
                    Some(id) => id,
                    None => tool_id.insert(tool_identity(tool)?),
                };
                Some((c, id.as_str()))
            }
            None => None,
        };
        if let Some(outcome) = strip_file(&full, arch, tool, cached)? {
            out.push(Stripped {
                path: w.rel,
                outcome,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Assembles and links a small AArch64 shared library with debug information, using the
    /// cross binutils this machine has; `None` when they are missing.
    fn aarch64_so(dir: &Utf8Path) -> Option<Utf8PathBuf> {
        let asm = dir.join("f.s");
        fs_err::write(
            &asm,
            ".text\n.globl answer\n.type answer, %function\nanswer:\n mov w0, #42\n ret\n",
        )
        .ok()?;
        let obj = dir.join("f.o");
        let so = dir.join("libf.so");
        duct::cmd!("aarch64-linux-gnu-as", "-g", "-o", &obj, &asm)
            .run()
            .ok()?;
        duct::cmd!("aarch64-linux-gnu-ld", "-shared", "-o", &so, &obj)
            .run()
            .ok()?;
        Some(so)
    }

    #[test]
    fn strips_an_aarch64_file_on_this_machine_and_it_still_parses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let Some(so) = aarch64_so(dir) else {
            eprintln!("skipped: no aarch64 binutils");
            return;
        };
        let before = fs_err::read(&so).unwrap();
        assert_eq!(candidate(&before, Arch::Arm64), Candidate::HasDebug);
        assert_eq!(
            candidate(&before, Arch::X86_64),
            Candidate::OtherMachine(goblin::elf::header::EM_AARCH64)
        );
        let tool = tool(Arch::Arm64).unwrap();
        let outcome = strip_file(&so, Arch::Arm64, &tool, None).unwrap().unwrap();
        let Outcome::Stripped {
            before: b,
            after: a,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert!(a < b);
        let after = fs_err::read(&so).unwrap();
        let elf = Elf::parse(&after).unwrap();
        assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64);
        assert!(!elf.dynsyms.is_empty());
        assert_eq!(candidate(&after, Arch::Arm64), Candidate::AlreadyStripped);
        assert_eq!(strip_file(&so, Arch::Arm64, &tool, None).unwrap(), None);
    }

    #[test]
    fn a_misaligned_result_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let Some(so) = aarch64_so(dir) else {
            eprintln!("skipped: no aarch64 binutils");
            return;
        };
        let good = fs_err::read(&so).unwrap();
        assert_eq!(check_stripped(&good, &good), None);
        // Shift the first PT_LOAD's address by one byte, so that it no longer agrees with its
        // file offset modulo the alignment, as after a strip that broke a patchelf'd file.
        let elf = Elf::parse(&good).unwrap();
        let phoff = elf.header.e_phoff as usize;
        let entsize = elf.header.e_phentsize as usize;
        let idx = elf
            .program_headers
            .iter()
            .position(|p| p.p_type == PT_LOAD)
            .unwrap();
        let mut bad = good.clone();
        let at = phoff + idx * entsize + 16; // p_vaddr in Elf64_Phdr
        let vaddr = u64::from_le_bytes(bad[at..at + 8].try_into().unwrap()) + 1;
        bad[at..at + 8].copy_from_slice(&vaddr.to_le_bytes());
        let why = check_stripped(&good, &bad).unwrap();
        assert!(why.contains("not properly aligned"), "{why}");
        assert!(check_stripped(&good, b"\x7fELFjunk").is_some());
    }

    #[test]
    fn non_elf_is_not_a_candidate() {
        assert_eq!(candidate(b"#!/bin/sh\n", Arch::X86_64), Candidate::NotElf);
        assert_eq!(candidate(b"\x7fEL", Arch::X86_64), Candidate::NotElf);
    }
}

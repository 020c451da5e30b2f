//! Debian's arm64 packages unpacked into a sysroot: the parts of the arm64 fixture runtime,
//! and the glibc `qemu-aarch64-static -L` runs arm64 layers with.

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use xshell::cmd;

use crate::util::run;

/// Debian arm64 packages that make up the interpreter and the libraries its modules need.
/// `libnsl2`/`libtirpc3` (for the obsolete `nis` module) are left out: `nis` is dropped.
/// So is `libcrypt1`: `_crypt` is left out (see `fixture::assemble::skip_stdlib`).
pub const ARM64_PACKAGES: &[&str] = &[
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libgcc-s1",
    // Not needed by the interpreter, but by wheels (tokenizers, ...): Lambda's base image
    // provides it, so the sysroot that stands in for that image under qemu must too.
    "libstdc++6",
    "zlib1g",
    "libexpat1",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "liblzma5",
    "libbz2-1.0",
    "libuuid1",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libdb5.3",
];

/// Ensures the arm64 Debian sysroot exists (downloading the packages when needed) and
/// returns it. `verify` runs arm64 layers as `qemu-aarch64-static -L SYSROOT ...`.
pub fn arm64_sysroot() -> Result<Utf8PathBuf> {
    let base = crate::core::cache_dir().join("debian-arm64");
    // Keyed by the package list, so that adding a package makes a new sysroot.
    let key = crate::util::sha256_hex(ARM64_PACKAGES.join(" ").as_bytes());
    let sysroot = base.join(format!("sysroot-{}", &key[..16]));
    if sysroot.join(".complete").is_file() {
        return Ok(sysroot);
    }
    fs_err::create_dir_all(&base)?;
    let download = tempfile::Builder::new()
        .prefix(".debs.")
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary folder in {base}"))?;
    let download_dir = crate::util::utf8(download.path().to_owned())?;
    let packages: Vec<String> = ARM64_PACKAGES
        .iter()
        .map(|p| format!("{p}:arm64"))
        .collect();
    let sh = crate::util::shell()?;
    let apt = || {
        // `apt-get download` writes into the current folder.
        let _dir = sh.push_dir(&download_dir);
        let packages = &packages;
        run(cmd!(sh, "apt-get download {packages...}"))
    };
    if let Err(err) = apt() {
        let foreign = run(cmd!(sh, "dpkg --print-foreign-architectures")).unwrap_or_default();
        if foreign.split_whitespace().any(|a| a == "arm64") {
            return Err(err.context("downloading Debian's arm64 packages with apt-get"));
        }
        let root = run(cmd!(sh, "id -u"))
            .map(|s| s.trim() == "0")
            .unwrap_or(false);
        if !root {
            bail!(
                "apt does not know the arm64 architecture yet; run as root:\n  dpkg --add-architecture arm64 && apt-get update\n({err:#})"
            );
        }
        eprintln!(
            "adding the arm64 architecture to apt: dpkg --add-architecture arm64 && apt-get update"
        );
        run(cmd!(sh, "dpkg --add-architecture arm64"))?;
        run(cmd!(sh, "apt-get update -q"))?;
        apt().context("downloading Debian's arm64 packages with apt-get")?;
    }

    let stage = tempfile::Builder::new()
        .prefix(".sysroot.")
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary folder in {base}"))?;
    let stage_dir = crate::util::utf8(stage.path().to_owned())?;
    let mut debs: Vec<String> = fs_err::read_dir(&download_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".deb"))
        .collect();
    debs.sort();
    for deb in &debs {
        let deb_path = download_dir.join(deb);
        run(cmd!(sh, "dpkg -x {deb_path} {stage_dir}"))
            .with_context(|| format!("unpacking {deb}"))?;
    }
    // The list of packages doubles as the cache key of the trees built from this sysroot.
    crate::util::write_bytes_atomic(
        &stage_dir.join(".complete"),
        (debs.join("\n") + "\n").as_bytes(),
    )?;
    let stage_dir = stage.keep();
    if let Err(err) = fs_err::rename(&stage_dir, &sysroot) {
        let _ = fs_err::remove_dir_all(&stage_dir);
        if !sysroot.join(".complete").is_file() {
            return Err(err.into());
        }
    }
    // Keep the packages next to the sysroot, for whoever wants to look at them.
    let debs_dir = base.join("debs");
    if !debs_dir.exists() {
        let _ = fs_err::rename(download.keep(), &debs_dir);
    }
    Ok(sysroot)
}

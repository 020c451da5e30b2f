//! Which platform uv resolves for, and what to say when a requirement has no wheel for it.
//!
//! uv's `--python-platform` takes only some glibc baselines; a target between two of them
//! (Amazon Linux 2 has glibc 2.26) resolves for the newest one not newer than its glibc, so
//! every locked wheel runs there. With `--only-binary :all:` (kept: the builder never builds
//! an sdist) a requirement with no such wheel fails in uv, and the tool says what would fit.

use anyhow::{bail, Result};

use crate::python::index::Page;
use crate::python::wheel::Target;
use crate::spec::{Arch, Glibc};

/// The glibc minors (of 2.x) uv 0.13 accepts in `{arch}-manylinux_2_{minor}`:
/// `manylinux_2_17` (= manylinux2014), `2_28`, `2_31` to `2_40`. Its clap parser rejects
/// any other (`x86_64-manylinux_2_26` exits 2).
const UV_GLIBC_MINORS: [u32; 12] = [17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40];

/// The `--python-platform` for `arch` on `glibc`: the newest baseline uv accepts that is
/// not newer than the target's glibc (2.26 → `manylinux_2_17`, 2.34 → `manylinux_2_34`).
pub fn uv_platform(arch: Arch, glibc: Glibc) -> Result<String> {
    let oldest = UV_GLIBC_MINORS[0];
    let minor = match glibc.major {
        2 => UV_GLIBC_MINORS.iter().rev().find(|m| **m <= glibc.minor),
        m if m > 2 => UV_GLIBC_MINORS.last(),
        _ => None,
    };
    let Some(minor) = minor else {
        bail!("[target] glibc {glibc} is older than 2.{oldest} (manylinux2014), the oldest platform uv locks for");
    };
    Ok(format!("{}-manylinux_2_{minor}", arch.machine()))
}

/// uv's report that a requirement has no wheel for the platform (`Because litellm==1.110.2
/// has no usable wheels and you require ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoWheel {
    /// As uv wrote it: `litellm`.
    pub name: String,
    /// The rest of uv's requirement: `==1.110.2`, `>=1.92.1`, or empty (`all versions of`).
    pub specifier: String,
}

impl NoWheel {
    /// Finds the report in uv's stderr (`Because X==1 has no usable wheels`, `Because all
    /// versions of X have no usable wheels`); `None` when uv failed for another reason.
    pub fn parse(stderr: &str) -> Option<NoWheel> {
        let at = stderr
            .find(" has no usable wheels")
            .or_else(|| stderr.find(" have no usable wheels"))?;
        let token = stderr[..at].split_whitespace().last()?;
        let name_end = token
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(token.len());
        let (name, specifier) = token.split_at(name_end);
        // `litellm[proxy]==1`: the extras are no part of what the index lists.
        let specifier = match specifier.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or("", |(_, s)| s),
            None => specifier,
        };
        (!name.is_empty()).then(|| NoWheel {
            name: name.to_owned(),
            specifier: specifier.trim().to_owned(),
        })
    }

    /// The pinned version, when the requirement is `==X`.
    pub fn pinned(&self) -> Option<&str> {
        self.specifier
            .strip_prefix("==")
            .map(str::trim)
            .filter(|v| !v.contains('*'))
    }

    /// The refusal: one line naming the package, the target and the newest version that
    /// fits, then the tags the requested version does have and what to do. `target_name`
    /// says where the glibc comes from (`runtime al2`); `page` is the package's index page.
    pub fn refusal(
        &self,
        page: Result<Page>,
        target: &Target,
        python: &str,
        target_name: &str,
        platform: &str,
    ) -> String {
        let req = format!("{}{}", self.name, self.specifier);
        let where_ = format!(
            "{}, glibc {} ({target_name}), CPython {python}",
            target.arch, target.glibc
        );
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                return format!(
                    "{req} has no wheel for {where_}, and the index's page of {} could not be read to say which version would fit: {e:#}",
                    self.name
                )
            }
        };
        let fitting = page.newest_fitting(target, python);
        let fits = match &fitting {
            Some(v) => format!("the newest {} that fits is {v}", self.name),
            None => format!("no release of {} has a wheel that fits", self.name),
        };
        let shown = self.pinned().map(str::to_owned).or_else(|| page.newest());
        let has = match &shown {
            Some(v) => {
                let tags = page.tags_of(v);
                let which = if self.pinned().is_some() {
                    format!("{} {v}", self.name)
                } else {
                    format!("the newest release of {}, {v},", self.name)
                };
                if tags.is_empty() {
                    format!("{which} has no wheels at all (only an sdist, which this tool does not build)")
                } else {
                    format!("{which} has wheels tagged {}", tags.join(", "))
                }
            }
            None => format!("{} has no wheels on the index", self.name),
        };
        let fix = match &fitting {
            Some(v) => format!("require {}=={v} in [requirements] packages, or", self.name),
            None => "drop it, or".to_owned(),
        };
        format!(
            "{req} has no wheel for {where_}: {fits}\n  {has}\n  (uv resolved for --python-platform {platform} with --only-binary :all:); {fix} target a newer glibc, e.g. [target] runtime = \"al2023\" (glibc 2.34)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glibc(minor: u32) -> Glibc {
        Glibc { major: 2, minor }
    }

    #[test]
    fn the_newest_platform_uv_accepts_not_newer_than_the_target() {
        let p = |arch, minor| uv_platform(arch, glibc(minor)).unwrap();
        // Amazon Linux 2: 2.26 lies between 2.17 and 2.28.
        assert_eq!(p(Arch::X86_64, 26), "x86_64-manylinux_2_17");
        assert_eq!(p(Arch::Arm64, 26), "aarch64-manylinux_2_17");
        // Amazon Linux 2023: unchanged from before this choice existed.
        assert_eq!(p(Arch::X86_64, 34), "x86_64-manylinux_2_34");
        assert_eq!(p(Arch::Arm64, 34), "aarch64-manylinux_2_34");
        assert_eq!(p(Arch::X86_64, 17), "x86_64-manylinux_2_17");
        assert_eq!(p(Arch::X86_64, 28), "x86_64-manylinux_2_28");
        assert_eq!(p(Arch::X86_64, 30), "x86_64-manylinux_2_28");
        assert_eq!(p(Arch::X86_64, 31), "x86_64-manylinux_2_31");
        assert_eq!(p(Arch::X86_64, 45), "x86_64-manylinux_2_40");
        let err = uv_platform(Arch::X86_64, glibc(12))
            .unwrap_err()
            .to_string();
        assert!(err.contains("glibc 2.12") && err.contains("2.17"), "{err}");
    }

    #[test]
    fn reads_uv_s_no_wheel_report() {
        let pinned = "error: No solution found when resolving dependencies\n  cause: Because litellm==1.110.2 has no usable wheels and you require litellm==1.110.2, we can conclude that your requirements are unsatisfiable.\n\nhint: Wheels are required for `litellm` because building from source is disabled";
        let nw = NoWheel::parse(pinned).unwrap();
        assert_eq!(
            (nw.name.as_str(), nw.specifier.as_str()),
            ("litellm", "==1.110.2")
        );
        assert_eq!(nw.pinned(), Some("1.110.2"));
        let range =
            "  cause: Because litellm>=1.92.1 has no usable wheels and only the following versions";
        let nw = NoWheel::parse(range).unwrap();
        assert_eq!((nw.specifier.as_str(), nw.pinned()), (">=1.92.1", None));
        let all = "Because all versions of tiktoken have no usable wheels";
        let nw = NoWheel::parse(all).unwrap();
        assert_eq!((nw.name.as_str(), nw.specifier.as_str()), ("tiktoken", ""));
        let extras = NoWheel::parse("Because litellm[proxy]==1.0 has no usable wheels").unwrap();
        assert_eq!(extras.pinned(), Some("1.0"));
        assert_eq!(NoWheel::parse("error: network unreachable"), None);
    }

    #[test]
    fn the_refusal_names_package_target_tags_and_what_fits() {
        let page = r#"{"files": [
            {"filename": "litellm-1.91.5-py3-none-any.whl", "requires-python": ">=3.9, <4.0"},
            {"filename": "litellm-1.110.2-cp310-abi3-manylinux_2_28_x86_64.whl", "requires-python": ">=3.10, <3.16"},
            {"filename": "litellm-1.110.2-cp310-abi3-manylinux_2_28_aarch64.whl", "requires-python": ">=3.10, <3.16"}
        ]}"#;
        let nw = NoWheel {
            name: "litellm".into(),
            specifier: "==1.110.2".into(),
        };
        let target = Target {
            arch: Arch::X86_64,
            glibc: glibc(26),
            py_minor: 11,
        };
        let msg = nw.refusal(
            Page::parse(page),
            &target,
            "3.11.16",
            "runtime al2",
            "x86_64-manylinux_2_17",
        );
        let first = msg.lines().next().unwrap();
        assert_eq!(
            first,
            "litellm==1.110.2 has no wheel for x86_64, glibc 2.26 (runtime al2), CPython 3.11.16: the newest litellm that fits is 1.91.5"
        );
        assert!(
            msg.contains("litellm 1.110.2 has wheels tagged cp310-abi3-manylinux_2_28_aarch64, cp310-abi3-manylinux_2_28_x86_64"),
            "{msg}"
        );
        assert!(msg.contains("require litellm==1.91.5"), "{msg}");
        let unread = nw.refusal(
            Err(anyhow::anyhow!("offline")),
            &target,
            "3.11.16",
            "runtime al2",
            "x86_64-manylinux_2_17",
        );
        assert!(
            unread.starts_with("litellm==1.110.2 has no wheel for x86_64")
                && unread.contains("offline"),
            "{unread}"
        );
    }
}

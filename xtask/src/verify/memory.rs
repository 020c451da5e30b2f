//! `verify --memory MB`: Lambda's CPU share and memory limit for the sandbox, and what the
//! report says about them.
//!
//! # The model
//!
//! A Lambda function of `MB` megabytes (MiB) may use that much memory, with no swap, and gets
//! `MB / 1769` of one vCPU, except during INIT (the module load, up to 10 s), which runs with
//! an unthrottled CPU. The whole sandbox (bwrap, the supervisor, the loopback server and the
//! checked interpreter) runs in one control group holding both limits; the checked
//! interpreters run one at a time, as in a function. The CPU quota's file is bound into the
//! sandbox for the supervisor, which lifts the quota before it starts each interpreter and
//! applies it when the interpreter prints the INIT-done marker on stdout (`py/workload.py`
//! does after the spec's preload modules in the timing runs, and before anything else in the
//! workload check) or after [`INIT_LIMIT_SECS`], whichever comes first. So the timing runs
//! show a worker that finished its imports inside INIT, and the workload check one that
//! imports after INIT, throttled. The group gets four times the usual CPU weight, so that on a
//! busy machine the quota rather than the other load decides the share.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::Check;
use crate::util::cgroup::{Group, Stats, PERIOD_US};

/// The memory at which Lambda gives one full vCPU.
pub const ONE_VCPU_MB: u32 = 1769;
/// Lambda's memory settings: any whole MB in this range.
pub const MIN_MB: u32 = 128;
pub const MAX_MB: u32 = 10_240;
/// How long INIT runs unthrottled at most.
pub const INIT_LIMIT_SECS: u64 = 10;
/// The sizes the report suggests: Lambda accepts any MB from 128 to 10,240; these are the
/// usual steps (the console's presets, 1,769 for one vCPU, 3,008 the old maximum).
pub const STANDARD_SIZES: [u32; 10] = [128, 256, 512, 1024, 1536, 1769, 2048, 3008, 4096, 10_240];

/// What the supervisor inside the sandbox does with the CPU quota (crosses the sandbox in the
/// plan).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CpuQuota {
    /// The quota's file as the supervisor sees it.
    pub file: String,
    /// Written before each interpreter starts (INIT: no limit).
    pub unthrottled: String,
    /// Written at the end of INIT.
    pub throttled: String,
    pub init_limit_secs: u64,
}

/// A control group holding `mb`'s memory limit, its CPU unthrottled until the supervisor
/// applies the quota; and what the supervisor writes (the quota file bound at
/// `sandbox::INSIDE_CPU_QUOTA`).
pub fn lambda_group(mb: u32) -> Result<(Group, CpuQuota)> {
    if !(MIN_MB..=MAX_MB).contains(&mb) {
        bail!("--memory {mb}: Lambda's memory is {MIN_MB} to {MAX_MB} MB");
    }
    let group = Group::create("xtask-verify")
        .with_context(|| format!("--memory {mb} needs a control group"))?;
    group.set_memory_limit(limit_bytes(mb))?;
    group.set_cpu_quota(None)?;
    // Lambda's share is the function's own; here other work competes for the same cores.
    group.set_cpu_weight_factor(4)?;
    let quota = CpuQuota {
        file: super::sandbox::INSIDE_CPU_QUOTA.to_owned(),
        unthrottled: group.quota_text(None),
        throttled: group.quota_text(Some(quota_us(mb))),
        init_limit_secs: INIT_LIMIT_SECS,
    };
    Ok((group, quota))
}

/// The CFS quota per [`PERIOD_US`] that gives `mb`'s share of one CPU.
pub fn quota_us(mb: u32) -> u64 {
    (u64::from(mb) * PERIOD_US + u64::from(ONE_VCPU_MB) / 2) / u64::from(ONE_VCPU_MB)
}

/// The memory limit in bytes.
pub fn limit_bytes(mb: u32) -> u64 {
    u64::from(mb) << 20
}

/// The smallest standard size above `peak_bytes`.
pub fn smallest_fit(peak_bytes: u64) -> Option<u32> {
    STANDARD_SIZES
        .into_iter()
        .find(|&mb| limit_bytes(mb) > peak_bytes)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / f64::from(1 << 20))
}

/// The report's `memory: MB` check: fails when a process was killed at the limit or the peak
/// RSS reached it. `peak_rss_bytes` is the largest of the workload's and the timing runs'
/// interpreters (their own VmHWM); the cgroup peak also counts page cache and /tmp.
pub fn check(mb: u32, stats: &Stats, peak_rss_bytes: Option<u64>) -> Check {
    let limit = limit_bytes(mb);
    let cgroup = stats.memory_peak_bytes.map_or("unknown".to_owned(), mib);
    let cpu = format!(
        "{:.2} vCPU after INIT (CFS quota {} us per {PERIOD_US} us, throttled in {} periods)",
        f64::from(mb) / f64::from(ONE_VCPU_MB),
        quota_us(mb),
        stats.nr_throttled.map_or("?".to_owned(), |n| n.to_string())
    );
    let name = format!("memory: {mb} MB");
    let kills = stats.oom_kills.unwrap_or(0);
    if kills > 0 {
        return Check::new(
            name,
            false,
            format!(
                "the OOM killer killed {kills} process(es) at the {mb} MB limit (memory cgroup \
                 peak {cgroup}; peak RSS of the interpreters that finished {}): the workload \
                 needs more than {mb} MB; {cpu}",
                peak_rss_bytes.map_or("unknown".to_owned(), mib)
            ),
        );
    }
    match peak_rss_bytes {
        None => Check::new(
            name,
            false,
            format!("no interpreter reported its peak RSS (memory cgroup peak {cgroup}); {cpu}"),
        ),
        Some(peak) => {
            let fits = smallest_fit(peak)
                .map_or(format!("fits in no size up to {MAX_MB} MB"), |s| {
                    format!("fits in {s} MB, the smallest standard size above it")
                });
            Check::new(
                name,
                peak < limit,
                format!(
                    "peak RSS {} against the {mb} MB limit (memory cgroup peak {cgroup}); \
                     {fits}; {cpu}",
                    mib(peak)
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_share_follows_memory() {
        assert_eq!(quota_us(1769), 100_000);
        assert_eq!(quota_us(512), 28_943);
        assert_eq!(quota_us(128), 7_236);
        assert_eq!(quota_us(10_240), 578_858);
    }

    #[test]
    fn smallest_standard_size() {
        assert_eq!(smallest_fit(185 << 20), Some(256));
        assert_eq!(
            smallest_fit(256 << 20),
            Some(512),
            "the limit itself does not fit"
        );
        assert_eq!(smallest_fit(290 << 20), Some(512));
        assert_eq!(smallest_fit(20 << 30), None);
    }

    #[test]
    fn the_check_names_the_limit_and_the_peak() {
        let stats = Stats {
            memory_peak_bytes: Some(300 << 20),
            oom_kills: Some(0),
            nr_throttled: Some(12),
        };
        let c = check(1024, &stats, Some(290 << 20));
        assert!(c.ok, "{c:?}");
        assert!(
            c.detail
                .contains("peak RSS 290 MB against the 1024 MB limit"),
            "{c:?}"
        );
        assert!(c.detail.contains("fits in 512 MB"), "{c:?}");
        let c = check(256, &stats, Some(290 << 20));
        assert!(!c.ok);
        let killed = Stats {
            oom_kills: Some(1),
            ..stats
        };
        let c = check(128, &killed, None);
        assert!(!c.ok);
        assert!(c.detail.contains("OOM killer killed 1"), "{c:?}");
        assert!(c.detail.contains("128 MB limit"), "{c:?}");
    }
}

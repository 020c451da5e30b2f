//! A throw-away control group that caps the CPU (a CFS quota) and the memory of the processes
//! started in it: how `verify --memory` gives the sandbox Lambda's CPU share and memory limit.
//!
//! cgroup v2 is used when the cgroup this process sits in offers the `cpu` and `memory`
//! controllers to its children (or can be made to); otherwise cgroup v1, when both a `cpu`
//! and a `memory` hierarchy are mounted; otherwise [`Group::create`] says why neither is
//! usable. The new group is made *below* the cgroup this process already belongs to, so an
//! outer limit (a container's, a CI runner's) still applies to everything inside it. The
//! group is removed when the [`Group`] is dropped.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// Which cgroup interface a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The CFS period every quota is expressed against, in microseconds (the kernel's default).
pub const PERIOD_US: u64 = 100_000;

/// One control group (v2), or one group in each of the `cpu` and `memory` hierarchies (v1).
#[derive(Debug)]
pub struct Group {
    pub version: Version,
    cpu: Utf8PathBuf,
    memory: Utf8PathBuf,
}

/// What the kernel counted for a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The most memory charged at once (page cache and tmpfs included), in bytes.
    pub memory_peak_bytes: Option<u64>,
    /// Processes the OOM killer killed at the group's limit.
    pub oom_kills: Option<u64>,
    /// CFS periods in which the group ran out of its quota.
    pub nr_throttled: Option<u64>,
}

impl Group {
    /// Makes a new, unlimited group named after `prefix`; the error says why neither cgroup
    /// version can be used here.
    pub fn create(prefix: &str) -> Result<Group> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mountinfo = fs_err::read_to_string("/proc/self/mountinfo")?;
        let own = fs_err::read_to_string("/proc/self/cgroup")?;
        let v2 = match v2_parent(&mountinfo, &own) {
            Ok(parent) => return make(Version::V2, &parent.join(&name), &parent.join(&name)),
            Err(why) => why,
        };
        match v1_parents(&mountinfo, &own) {
            Ok((cpu, memory)) => make(Version::V1, &cpu.join(&name), &memory.join(&name)),
            Err(v1) => bail!(
                "no usable cgroup for Lambda's CPU and memory limits: cgroup v2: {v2}; cgroup v1: \
                 {v1} (run as root on a machine with the cpu and memory controllers)"
            ),
        }
    }

    /// Caps the memory at `bytes`, with no swap beyond it.
    pub fn set_memory_limit(&self, bytes: u64) -> Result<()> {
        match self.version {
            Version::V2 => {
                write(&self.memory.join("memory.max"), &bytes.to_string())?;
                let swap = self.memory.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
            }
            Version::V1 => {
                write(
                    &self.memory.join("memory.limit_in_bytes"),
                    &bytes.to_string(),
                )?;
                // Present only when the kernel accounts swap; memory + swap = memory: no swap.
                let memsw = self.memory.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &bytes.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The file that holds the CPU quota: writing [`Group::quota_text`] into it changes it.
    pub fn cpu_quota_file(&self) -> Utf8PathBuf {
        match self.version {
            Version::V2 => self.cpu.join("cpu.max"),
            Version::V1 => self.cpu.join("cpu.cfs_quota_us"),
        }
    }

    /// What to write into [`Group::cpu_quota_file`] for `quota_us` per [`PERIOD_US`], or for
    /// no limit.
    pub fn quota_text(&self, quota_us: Option<u64>) -> String {
        match (self.version, quota_us) {
            (Version::V2, Some(q)) => format!("{q} {PERIOD_US}"),
            (Version::V2, None) => format!("max {PERIOD_US}"),
            (Version::V1, Some(q)) => q.to_string(),
            (Version::V1, None) => "-1".to_owned(),
        }
    }

    /// Sets the CPU quota (None: unlimited).
    pub fn set_cpu_quota(&self, quota_us: Option<u64>) -> Result<()> {
        if self.version == Version::V1 {
            write(&self.cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
        }
        write(&self.cpu_quota_file(), &self.quota_text(quota_us))
    }

    /// Gives the group `factor` times the usual CPU weight (v1 `cpu.shares`, v2 `cpu.weight`)
    /// against its siblings: on a busy machine the quota, not the machine's other load,
    /// should set the share a process of the group gets.
    pub fn set_cpu_weight_factor(&self, factor: u64) -> Result<()> {
        match self.version {
            Version::V2 => write(&self.cpu.join("cpu.weight"), &(100 * factor).to_string()),
            Version::V1 => write(&self.cpu.join("cpu.shares"), &(1024 * factor).to_string()),
        }
    }

    /// `program args...` started inside the group: a shell moves itself into the group
    /// (writing 0 to `cgroup.procs` moves the writer) and then becomes the program, so no
    /// child of it can start outside the group.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"while [ "$1" != -- ]; do echo 0 > "$1" || exit 125; shift; done; shift; exec "$@""#)
            .arg("sh");
        cmd.arg(self.cpu.join("cgroup.procs"));
        if self.memory != self.cpu {
            cmd.arg(self.memory.join("cgroup.procs"));
        }
        cmd.arg("--").arg(program);
        cmd
    }

    /// What the kernel counted so far.
    pub fn stats(&self) -> Stats {
        let read = |p: Utf8PathBuf| std::fs::read_to_string(p).ok();
        let key = |text: Option<String>, key: &str| {
            text.and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            })
        };
        let number = |text: Option<String>| text.and_then(|t| t.trim().parse().ok());
        match self.version {
            Version::V2 => Stats {
                memory_peak_bytes: number(read(self.memory.join("memory.peak"))),
                oom_kills: key(read(self.memory.join("memory.events")), "oom_kill "),
                nr_throttled: key(read(self.cpu.join("cpu.stat")), "nr_throttled "),
            },
            Version::V1 => Stats {
                memory_peak_bytes: number(read(self.memory.join("memory.max_usage_in_bytes"))),
                oom_kills: key(read(self.memory.join("memory.oom_control")), "oom_kill "),
                nr_throttled: key(read(self.cpu.join("cpu.stat")), "nr_throttled "),
            },
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Refused (EBUSY) while a process is inside, which includes one that has exited and
        // been reaped a moment ago: the kernel moves it out asynchronously. So try for a while.
        for dir in [&self.cpu, &self.memory] {
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

fn make(version: Version, cpu: &Utf8Path, memory: &Utf8Path) -> Result<Group> {
    for dir in [cpu, memory] {
        if !dir.exists() {
            fs_err::create_dir(dir).context("creating a control group (root is needed)")?;
        }
    }
    Ok(Group {
        version,
        cpu: cpu.to_owned(),
        memory: memory.to_owned(),
    })
}

fn write(path: &Utf8Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing `{text}` to {path}"))
}

/// Mount points of `fstype` in `/proc/self/mountinfo`: (mount root, mount point, super options).
fn mounts<'a>(mountinfo: &'a str, fstype: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            (right.first() == Some(&fstype))
                .then(|| Some((*fields.get(3)?, *fields.get(4)?, *right.get(2)?)))
                .flatten()
        })
        .collect()
}

/// `mount_point` + the part of `path` below the mount's root.
fn under(root: &str, mount_point: &str, path: &str) -> Utf8PathBuf {
    let rel = path
        .strip_prefix(root)
        .unwrap_or(path)
        .trim_start_matches('/');
    Utf8PathBuf::from(mount_point).join(rel)
}

/// The v2 cgroup this process is in, if its children can get `cpu` and `memory`.
fn v2_parent(mountinfo: &str, own: &str) -> Result<Utf8PathBuf, String> {
    let Some((root, point, _)) = mounts(mountinfo, "cgroup2").into_iter().next() else {
        return Err("not mounted".to_owned());
    };
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Err("this process is in no v2 group".to_owned());
    };
    let dir = under(root, point, path);
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !has("cpu") || !has("memory") {
        return Err(format!(
            "{dir}/cgroup.controllers offers `{}`, not cpu and memory",
            controllers.trim()
        ));
    }
    let subtree = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&subtree).unwrap_or_default();
    let on = |c: &str| enabled.split_whitespace().any(|x| x == c);
    if !(on("cpu") && on("memory")) {
        // Refused (EBUSY) when processes sit in `dir` itself: v2 has no internal processes.
        std::fs::write(&subtree, "+cpu +memory")
            .map_err(|e| format!("cannot enable cpu and memory in {subtree}: {e}"))?;
    }
    Ok(dir)
}

/// The v1 `cpu` and `memory` groups this process is in.
fn v1_parents(mountinfo: &str, own: &str) -> Result<(Utf8PathBuf, Utf8PathBuf), String> {
    let find = |controller: &str| -> Result<Utf8PathBuf, String> {
        let has = |opts: &str| opts.split(',').any(|o| o == controller);
        let (root, point, _) = mounts(mountinfo, "cgroup")
            .into_iter()
            .find(|(_, _, opts)| has(opts))
            .ok_or_else(|| format!("no `{controller}` hierarchy is mounted"))?;
        let path = own
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                has(list).then_some(path)
            })
            .ok_or_else(|| format!("this process is in no `{controller}` group"))?;
        Ok(under(root, point, path))
    };
    Ok((find("cpu")?, find("memory")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN: &str = "4:memory:/jobs/a\n1:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn finds_the_v1_groups_this_process_is_in() {
        let (cpu, memory) = v1_parents(MOUNTINFO, OWN).expect("v1");
        assert_eq!(cpu, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(memory, "/sys/fs/cgroup/memory/jobs/a");
        let err = v1_parents(MOUNTINFO, "1:cpu,cpuacct:/\n").expect_err("no memory group");
        assert!(err.contains("no `memory` group"), "{err}");
        let err = v1_parents("", OWN).expect_err("nothing mounted");
        assert!(err.contains("no `cpu` hierarchy"), "{err}");
    }

    #[test]
    fn v2_without_controllers_says_so() {
        let err = v2_parent("", OWN).expect_err("not mounted");
        assert_eq!(err, "not mounted");
        let err = v2_parent(MOUNTINFO, "4:memory:/x\n").expect_err("no v2 line");
        assert!(err.contains("no v2 group"), "{err}");
    }

    #[test]
    fn v2_is_used_where_its_controllers_are_offered() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mount = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).expect("utf-8");
        let own = mount.join("jobs/a");
        fs_err::create_dir_all(&own).expect("mkdir");
        let info = format!("41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n");
        fs_err::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("w");
        fs_err::write(own.join("cgroup.subtree_control"), "cpu memory\n").expect("w");
        assert_eq!(v2_parent(&info, "0::/jobs/a\n"), Ok(own.clone()));
        fs_err::write(own.join("cgroup.controllers"), "cpuset io pids\n").expect("w");
        let err = v2_parent(&info, "0::/jobs/a\n").expect_err("no cpu controller");
        assert!(err.contains("not cpu and memory"), "{err}");
    }

    #[test]
    fn quota_texts_per_version() {
        let g = |version| Group {
            version,
            cpu: "/nonexistent/c".into(),
            memory: "/nonexistent/m".into(),
        };
        assert_eq!(g(Version::V1).quota_text(Some(28_943)), "28943");
        assert_eq!(g(Version::V1).quota_text(None), "-1");
        assert_eq!(g(Version::V2).quota_text(Some(28_943)), "28943 100000");
        assert_eq!(g(Version::V2).quota_text(None), "max 100000");
        assert_eq!(g(Version::V2).cpu_quota_file(), "/nonexistent/c/cpu.max");
    }
}

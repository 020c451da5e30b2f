//! CPU time used by this process: its threads, and the child processes it has waited for.
//! Read from `/proc/self/stat`, so a step's CPU seconds beside its wall seconds show how well
//! it used the cores (and that a compile step's interpreters are counted once they exit).
//!
//! bubblewrap does not pass the CPU time of what ran inside it on to its parent, so the
//! sandboxed supervisor reports its own, and [`add_unseen`] adds it here.

use std::sync::atomic::{AtomicU64, Ordering};

/// Microseconds reported by sandboxes, which `/proc/self/stat` does not show.
static UNSEEN_MICROS: AtomicU64 = AtomicU64::new(0);

/// User plus system seconds of this process, its waited-for children and the sandboxes'
/// reports, or `None` where `/proc/self/stat` cannot be read or parsed.
pub fn seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = parse_ticks(&stat)?;
    let unseen = UNSEEN_MICROS.load(Ordering::Relaxed) as f64 / 1e6;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64 + unseen)
}

/// Counts `seconds` of CPU time that processes this one waited for used out of its sight (a
/// sandbox's supervisor and everything it ran).
pub fn add_unseen(seconds: f64) {
    if seconds.is_finite() && seconds > 0.0 {
        UNSEEN_MICROS.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// The sum of utime, stime, cutime and cstime (fields 14 to 17 of proc(5)), counted after the
/// command name, which is in parentheses and may hold spaces and parentheses itself.
fn parse_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; utime is field 14.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let mut sum = 0u64;
    for f in fields.get(11..15)? {
        // cutime and cstime are signed in the kernel's format; negative never happens.
        sum += f.parse::<i64>().ok()?.max(0) as u64;
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_time_fields_are_summed_after_a_name_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority ...
        let stat = "4242 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 100 20 3 4 20 0 1";
        assert_eq!(parse_ticks(stat), Some(127));
        assert_eq!(parse_ticks("4242 (x) R 1 2"), None, "too few fields");
        assert_eq!(parse_ticks("no name here"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_the_count_only_grows() {
        let before = seconds().expect("/proc/self/stat is readable on Linux");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = seconds().unwrap();
        assert!(after >= before && after > 0.0, "{before} then {after}");
        add_unseen(2.5);
        add_unseen(f64::NAN);
        add_unseen(-1.0);
        let reported = seconds().unwrap();
        assert!(reported >= after + 2.5, "{after} then {reported}");
    }
}

//! Running independent file operations on a few threads: a warm rebuild copies, writes and
//! deletes thousands of small files, and each costs a system call or several whose time is
//! mostly spent waiting in the kernel.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;

/// How many threads: the machine's cores, at least 2 (the work waits on the file system as
/// much as on a core) and at most 4.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// `f` of every item, run on `threads()` threads, in the items' order. Every item is tried;
/// when some fail, the error of the first failing one (in item order) is returned, so the
/// message does not depend on which thread got there first.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    if items.len() < 2 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut results: Vec<(usize, Result<R>)> = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads().min(items.len()))
            .map(|_| s.spawn(work))
            .collect();
        let mut all = work();
        for h in others {
            // A panic in a worker is a bug: it goes on in this thread as one.
            all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        all
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_and_the_first_error_wins() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map(&items, |&i| Ok(i * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = map(&items, |&i| {
            if i % 300 == 299 {
                anyhow::bail!("item {i}")
            }
            Ok(i)
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 299");
        assert!(map(&[] as &[u32], |&i| Ok(i)).unwrap().is_empty());
    }
}

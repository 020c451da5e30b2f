//! Per-request overhead of the worker against a fresh interpreter per call.
//!
//! `cargo bench -p pythonexec-rs --bench worker [-- --json] [--python PATH]`
//!
//! - `ping`: 2,000 sequential no-op requests through one worker (median, p99).
//! - `ping x64`: 64 tasks issuing pings concurrently (throughput).
//! - `run_python`: a fresh `python -c` per call (median of 20).

use std::time::{Duration, Instant};

use pythonexec::{run_python, Interpreter, RunOptions, Worker, WorkerConfig};

const SEQUENTIAL: usize = 2_000;
const CONCURRENT_TASKS: usize = 64;
const CONCURRENT_PER_TASK: usize = 200;
const FRESH: usize = 20;

struct Row {
    name: &'static str,
    count: usize,
    median_us: f64,
    p99_us: f64,
    per_second: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn row(name: &'static str, mut samples: Vec<Duration>, wall: Duration) -> Row {
    samples.sort();
    Row {
        name,
        count: samples.len(),
        median_us: percentile(&samples, 0.5),
        p99_us: percentile(&samples, 0.99),
        per_second: samples.len() as f64 / wall.as_secs_f64(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let python = args
        .iter()
        .position(|a| a == "--python")
        .and_then(|i| args.get(i + 1))
        .map(Interpreter::explicit)
        .unwrap_or_else(|| Interpreter::locate(None));

    let worker = Worker::spawn(WorkerConfig::default().interpreter(python.clone()))?;
    worker.ready().await?;
    for _ in 0..200 {
        worker.ping().await?;
    }

    let mut samples = Vec::with_capacity(SEQUENTIAL);
    let wall = Instant::now();
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        worker.ping().await?;
        samples.push(t.elapsed());
    }
    let sequential = row("worker ping (sequential)", samples, wall.elapsed());

    let wall = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|_| {
            let worker = worker.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(CONCURRENT_PER_TASK);
                for _ in 0..CONCURRENT_PER_TASK {
                    let t = Instant::now();
                    worker.ping().await?;
                    samples.push(t.elapsed());
                }
                Ok::<_, pythonexec::Error>(samples)
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    let concurrent = row("worker ping (64 concurrent)", samples, wall.elapsed());

    let mut samples = Vec::with_capacity(FRESH);
    let wall = Instant::now();
    for _ in 0..FRESH {
        let t = Instant::now();
        run_python(
            "print('null')",
            RunOptions::default().interpreter(python.clone()),
        )
        .await?;
        samples.push(t.elapsed());
    }
    let fresh = row("run_python (fresh process)", samples, wall.elapsed());
    worker.shutdown().await?;

    let rows = [sequential, concurrent, fresh];
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "count": r.count, "median_us": r.median_us,
                    "p99_us": r.p99_us, "per_second": r.per_second,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"interpreter": python.to_string(), "results": out})
        );
    } else {
        println!("interpreter: {python}");
        println!(
            "{:<30} {:>7} {:>12} {:>12} {:>12}",
            "benchmark", "n", "median µs", "p99 µs", "req/s"
        );
        for r in &rows {
            println!(
                "{:<30} {:>7} {:>12.1} {:>12.1} {:>12.0}",
                r.name, r.count, r.median_us, r.p99_us, r.per_second
            );
        }
    }
    Ok(())
}

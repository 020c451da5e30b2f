//! A persistent Python process answering many concurrent requests.
//!
//! The Python side is `worker.py`, embedded below and run as `python -u -c <script>`.
//! `-I` is not used: it would ignore the `PYTHONHOME`/`PYTHONPATH` the layer's interpreter
//! needs. The script itself drops the current directory from `sys.path` instead.

mod call;
mod process;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::interpreter::Interpreter;

use call::Call;
pub use call::ReplyStream;
use process::{died, spawn_process, Process};
use wire::Envelope;
pub use wire::Op;

/// The protocol version this library speaks; the worker announces its own in `ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The Python half of the protocol, `src/worker.py`. The layer build ships this same text
/// at [`WORKER_PY_IN_LAYER`](crate::WORKER_PY_IN_LAYER), where the Node.js client finds it.
pub const WORKER_PY: &str = include_str!("../worker.py");

/// How to start and drive the worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `None`: [`Interpreter::locate(None)`](Interpreter::locate).
    pub interpreter: Option<Interpreter>,
    /// How long the first request waits for the process to announce it is ready.
    pub startup_timeout: Duration,
    /// Timeout of requests that do not set their own.
    pub request_timeout: Duration,
    /// How long [`Worker::shutdown`] lets requests in flight finish before killing.
    pub shutdown_grace: Duration,
    /// Modules imported before the worker says it is ready (e.g. `litellm`, at Lambda INIT).
    pub preload: Vec<String>,
    /// Threads for synchronous requests (`exec`, `eval`, `call` of a plain function).
    pub threads: usize,
    /// Extra environment variables for the process.
    pub env: Vec<(String, String)>,
    /// Working directory of the process (`None`: inherited). Whatever it is, it is not on
    /// Python's `sys.path`: the worker removes it.
    pub current_dir: Option<std::path::PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            interpreter: None,
            startup_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(5),
            preload: Vec::new(),
            threads: 16,
            env: Vec::new(),
            current_dir: None,
        }
    }
}

impl WorkerConfig {
    pub fn interpreter(mut self, interpreter: Interpreter) -> Self {
        self.interpreter = Some(interpreter);
        self
    }

    pub fn preload<I: IntoIterator<Item = S>, S: Into<String>>(mut self, modules: I) -> Self {
        self.preload = modules.into_iter().map(Into::into).collect();
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }
}

/// Whether [`Worker::spawn_within`] saw the worker ready in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready (preload imported) after this long.
    Ready { after: Duration },
    /// The deadline passed first; why, in words.
    NotYet { reason: String },
}

#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    config: WorkerConfig,
    interpreter: Interpreter,
    current: Mutex<Option<Arc<Process>>>,
    generation: AtomicU64,
    next_id: AtomicU64,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("interpreter", &self.inner.interpreter.to_string())
            .field("pid", &self.pid())
            .finish()
    }
}

impl Worker {
    /// Start the process and return at once. Must be called inside a tokio runtime.
    ///
    /// Fails only when the interpreter cannot be started at all.
    pub fn spawn(config: WorkerConfig) -> Result<Worker> {
        let interpreter = config
            .interpreter
            .clone()
            .unwrap_or_else(|| Interpreter::locate(None));
        let worker = Worker {
            inner: Arc::new(Inner {
                config,
                interpreter,
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                shut_down: AtomicBool::new(false),
            }),
        };
        worker.inner.process()?;
        Ok(worker)
    }

    /// Start the process and wait until it is ready (its [`WorkerConfig::preload`] imported),
    /// at most `deadline`; past the deadline, fall back to [`Worker::spawn`]'s non-blocking
    /// start (the process keeps starting; the first request waits for it) and say why on
    /// stderr. Must be called inside a tokio runtime.
    ///
    /// For Lambda's INIT: INIT runs with an unthrottled CPU for up to 10 s, what follows at
    /// the memory's share of a vCPU (0.29 at 512 MB), so an import finished inside INIT is
    /// several times faster than one left to the first invocation. Keep `deadline` under 10 s
    /// (e.g. 9 s): an INIT that overruns is restarted by Lambda, and billed.
    ///
    /// Fails like [`Worker::spawn`], and when the process exits before it is ready.
    pub async fn spawn_ready(config: WorkerConfig, deadline: Duration) -> Result<Worker> {
        let (worker, ready) = Worker::spawn_within(config, deadline).await?;
        if let Readiness::NotYet { reason } = &ready {
            eprintln!("pythonexec: {reason}");
            tracing::warn!("{reason}");
        }
        Ok(worker)
    }

    /// [`Worker::spawn_ready`] without the log line: the worker, and whether it became ready
    /// within `deadline`.
    pub async fn spawn_within(
        config: WorkerConfig,
        deadline: Duration,
    ) -> Result<(Worker, Readiness)> {
        let started = std::time::Instant::now();
        let preload = config.preload.join(", ");
        let worker = Worker::spawn(config)?;
        match tokio::time::timeout(deadline, worker.ready()).await {
            Ok(Ok(())) => Ok((
                worker,
                Readiness::Ready {
                    after: started.elapsed(),
                },
            )),
            Ok(Err(err)) => Err(err),
            Err(_) => {
                let what = if preload.is_empty() {
                    "its start".to_owned()
                } else {
                    format!("importing {preload}")
                };
                let reason = format!(
                    "the python worker was not ready within the {deadline:?} deadline \
                     ({what}); not waiting any longer: it keeps starting and the first \
                     request waits for it"
                );
                Ok((worker, Readiness::NotYet { reason }))
            }
        }
    }

    /// Whether the current process announced it is ready (its preload finished), now.
    pub fn is_ready(&self) -> bool {
        lock(&self.inner.current)
            .as_ref()
            .is_some_and(|p| p.is_ready())
    }

    /// The interpreter this worker runs, and why it was chosen.
    pub fn interpreter(&self) -> &Interpreter {
        &self.inner.interpreter
    }

    /// The pid of the current process, if one is running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.inner.current)
            .as_ref()
            .filter(|p| !p.is_dead())
            .map(|p| p.shared.pid)
    }

    /// How many processes this worker has started (1 after `spawn`, +1 per restart).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Wait until the process (started now if none runs) is ready.
    pub async fn ready(&self) -> Result<()> {
        let process = self.inner.process()?;
        process.wait_ready(self.inner.config.startup_timeout).await
    }

    /// Send a request and wait for its result, within `timeout` (default: the config's).
    ///
    /// Dropping the returned future cancels the request in Python.
    pub async fn request(&self, op: Op, timeout: Option<Duration>) -> Result<Value> {
        let timeout = timeout.unwrap_or(self.inner.config.request_timeout);
        let op_name = op.name();
        let mut call = self.start(&op).await?;
        match tokio::time::timeout(timeout, call.result()).await {
            Ok(result) => result,
            Err(_) => Err(Error::RequestTimeout {
                id: call.id,
                op: op_name,
                timeout,
            }),
        }
    }

    /// Send a request whose reply streams; the stream ends after the last chunk.
    ///
    /// `timeout` bounds the whole stream. Dropping the stream cancels the request.
    pub async fn request_stream(&self, op: Op, timeout: Option<Duration>) -> Result<ReplyStream> {
        let timeout = timeout.unwrap_or(self.inner.config.request_timeout);
        let op_name = op.name();
        let call = self.start(&op).await?;
        Ok(ReplyStream {
            call,
            op: op_name,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            finished: false,
        })
    }

    pub async fn ping(&self) -> Result<()> {
        self.request(Op::Ping, None).await.map(drop)
    }

    /// Run `code` with `input` bound; returns the value of its variable `result`.
    pub async fn exec(&self, code: &str, input: Value) -> Result<Value> {
        let op = Op::Exec {
            code: code.to_owned(),
            input,
        };
        self.request(op, None).await
    }

    /// Evaluate `expr` (awaited if it is a coroutine).
    pub async fn eval(&self, expr: &str) -> Result<Value> {
        let op = Op::Eval {
            expr: expr.to_owned(),
            input: Value::Null,
        };
        self.request(op, None).await
    }

    /// Call `function` (dotted name) with JSON arguments.
    pub async fn call(
        &self,
        function: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value> {
        let op = Op::Call {
            function: function.to_owned(),
            args,
            kwargs,
        };
        self.request(op, None).await
    }

    /// Ask the process to stop; requests in flight get `shutdown_grace` to finish, then it is
    /// killed. Later requests fail with [`Error::ShutDown`].
    pub async fn shutdown(&self) -> Result<()> {
        self.inner.shut_down.store(true, Ordering::SeqCst);
        let Some(process) = lock(&self.inner.current).take() else {
            return Ok(());
        };
        process.send(b"{\"op\":\"shutdown\"}\n".to_vec());
        let mut exit = process.shared.exit.subscribe();
        let grace = self.inner.config.shutdown_grace;
        if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
            .await
            .is_err()
        {
            tracing::warn!(
                pid = process.shared.pid,
                "python worker did not stop in {grace:?}; killing it"
            );
            process.shared.kill.notify_one();
            let _ = exit.wait_for(Option::is_some).await;
        }
        Ok(())
    }

    async fn start(&self, op: &Op) -> Result<Call> {
        let process = self.inner.process()?;
        process
            .wait_ready(self.inner.config.startup_timeout)
            .await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&Envelope { id, op }).map_err(Error::Encode)?;
        line.push(b'\n');
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut pending = lock(&process.shared.pending);
            match pending.as_mut() {
                Some(map) => {
                    map.insert(id, tx);
                }
                None => return Err(died(&process.shared)),
            }
        }
        let call = Call {
            id,
            rx,
            process,
            done: false,
        };
        if !call.process.send(line) {
            return Err(died(&call.process.shared));
        }
        Ok(call)
    }
}

impl Inner {
    /// The live process, or a new one.
    fn process(&self) -> Result<Arc<Process>> {
        let mut current = lock(&self.current);
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(Error::ShutDown);
        }
        if let Some(process) = current.as_ref().filter(|p| !p.is_dead()) {
            return Ok(Arc::clone(process));
        }
        if let Some(old) = current.as_ref() {
            tracing::info!(
                old_pid = old.shared.pid,
                generation = old.generation,
                "python worker is dead; starting a new one"
            );
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let process = Arc::new(spawn_process(&self.interpreter, &self.config, generation)?);
        *current = Some(Arc::clone(&process));
        Ok(process)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data; keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_worker_speaks_this_protocol_version() {
        assert!(WORKER_PY.contains(&format!("PROTOCOL = {PROTOCOL_VERSION}\n")));
    }
}

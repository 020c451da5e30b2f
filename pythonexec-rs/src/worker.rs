//! A persistent Python process answering many concurrent requests.
//!
//! The Python side is `worker.py`, embedded below and run as `python -u -c <script>`.
//! `-I` is not used: it would ignore the `PYTHONHOME`/`PYTHONPATH` the layer's interpreter
//! needs. The script itself drops the current directory from `sys.path` instead.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch, Notify};

use crate::error::{tail, Error, PythonException, Result};
use crate::interpreter::Interpreter;
use crate::run::{spawn_error, STDERR_TAIL};

/// The protocol version this library speaks; the worker announces its own in `ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The Python half of the protocol, `src/worker.py`. The layer build ships this same text
/// at [`WORKER_PY_IN_LAYER`](crate::WORKER_PY_IN_LAYER), where the Node.js client finds it.
pub const WORKER_PY: &str = include_str!("worker.py");
const STDERR_LINES: usize = 40;

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
}

/// A request, as it goes on the wire (with an `id` added).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Does nothing; answers `null`. For health and benchmarks.
    Ping,
    /// Run statements with `input` bound; the reply is the variable `result`.
    Exec { code: String, input: Value },
    /// Evaluate an expression with `input` bound; an awaitable result is awaited.
    Eval { expr: String, input: Value },
    /// Call a function by dotted name (`"json.dumps"`, `"mypkg.mod.func"`).
    Call {
        function: String,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    },
    /// `litellm.acompletion(**params)`; streamed as chunks when `params.stream` is true.
    Completion { params: Value },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Exec { .. } => "exec",
            Op::Eval { .. } => "eval",
            Op::Call { .. } => "call",
            Op::Completion { .. } => "completion",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: u64,
    #[serde(flatten)]
    op: &'a Op,
}

#[derive(Deserialize)]
struct Incoming {
    id: Option<u64>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: Value,
    error: Option<PythonException>,
    protocol: Option<u32>,
    message: Option<String>,
}

#[derive(Debug)]
enum Reply {
    Chunk(Value),
    Result(Value),
    Error(PythonException),
    Cancelled,
    Died(Arc<Death>),
}

#[derive(Debug)]
struct Death {
    pid: u32,
    status: String,
    stderr_tail: String,
}

impl Death {
    fn error(&self) -> Error {
        Error::WorkerDied {
            pid: self.pid,
            status: self.status.clone(),
            stderr_tail: self.stderr_tail.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Starting,
    Ready,
    Dead,
}

/// What the background tasks of one process share.
struct Shared {
    pid: u32,
    /// The interpreter and why it was chosen, for errors.
    interpreter: String,
    /// `None` once the process is dead: no request can be added after that.
    pending: Mutex<Option<HashMap<u64, mpsc::UnboundedSender<Reply>>>>,
    state: watch::Sender<State>,
    death: OnceLock<Arc<Death>>,
    not_ready_reason: OnceLock<String>,
    protocol_mismatch: OnceLock<u32>,
    stderr: Mutex<VecDeque<String>>,
    stderr_closed: watch::Sender<bool>,
    exit: watch::Sender<Option<String>>,
    kill: Notify,
}

impl Shared {
    fn stderr_tail(&self) -> String {
        let lines = lock(&self.stderr);
        let joined: Vec<&str> = lines.iter().map(String::as_str).collect();
        tail(&joined.join("\n"), STDERR_TAIL)
    }
}

/// One running Python process.
struct Process {
    shared: Arc<Shared>,
    lines: mpsc::UnboundedSender<Vec<u8>>,
    generation: u64,
}

impl Process {
    fn is_dead(&self) -> bool {
        matches!(*self.shared.state.borrow(), State::Dead)
    }

    fn send(&self, line: Vec<u8>) -> bool {
        self.lines.send(line).is_ok()
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.shared.state.subscribe();
        let waited =
            tokio::time::timeout(timeout, rx.wait_for(|s| !matches!(s, State::Starting))).await;
        match waited {
            Ok(Ok(state)) if matches!(*state, State::Ready) => Ok(()),
            Ok(_) => {
                if let Some(&found) = self.shared.protocol_mismatch.get() {
                    return Err(Error::ProtocolVersion {
                        expected: PROTOCOL_VERSION,
                        found,
                    });
                }
                let reason = match (self.shared.not_ready_reason.get(), self.shared.death.get()) {
                    (Some(reason), _) => reason.clone(),
                    (None, Some(death)) => format!(
                        "it exited ({}) before it was ready; stderr ends with: {}",
                        death.status, death.stderr_tail
                    ),
                    (None, None) => "it exited before it was ready".to_owned(),
                };
                Err(Error::WorkerStart {
                    pid: self.shared.pid,
                    interpreter: self.shared.interpreter.clone(),
                    reason,
                })
            }
            Err(_) => {
                let _ = self
                    .shared
                    .not_ready_reason
                    .set(format!("not ready within {timeout:?}"));
                self.shared.kill.notify_one();
                Err(Error::WorkerStart {
                    pid: self.shared.pid,
                    interpreter: self.shared.interpreter.clone(),
                    reason: format!(
                        "not ready within {timeout:?}; killed; stderr ends with: {}",
                        self.shared.stderr_tail()
                    ),
                })
            }
        }
    }
}

/// A handle on the persistent worker; cheap to clone, usable from many tasks at once.
///
/// The process is started by [`Worker::spawn`] without waiting for it; the first request
/// waits until it is ready. When the process dies, requests in flight fail with
/// [`Error::WorkerDied`] and the next request starts a new process.
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

fn died(shared: &Shared) -> Error {
    match shared.death.get() {
        Some(death) => death.error(),
        None => Error::WorkerDied {
            pid: shared.pid,
            status: "unknown".to_owned(),
            stderr_tail: shared.stderr_tail(),
        },
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

fn spawn_process(
    interpreter: &Interpreter,
    config: &WorkerConfig,
    generation: u64,
) -> Result<Process> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::Spawn {
            interpreter: interpreter.to_string(),
            source: std::io::Error::other("the worker must be started inside a tokio runtime"),
        });
    }
    let program = interpreter.resolve()?;
    let mut cmd = interpreter.command(&program);
    cmd.args(["-u", "-c", WORKER_PY])
        .env("PYTHONEXEC_PRELOAD", config.preload.join(","))
        .env("PYTHONEXEC_THREADS", config.threads.max(1).to_string())
        .env(
            "PYTHONEXEC_DRAIN_SECONDS",
            config.shutdown_grace.as_secs_f64().to_string(),
        )
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|source| spawn_error(interpreter, source))?;
    let pid = child.id().unwrap_or(0);
    tracing::info!(pid, generation, interpreter = %interpreter, "started python worker");

    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Error::Spawn {
            interpreter: interpreter.to_string(),
            source: std::io::Error::other("child has no pipes"),
        });
    };

    let shared = Arc::new(Shared {
        pid,
        interpreter: interpreter.to_string(),
        pending: Mutex::new(Some(HashMap::new())),
        state: watch::Sender::new(State::Starting),
        death: OnceLock::new(),
        not_ready_reason: OnceLock::new(),
        protocol_mismatch: OnceLock::new(),
        stderr: Mutex::new(VecDeque::new()),
        stderr_closed: watch::Sender::new(false),
        exit: watch::Sender::new(None),
        kill: Notify::new(),
    });
    let (lines, lines_rx) = mpsc::unbounded_channel();

    tokio::spawn(write_lines(stdin, lines_rx));
    tokio::spawn(log_stderr(stderr, Arc::clone(&shared)));
    tokio::spawn(supervise(child, Arc::clone(&shared)));
    tokio::spawn(read_replies(stdout, Arc::clone(&shared)));

    Ok(Process {
        shared,
        lines,
        generation,
    })
}

/// Batches whatever is queued into one write; ends (closing stdin) when every sender is gone.
async fn write_lines(stdin: tokio::process::ChildStdin, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut out = BufWriter::with_capacity(64 * 1024, stdin);
    while let Some(line) = rx.recv().await {
        if out.write_all(&line).await.is_err() {
            return;
        }
        while let Ok(line) = rx.try_recv() {
            if out.write_all(&line).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

async fn log_stderr(stderr: tokio::process::ChildStderr, shared: Arc<Shared>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "pythonexec::python", pid = shared.pid, "{line}");
        let mut tail = lock(&shared.stderr);
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    shared.stderr_closed.send_replace(true);
}

async fn supervise(mut child: tokio::process::Child, shared: Arc<Shared>) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = shared.kill.notified() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let status = match status {
        Ok(status) => status.to_string(),
        Err(err) => format!("unknown exit status: {err}"),
    };
    tracing::info!(pid = shared.pid, %status, "python worker exited");
    shared.exit.send_replace(Some(status));
}

async fn read_replies(stdout: tokio::process::ChildStdout, shared: Arc<Shared>) {
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let incoming: Incoming = match serde_json::from_slice(&buf) {
            Ok(incoming) => incoming,
            Err(err) => {
                tracing::warn!(
                    pid = shared.pid,
                    "python worker wrote a line that is not a reply: {err}"
                );
                continue;
            }
        };
        dispatch(&shared, incoming);
    }
    // stdout closed: the process is gone or going. Wait for its exit status for the error.
    let mut exit = shared.exit.subscribe();
    if tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some))
        .await
        .is_err()
    {
        shared.kill.notify_one();
        let _ = exit.wait_for(Option::is_some).await;
    }
    let status = exit.borrow().clone().unwrap_or_default();
    // stderr may still hold the last words (a traceback): read it to the end, within reason
    // (a grandchild could keep it open).
    let mut stderr_closed = shared.stderr_closed.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_closed.wait_for(|c| *c)).await;
    let death = Arc::new(Death {
        pid: shared.pid,
        status,
        stderr_tail: shared.stderr_tail(),
    });
    let _ = shared.death.set(Arc::clone(&death));
    shared.state.send_replace(State::Dead);
    let pending = lock(&shared.pending).take().unwrap_or_default();
    if !pending.is_empty() {
        tracing::warn!(
            pid = shared.pid,
            in_flight = pending.len(),
            "python worker died with requests in flight"
        );
    }
    for (_, tx) in pending {
        let _ = tx.send(Reply::Died(Arc::clone(&death)));
    }
}

fn dispatch(shared: &Shared, incoming: Incoming) {
    let reply = match incoming.kind.as_str() {
        "ready" => {
            let found = incoming.protocol.unwrap_or(0);
            if found == PROTOCOL_VERSION {
                shared.state.send_replace(State::Ready);
            } else {
                let _ = shared.protocol_mismatch.set(found);
                shared.kill.notify_one();
            }
            return;
        }
        "protocol_error" => {
            tracing::warn!(
                pid = shared.pid,
                "python worker: {}",
                incoming.message.unwrap_or_default()
            );
            return;
        }
        "chunk" => Reply::Chunk(incoming.value),
        "result" => Reply::Result(incoming.value),
        "cancelled" => Reply::Cancelled,
        "error" => Reply::Error(incoming.error.unwrap_or_else(|| PythonException {
            exc_type: "Unknown".to_owned(),
            message: "error reply without details".to_owned(),
            traceback: String::new(),
        })),
        other => {
            tracing::warn!(
                pid = shared.pid,
                "python worker sent an unknown reply type {other:?}"
            );
            return;
        }
    };
    let Some(id) = incoming.id else { return };
    let terminal = !matches!(reply, Reply::Chunk(_));
    let mut pending = lock(&shared.pending);
    let Some(map) = pending.as_mut() else { return };
    let tx = if terminal {
        map.remove(&id)
    } else {
        map.get(&id).cloned()
    };
    drop(pending);
    if let Some(tx) = tx {
        let _ = tx.send(reply);
    }
}

/// One request in flight. Dropping it before the end cancels the request in Python.
struct Call {
    id: u64,
    rx: mpsc::UnboundedReceiver<Reply>,
    process: Arc<Process>,
    done: bool,
}

impl Call {
    async fn result(&mut self) -> Result<Value> {
        loop {
            let reply = self.rx.recv().await;
            if let Some(outcome) = self.settle(reply) {
                return outcome;
            }
        }
    }

    /// `None` for a chunk (keep going), else the final outcome.
    fn settle(&mut self, reply: Option<Reply>) -> Option<Result<Value>> {
        let outcome = match reply {
            Some(Reply::Chunk(_)) => return None,
            Some(Reply::Result(value)) => Ok(value),
            Some(Reply::Error(exc)) => Err(Error::Python(exc)),
            Some(Reply::Cancelled) => Err(Error::Cancelled { id: self.id }),
            Some(Reply::Died(death)) => Err(death.error()),
            None => Err(died(&self.process.shared)),
        };
        self.done = true;
        Some(outcome)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(map) = lock(&self.process.shared.pending).as_mut() {
            map.remove(&self.id);
        }
        let line = format!("{{\"op\":\"cancel\",\"target\":{}}}\n", self.id);
        self.process.send(line.into_bytes());
    }
}

/// The chunks of a streamed reply, as JSON values. Implements [`futures_core::Stream`].
pub struct ReplyStream {
    call: Call,
    op: &'static str,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    finished: bool,
}

impl ReplyStream {
    /// The request id, as sent to Python.
    pub fn id(&self) -> u64 {
        self.call.id
    }
}

impl futures_core::Stream for ReplyStream {
    type Item = Result<Value>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(reply) = this.call.rx.poll_recv(cx) {
            return Poll::Ready(match reply {
                Some(Reply::Chunk(value)) => Some(Ok(value)),
                other => {
                    this.finished = true;
                    match this.call.settle(other) {
                        Some(Ok(_)) | None => None,
                        Some(Err(err)) => Some(Err(err)),
                    }
                }
            });
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.finished = true;
            return Poll::Ready(Some(Err(Error::RequestTimeout {
                id: this.call.id,
                op: this.op,
                timeout: this.timeout,
            })));
        }
        Poll::Pending
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data; keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(op: &Op) -> Value {
        serde_json::to_value(Envelope { id: 7, op }).expect("serialize")
    }

    #[test]
    fn requests_have_the_documented_shape() {
        assert_eq!(wire(&Op::Ping), json!({"id": 7, "op": "ping"}));
        assert_eq!(
            wire(&Op::Exec {
                code: "result = 1".into(),
                input: json!([1])
            }),
            json!({"id": 7, "op": "exec", "code": "result = 1", "input": [1]})
        );
        assert_eq!(
            wire(&Op::Call {
                function: "json.dumps".into(),
                args: vec![json!(1)],
                kwargs: Map::new()
            }),
            json!({"id": 7, "op": "call", "function": "json.dumps", "args": [1], "kwargs": {}})
        );
        assert_eq!(
            wire(&Op::Completion {
                params: json!({"model": "m"})
            }),
            json!({"id": 7, "op": "completion", "params": {"model": "m"}})
        );
    }

    #[test]
    fn replies_parse() {
        let r: Incoming = serde_json::from_str(
            r#"{"id":3,"type":"error","error":{"type":"ValueError","message":"m","traceback":"t"}}"#,
        )
        .expect("parse");
        assert_eq!(r.id, Some(3));
        assert_eq!(r.error.map(|e| e.exc_type), Some("ValueError".to_owned()));
        let r: Incoming =
            serde_json::from_str(r#"{"id":null,"type":"ready","protocol":1,"pid":5}"#)
                .expect("parse");
        assert_eq!(r.protocol, Some(PROTOCOL_VERSION));
    }

    #[test]
    fn the_embedded_worker_speaks_this_protocol_version() {
        assert!(WORKER_PY.contains(&format!("PROTOCOL = {PROTOCOL_VERSION}\n")));
    }
}

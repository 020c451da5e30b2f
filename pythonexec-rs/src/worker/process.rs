//! One Python process: starting it, feeding its stdin, reading its replies and its stderr,
//! and noticing its death.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch, Notify};

use super::wire::{parse_line, Incoming, Line};
use super::{lock, WorkerConfig, PROTOCOL_VERSION, WORKER_PY};
use crate::error::{tail, Error, PythonException, Result};
use crate::interpreter::Interpreter;
use crate::run::{spawn_error, STDERR_TAIL};

/// How many stderr lines are kept for the message when the worker dies.
const STDERR_LINES: usize = 40;
/// A longer stderr line is cut (a binary blob without newlines must not grow without end).
const STDERR_LINE_MAX: usize = 16 * 1024;

#[derive(Debug)]
pub(super) enum Reply {
    Chunk(Value),
    Result(Value),
    Error(PythonException),
    Cancelled,
    /// A line for this request that could not be decoded: the raw text and why.
    Bad {
        line: String,
        reason: String,
    },
    Died(Arc<Death>),
}

#[derive(Debug)]
pub(super) struct Death {
    pid: u32,
    status: String,
    stderr_tail: String,
}

impl Death {
    pub(super) fn error(&self) -> Error {
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
pub(super) struct Shared {
    pub(super) pid: u32,
    /// The interpreter and why it was chosen, for errors.
    interpreter: String,
    /// `None` once the process is dead: no request can be added after that.
    pub(super) pending: Mutex<Option<HashMap<u64, mpsc::UnboundedSender<Reply>>>>,
    state: watch::Sender<State>,
    death: OnceLock<Arc<Death>>,
    not_ready_reason: OnceLock<String>,
    protocol_mismatch: OnceLock<u32>,
    stderr: Mutex<VecDeque<String>>,
    stderr_closed: watch::Sender<bool>,
    pub(super) exit: watch::Sender<Option<String>>,
    pub(super) kill: Notify,
}

impl Shared {
    fn stderr_tail(&self) -> String {
        let lines = lock(&self.stderr);
        let joined: Vec<&str> = lines.iter().map(String::as_str).collect();
        tail(&joined.join("\n"), STDERR_TAIL)
    }
}

/// One running Python process.
pub(super) struct Process {
    pub(super) shared: Arc<Shared>,
    lines: mpsc::UnboundedSender<Vec<u8>>,
    pub(super) generation: u64,
}

impl Process {
    /// Dead, or exited and being wound up: either way new requests need a new process.
    pub(super) fn is_dead(&self) -> bool {
        matches!(*self.shared.state.borrow(), State::Dead) || self.shared.exit.borrow().is_some()
    }

    /// Announced `ready`: its preload finished.
    pub(super) fn is_ready(&self) -> bool {
        matches!(*self.shared.state.borrow(), State::Ready) && !self.is_dead()
    }

    pub(super) fn send(&self, line: Vec<u8>) -> bool {
        self.lines.send(line).is_ok()
    }

    pub(super) async fn wait_ready(&self, timeout: Duration) -> Result<()> {
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

pub(super) fn spawn_process(
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
    // `-c`: the embedded script needs no file; it drops the current directory that `-c`
    // puts first on `sys.path` itself.
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
    if let Some(dir) = &config.current_dir {
        cmd.current_dir(dir);
    }
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

/// Every byte Python writes to stderr is read to the end: lines are decoded lossily (a C
/// library or `os.write(2, ...)` may write anything), so the pipe never closes early and a
/// later `print` cannot fail with `BrokenPipeError`.
async fn log_stderr(stderr: tokio::process::ChildStderr, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        match read_line_capped(&mut reader, &mut buf, STDERR_LINE_MAX).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']));
        tracing::info!(target: "pythonexec::python", pid = shared.pid, "{line}");
        let mut tail = lock(&shared.stderr);
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    shared.stderr_closed.send_replace(true);
}

/// Without terminal escape sequences (LiteLLM colours its banner): CloudWatch would show them
/// as text.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: ESC [ parameters... final byte in @..~; other escapes: ESC and one char.
        if chars.next_if_eq(&'[').is_some() {
            for p in chars.by_ref() {
                if ('@'..='~').contains(&p) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// Like `read_until(b'\n')`, but keeps at most `max` bytes of a line (the rest is read and
/// dropped). Returns the number of bytes read, 0 at the end.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
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
        match parse_line(&buf) {
            Line::Reply(incoming) => dispatch(&shared, incoming),
            Line::Blank => {}
            // A line that cannot be decoded fails its own request at once, quoting it.
            Line::Bad {
                id: Some(id),
                line,
                reason,
            } => deliver(&shared, id, Reply::Bad { line, reason }),
            Line::Bad {
                id: None,
                line,
                reason,
            } => tracing::warn!(
                pid = shared.pid,
                "python worker wrote a line that is not a reply ({reason}): {line}"
            ),
        }
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
    deliver(shared, id, reply);
}

/// Hand `reply` to request `id`; a final reply also ends the request's entry.
fn deliver(shared: &Shared, id: u64, reply: Reply) {
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

/// The error for a request that finds the process gone.
pub(super) fn died(shared: &Shared) -> Error {
    match shared.death.get() {
        Some(death) => death.error(),
        None => Error::WorkerDied {
            pid: shared.pid,
            status: "unknown".to_owned(),
            stderr_tail: shared.stderr_tail(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stripped_from_log_lines() {
        assert_eq!(
            strip_ansi("\u{1b}[1;31mGive Feedback / Get Help\u{1b}[0m: x"),
            "Give Feedback / Get Help: x"
        );
        assert_eq!(strip_ansi("plain [1] text"), "plain [1] text");
        assert_eq!(strip_ansi("cut \u{1b}["), "cut ");
    }

    #[tokio::test]
    async fn long_stderr_lines_are_cut_and_reading_goes_on() {
        let mut data = vec![b'x'; 100];
        data.extend_from_slice(b"\n\xff\xfe ok\nlast");
        let mut reader = BufReader::with_capacity(8, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_capped(&mut reader, &mut buf, 10)
                .await
                .expect("read"),
            101
        );
        assert_eq!(buf, vec![b'x'; 10]);
        buf.clear();
        read_line_capped(&mut reader, &mut buf, 10)
            .await
            .expect("read");
        assert_eq!(String::from_utf8_lossy(&buf), "\u{fffd}\u{fffd} ok\n");
        buf.clear();
        read_line_capped(&mut reader, &mut buf, 10)
            .await
            .expect("read");
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut buf, 10)
                .await
                .expect("read"),
            0
        );
    }
}

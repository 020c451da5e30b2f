//! One snippet, one fresh interpreter.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{tail, Error, Result};
use crate::interpreter::Interpreter;

/// How much of stderr an error quotes.
pub(crate) const STDERR_TAIL: usize = 2000;

/// Options for [`run_python`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The interpreter; `None` means [`Interpreter::locate(None)`](Interpreter::locate).
    pub interpreter: Option<Interpreter>,
    /// The process is killed when it runs longer than this.
    pub timeout: Duration,
    /// Bytes written to the snippet's stdin (then stdin is closed).
    pub stdin: Option<Vec<u8>>,
    /// Require the last non-empty stdout line to be JSON (else [`Error::BadJson`]).
    pub expect_json: bool,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            interpreter: None,
            timeout: Duration::from_secs(60),
            stdin: None,
            expect_json: true,
            env: Vec::new(),
        }
    }
}

impl RunOptions {
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn interpreter(mut self, interpreter: Interpreter) -> Self {
        self.interpreter = Some(interpreter);
        self
    }

    /// Write `value` as JSON to the snippet's stdin (`json.load(sys.stdin)` reads it).
    pub fn input_json(mut self, value: &Value) -> Self {
        self.stdin = Some(value.to_string().into_bytes());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Accept output whose last line is not JSON (`json` is then `None`).
    pub fn allow_non_json(mut self) -> Self {
        self.expect_json = false;
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// What a snippet did.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub stdout: String,
    pub stderr: String,
    /// The exit code (always 0 here: a non-zero exit is [`Error::NonZeroExit`]).
    pub code: Option<i32>,
    pub duration: Duration,
    /// The last non-empty stdout line parsed as JSON.
    pub json: Option<Value>,
}

/// Run `code` with `python -u -c` in a fresh interpreter.
///
/// The snippet's result is the last non-empty line it prints, parsed as JSON.
pub async fn run_python(code: &str, options: RunOptions) -> Result<RunOutput> {
    let interpreter = options
        .interpreter
        .clone()
        .unwrap_or_else(|| Interpreter::locate(None));
    run_with_args(&interpreter, &["-u", "-c", code], &options).await
}

pub(crate) async fn run_with_args(
    interpreter: &Interpreter,
    args: &[&str],
    options: &RunOptions,
) -> Result<RunOutput> {
    let program = interpreter.resolve()?;
    let started = Instant::now();
    let mut cmd = interpreter.command(&program);
    cmd.args(args)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(if options.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|source| spawn_error(interpreter, source))?;
    let pid = child.id().unwrap_or(0);

    let stdin_task = match (child.stdin.take(), options.stdin.clone()) {
        (Some(mut pipe), Some(bytes)) => Some(tokio::spawn(async move {
            // A snippet that never reads stdin closes it early; that is not our error.
            let _ = pipe.write_all(&bytes).await;
        })),
        _ => None,
    };
    let stdout_task = child.stdout.take().map(|mut out| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf).await;
            buf
        })
    });
    let stderr_task = child.stderr.take().map(|mut err| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf).await;
            buf
        })
    });

    let status = match tokio::time::timeout(options.timeout, child.wait()).await {
        Ok(status) => status.map_err(|source| Error::Io {
            context: "waiting for python",
            source,
        })?,
        Err(_elapsed) => {
            // Kill and reap, so no zombie is left behind.
            let _ = child.start_kill();
            let _ = child.wait().await;
            if let Some(task) = stdin_task {
                task.abort();
            }
            if let Some(task) = stdout_task {
                task.abort();
            }
            let stderr = match stderr_task {
                Some(task) => collect(task).await,
                None => String::new(),
            };
            return Err(Error::Timeout {
                timeout: options.timeout,
                pid,
                stderr_tail: tail(&stderr, STDERR_TAIL),
            });
        }
    };
    let stdout = match stdout_task {
        Some(task) => collect(task).await,
        None => String::new(),
    };
    let stderr = match stderr_task {
        Some(task) => collect(task).await,
        None => String::new(),
    };
    let duration = started.elapsed();

    if !status.success() {
        return Err(Error::NonZeroExit {
            status: status.to_string(),
            code: status.code(),
            stdout,
            stderr_tail: tail(&stderr, STDERR_TAIL),
        });
    }

    let json = match last_json_line(&stdout) {
        Ok(value) => Some(value),
        Err(err) if options.expect_json => return Err(err),
        Err(_) => None,
    };
    Ok(RunOutput {
        stdout,
        stderr,
        code: status.code(),
        duration,
        json,
    })
}

/// Output of a grandchild that kept the pipe open is not waited for forever.
async fn collect(task: tokio::task::JoinHandle<Vec<u8>>) -> String {
    let abort = task.abort_handle();
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => {
            abort.abort();
            String::new()
        }
    }
}

pub(crate) fn spawn_error(interpreter: &Interpreter, source: std::io::Error) -> Error {
    match source.kind() {
        std::io::ErrorKind::NotFound => interpreter.not_found(),
        std::io::ErrorKind::PermissionDenied => Error::InterpreterNotExecutable {
            interpreter: interpreter.to_string(),
            source: Some(source),
        },
        _ => Error::Spawn {
            interpreter: interpreter.to_string(),
            source,
        },
    }
}

/// The last non-empty line of `stdout`, parsed as JSON.
pub fn last_json_line(stdout: &str) -> Result<Value> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| Error::BadJson {
            line: String::new(),
            source: None,
        })?;
    serde_json::from_str(line).map_err(|source| Error::BadJson {
        line: tail(line, 200),
        source: Some(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_wins() {
        let v = last_json_line("noise\n{\"a\": 1}\n\n  \n").expect("json");
        assert_eq!(v, serde_json::json!({"a": 1}));
    }

    #[test]
    fn garbage_is_bad_json() {
        assert!(matches!(
            last_json_line("hello\nnot json\n"),
            Err(Error::BadJson { .. })
        ));
        assert!(matches!(last_json_line(""), Err(Error::BadJson { .. })));
    }
}

use std::time::Duration;

/// Everything that can go wrong when running Python.
///
/// Variants that involve the interpreter carry `interpreter`: the chosen path and why it was
/// chosen (`"/opt/python/bin/python3.11 (inside Lambda: AWS_LAMBDA_FUNCTION_NAME is set)"`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `hint` says what to do (empty, or starting with `"; "`).
    #[error("python interpreter not found: {interpreter}{hint}")]
    InterpreterNotFound { interpreter: String, hint: String },

    #[error("python interpreter is not executable: {interpreter}")]
    InterpreterNotExecutable {
        interpreter: String,
        #[source]
        source: Option<std::io::Error>,
    },

    #[error("could not start python: {interpreter}")]
    Spawn {
        interpreter: String,
        #[source]
        source: std::io::Error,
    },

    #[error("python did not finish within {timeout:?} and was killed (pid {pid}); stderr ends with: {stderr_tail}")]
    Timeout {
        timeout: Duration,
        pid: u32,
        stderr_tail: String,
    },

    #[error("python exited with {status}; stderr ends with: {stderr_tail}")]
    NonZeroExit {
        status: String,
        code: Option<i32>,
        stdout: String,
        stderr_tail: String,
    },

    #[error("python printed output that is not the expected JSON: {line:?}")]
    BadJson {
        line: String,
        #[source]
        source: Option<serde_json::Error>,
    },

    #[error("python raised {0}")]
    Python(PythonException),

    #[error("python worker (pid {pid}) died ({status}); stderr ends with: {stderr_tail}")]
    WorkerDied {
        pid: u32,
        status: String,
        stderr_tail: String,
    },

    #[error(
        "python worker (pid {pid}) did not become ready: {reason}; interpreter: {interpreter}"
    )]
    WorkerStart {
        pid: u32,
        interpreter: String,
        reason: String,
    },

    #[error("python worker speaks protocol {found}, this library speaks {expected}")]
    ProtocolVersion { expected: u32, found: u32 },

    #[error("request {id} ({op}) did not finish within {timeout:?}; it was cancelled")]
    RequestTimeout {
        id: u64,
        op: &'static str,
        timeout: Duration,
    },

    /// The worker answered request `id` with a line this library cannot decode.
    #[error(
        "python worker answered request {id} with a line that cannot be decoded ({reason}): {line}"
    )]
    BadReply {
        id: u64,
        /// The raw line, decoded lossily, cut to its last 500 bytes.
        line: String,
        reason: String,
    },

    #[error("request {id} was cancelled")]
    Cancelled { id: u64 },

    #[error("python worker has been shut down")]
    ShutDown,

    #[error("reply is not a valid {what}")]
    Decode {
        /// The request id, when known.
        id: Option<u64>,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not encode the request")]
    Encode(#[source] serde_json::Error),

    #[error("i/o error while {context}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A Python exception raised by the code a request ran.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PythonException {
    /// Qualified type name: `ValueError`, `litellm.exceptions.APIConnectionError`.
    #[serde(rename = "type")]
    pub exc_type: String,
    pub message: String,
    /// The formatted traceback, as `traceback.format_exception` prints it.
    pub traceback: String,
}

impl std::fmt::Display for PythonException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.exc_type, self.message)
    }
}

impl std::error::Error for PythonException {}

impl Error {
    /// A short type name for callers such as Lambda's `errorType`: the Python exception's
    /// qualified type (`ValueError`, `litellm.exceptions.AuthenticationError`) for
    /// [`Error::Python`], else `pythonexec::<Variant>` (`pythonexec::InterpreterNotFound`).
    pub fn error_type(&self) -> String {
        let variant = match self {
            Error::Python(exc) => return exc.exc_type.clone(),
            Error::InterpreterNotFound { .. } => "InterpreterNotFound",
            Error::InterpreterNotExecutable { .. } => "InterpreterNotExecutable",
            Error::Spawn { .. } => "Spawn",
            Error::Timeout { .. } => "Timeout",
            Error::NonZeroExit { .. } => "NonZeroExit",
            Error::BadJson { .. } => "BadJson",
            Error::WorkerDied { .. } => "WorkerDied",
            Error::WorkerStart { .. } => "WorkerStart",
            Error::ProtocolVersion { .. } => "ProtocolVersion",
            Error::RequestTimeout { .. } => "RequestTimeout",
            Error::BadReply { .. } => "BadReply",
            Error::Cancelled { .. } => "Cancelled",
            Error::ShutDown => "ShutDown",
            Error::Decode { .. } => "Decode",
            Error::Encode(_) => "Encode",
            Error::Io { .. } => "Io",
        };
        format!("pythonexec::{variant}")
    }

    /// The Python exception, if this error is one.
    pub fn python_exception(&self) -> Option<&PythonException> {
        match self {
            Error::Python(exc) => Some(exc),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Keep the last `max` bytes of `text`, cut at a character boundary, for error messages.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_type_is_the_python_type_or_the_variant() {
        let exc = PythonException {
            exc_type: "litellm.exceptions.AuthenticationError".into(),
            message: "m".into(),
            traceback: String::new(),
        };
        assert_eq!(
            Error::Python(exc).error_type(),
            "litellm.exceptions.AuthenticationError"
        );
        assert_eq!(Error::ShutDown.error_type(), "pythonexec::ShutDown");
    }

    #[test]
    fn tail_keeps_short_text() {
        assert_eq!(tail("abc\n", 10), "abc");
    }

    #[test]
    fn tail_cuts_at_char_boundary() {
        let t = tail("ééééé", 3);
        assert!(t.starts_with("..."));
        assert!(t.len() <= 3 + 3 + 1);
    }
}

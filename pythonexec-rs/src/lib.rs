//! Run Python and LiteLLM from a Rust AWS Lambda function, using the interpreter of a
//! python-litellm layer (`/opt/python/bin/python3.11`).
//!
//! - [`run_python`]: one snippet in a fresh interpreter, its last stdout line as JSON.
//! - [`verify_python_environment`]: which interpreter, which versions, how long imports take.
//! - [`Worker`]: one persistent process answering many concurrent requests, including
//!   LiteLLM completions ([`Worker::completion`], [`Worker::completion_stream`]).
//!
//! The interpreter is chosen by [`Interpreter::locate`]: an explicit path, else the
//! `PYTHONEXEC_PYTHON` environment variable, else the layer's interpreter inside Lambda,
//! else `python3` on `PATH`.

mod error;
mod health;
mod interpreter;
pub mod litellm;
mod run;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use error::{Error, PythonException, Result};
pub use health::{
    verify_python_environment, verify_python_environment_with, HealthReport, SitePackages,
};
pub use interpreter::{
    choose, Choice, Interpreter, LAYER_PYTHON, LAYER_PYTHONHOME, LAYER_PYTHONPATH, PYTHON_ENV_VAR,
};
pub use litellm::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage};
pub use run::{last_json_line, run_python, RunOptions, RunOutput};
pub use worker::{Op, ReplyStream, Worker, WorkerConfig, PROTOCOL_VERSION};

//! Run Python and LiteLLM from a Rust AWS Lambda function, using the interpreter of a
//! python-litellm layer (`/opt/python/bin/python3.X`, the version read from the layer's
//! `python/layer-manifest.json`).
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
mod layer;
pub mod litellm;
mod run;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use error::{Error, PythonException, Result};
pub use health::{
    verify_python_environment, verify_python_environment_with, HealthReport, SitePackages,
};
pub use interpreter::{choose, choose_in, Choice, Interpreter, PYTHON_ENV_VAR};
pub use layer::{LayerPython, LAYER_MANIFEST, LAYER_PYTHONHOME, LAYER_ROOT, WORKER_PY_IN_LAYER};
pub use litellm::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage};
pub use run::{last_json_line, run_python, RunOptions, RunOutput};
pub use worker::{Op, Readiness, ReplyStream, Worker, WorkerConfig, PROTOCOL_VERSION, WORKER_PY};

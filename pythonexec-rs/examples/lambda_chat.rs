//! A Lambda function that answers a chat request with LiteLLM through the layer's Python.
//!
//! The worker is started at INIT and INIT waits for its `import litellm` (at most 9 s of
//! Lambda's 10 s INIT limit): INIT runs with an unthrottled CPU, invocations at the memory's
//! share of a vCPU (0.29 at 512 MB), so an import left to the first invocation takes several
//! times longer. Past the deadline the worker keeps starting and the first invocation waits.
//!
//! Event: a LiteLLM chat completion request, e.g.
//! `{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}`.
//! Reply: the completion as LiteLLM returns it. Errors reach the caller with the Python
//! exception's type as `errorType` (`litellm.exceptions.AuthenticationError`).
//!
//! Locally: `PYTHONEXEC_PYTHON=<layer tree>/python/bin/python3 cargo lambda watch` (see
//! the README's "Testing locally").

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use pythonexec::{ChatCompletion, ChatCompletionRequest, Worker, WorkerConfig};

/// Under Lambda's 10 s INIT limit, with a second to spare for the runtime's own start.
const INIT_DEADLINE: Duration = Duration::from_secs(9);

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // CloudWatch shows escape codes verbatim: no colours.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .without_time()
        .init();

    // A worker that cannot start (no layer at /opt: a local emulator without
    // PYTHONEXEC_PYTHON) must not end the process: an emulator would then wait for a reply
    // forever. Every invocation answers with the reason instead.
    let config = WorkerConfig::default().preload(["litellm"]);
    let worker = match Worker::spawn_ready(config, INIT_DEADLINE).await {
        Ok(worker) => {
            tracing::info!(
                interpreter = %worker.interpreter(),
                ready = worker.is_ready(),
                "python worker started"
            );
            Ok(worker)
        }
        Err(err) => {
            tracing::error!("python worker cannot start: {err}");
            Err(Arc::new(err))
        }
    };

    lambda_runtime::run(service_fn(|event: LambdaEvent<ChatCompletionRequest>| {
        let worker = worker.clone();
        async move {
            match worker {
                Ok(worker) => answer(&worker, event.payload).await,
                Err(err) => Err(diagnostic(&err)),
            }
        }
    }))
    .await
}

async fn answer(
    worker: &Worker,
    request: ChatCompletionRequest,
) -> Result<ChatCompletion, Diagnostic> {
    worker.completion(&request).await.map_err(|err| {
        tracing::warn!(error_type = %err.error_type(), "completion failed: {err}");
        diagnostic(&err)
    })
}

/// `errorType` is the Python exception's type, not a Rust type name.
fn diagnostic(err: &pythonexec::Error) -> Diagnostic {
    Diagnostic {
        error_type: err.error_type(),
        error_message: err.to_string(),
    }
}

//! A Lambda function that answers a chat request with LiteLLM through the layer's Python.
//!
//! The worker is started at INIT without waiting for it (importing LiteLLM happens while
//! Lambda finishes INIT); the first invocation waits until it is ready.
//!
//! Event: a LiteLLM chat completion request, e.g.
//! `{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}`.
//! Reply: the completion as LiteLLM returns it.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pythonexec::{ChatCompletion, ChatCompletionRequest, Worker, WorkerConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .init();

    let worker = Worker::spawn(WorkerConfig::default().preload(["litellm"]))?;
    tracing::info!(interpreter = %worker.interpreter(), "python worker starting");

    lambda_runtime::run(service_fn(|event: LambdaEvent<ChatCompletionRequest>| {
        let worker = worker.clone();
        async move { answer(&worker, event.payload).await }
    }))
    .await
}

async fn answer(worker: &Worker, request: ChatCompletionRequest) -> Result<ChatCompletion, Error> {
    Ok(worker.completion(&request).await?)
}

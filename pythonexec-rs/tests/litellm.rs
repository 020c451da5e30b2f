//! LiteLLM through the worker, against the loopback `MockOpenAi`.
//!
//! Needs an interpreter that can `import litellm`: set `PYTHONEXEC_TEST_PYTHON`. Without it
//! the LiteLLM tests print a "skipped" line and pass. The mock server's own test uses
//! `python3` and always runs.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::Duration;

use futures::StreamExt;
use pythonexec::testing::MockOpenAi;
use pythonexec::{
    run_python, verify_python_environment_with, ChatCompletionRequest, ChatMessage, Interpreter,
    Readiness, RunOptions, Worker, WorkerConfig,
};
use serde_json::json;

fn litellm_python(test: &str) -> Option<Interpreter> {
    match std::env::var_os("PYTHONEXEC_TEST_PYTHON") {
        Some(path) if !path.is_empty() => Some(Interpreter::explicit(path)),
        _ => {
            println!(
                "{test}: skipped: set PYTHONEXEC_TEST_PYTHON to a python that can import litellm"
            );
            None
        }
    }
}

fn request(mock: &MockOpenAi, text: &str) -> ChatCompletionRequest {
    let mut req = ChatCompletionRequest::new(
        "openai/gpt-4o-mini",
        vec![ChatMessage::system("Be brief."), ChatMessage::user(text)],
    );
    req.api_base = Some(mock.base_url());
    req.api_key = Some("x".to_owned());
    req.temperature = Some(0.0);
    req.extra.insert("num_retries".into(), json!(0));
    req
}

fn worker(python: Interpreter) -> Worker {
    Worker::spawn(
        WorkerConfig::default()
            .interpreter(python)
            .preload(["litellm"])
            .request_timeout(Duration::from_secs(120)),
    )
    .expect("spawn worker")
}

#[tokio::test]
async fn mock_server_speaks_openai_to_plain_python() {
    let mock = MockOpenAi::start().expect("mock");
    let code = r#"
import json, sys, urllib.request
base = sys.argv[1] if len(sys.argv) > 1 else None
base = json.load(sys.stdin)["base"]
models = json.load(urllib.request.urlopen(base + "/models"))
def post(body):
    req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req)
plain = json.load(post({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
resp = post({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
ctype = resp.headers.get("Content-Type")
chunked = resp.headers.get("Transfer-Encoding")
events = [l[len("data: "):] for l in resp.read().decode().split("\n\n") if l.startswith("data: ")]
chunks = [json.loads(e) for e in events if e != "[DONE]"]
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
print(json.dumps({"models": models["data"][0]["id"], "plain": plain, "ctype": ctype,
                  "chunked": chunked, "done": events[-1], "text": text, "n": len(chunks),
                  "object": chunks[0]["object"]}))
"#;
    let out = run_python(
        code,
        RunOptions::default()
            .interpreter(Interpreter::explicit("python3"))
            .input_json(&json!({"base": mock.base_url()})),
    )
    .await
    .expect("run");
    let v = out.json.expect("json");
    assert_eq!(v["models"], "gpt-4o-mini");
    assert_eq!(v["plain"]["object"], "chat.completion");
    assert_eq!(
        v["plain"]["choices"][0]["message"]["content"],
        mock.reply_text()
    );
    assert_eq!(v["plain"]["choices"][0]["finish_reason"], "stop");
    assert!(v["plain"]["usage"]["total_tokens"].as_u64().is_some());
    assert_eq!(v["ctype"], "text/event-stream");
    assert_eq!(v["chunked"], "chunked");
    assert_eq!(v["done"], "[DONE]");
    assert_eq!(v["object"], "chat.completion.chunk");
    assert_eq!(v["text"], mock.reply_text());
    assert!(v["n"].as_u64().unwrap_or(0) > 2);
    assert_eq!(mock.requests(), 2);
    assert_eq!(mock.request_bodies()[1]["stream"], json!(true));
}

#[tokio::test]
async fn litellm_completion() {
    let Some(python) = litellm_python("litellm_completion") else {
        return;
    };
    let mock = MockOpenAi::start().expect("mock");
    let w = worker(python);
    let resp = w
        .completion(&request(&mock, "Say hello"))
        .await
        .expect("completion");
    assert_eq!(resp.text(), Some(mock.reply_text()));
    assert_eq!(resp.object, "chat.completion");
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(resp.choices[0].message.role, "assistant");
    assert!(resp.usage.as_ref().is_some_and(|u| u.total_tokens > 0));
    assert_eq!(mock.requests(), 1);
    let body = &mock.request_bodies()[0];
    assert_eq!(body["messages"][1]["content"], "Say hello");
    assert_eq!(body["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn litellm_streaming_reassembles_the_reply() {
    let Some(python) = litellm_python("litellm_streaming_reassembles_the_reply") else {
        return;
    };
    let mock = MockOpenAi::start().expect("mock");
    let w = worker(python);
    let mut stream = w
        .completion_stream(&request(&mock, "Stream please"))
        .await
        .expect("stream");
    let mut text = String::new();
    let mut chunks = 0;
    let mut finish = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        assert_eq!(chunk.object, "chat.completion.chunk");
        chunks += 1;
        if let Some(piece) = chunk.text() {
            text.push_str(piece);
        }
        if let Some(reason) = chunk.choices.first().and_then(|c| c.finish_reason.clone()) {
            finish = Some(reason);
        }
    }
    assert_eq!(text, mock.reply_text());
    assert!(chunks > 1, "only {chunks} chunk(s)");
    assert_eq!(finish.as_deref(), Some("stop"));
    // The worker is still usable after a stream.
    w.ping().await.expect("ping");
}

#[tokio::test]
async fn litellm_concurrent_async_completions() {
    let Some(python) = litellm_python("litellm_concurrent_async_completions") else {
        return;
    };
    let mock = MockOpenAi::start_echo().expect("mock");
    let w = worker(python);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let w = w.clone();
            let req = request(&mock, &format!("message number {i}"));
            tokio::spawn(async move { (i, w.completion(&req).await) })
        })
        .collect();
    for task in tasks {
        let (i, resp) = task.await.expect("join");
        let resp = resp.expect("completion");
        assert_eq!(resp.text(), Some(format!("message number {i}").as_str()));
    }
    assert_eq!(mock.requests(), 8);
    assert_eq!(w.generation(), 1);
}

#[tokio::test]
async fn litellm_error_is_a_typed_python_exception() {
    let Some(python) = litellm_python("litellm_error_is_a_typed_python_exception") else {
        return;
    };
    let w = worker(python);
    let mut req = ChatCompletionRequest::new("openai/gpt-4o-mini", vec![ChatMessage::user("hi")]);
    // Nothing listens on port 9 (discard): a connection error.
    req.api_base = Some("http://127.0.0.1:9/v1".to_owned());
    req.api_key = Some("x".to_owned());
    req.extra.insert("num_retries".into(), json!(0));
    let err = w.completion(&req).await.expect_err("must fail");
    let exc = err.python_exception().expect("python exception");
    assert!(exc.exc_type.starts_with("litellm."), "{}", exc.exc_type);
    assert!(!exc.traceback.is_empty());
}

/// The litellm version the default spec (`layer/layer.toml`) pins with `litellm==X`.
fn default_spec_litellm() -> String {
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../layer/layer.toml");
    let text = std::fs::read_to_string(&spec).expect("layer/layer.toml");
    text.lines()
        .filter(|l| l.trim_start().starts_with("packages"))
        .find_map(|l| l.split("\"litellm==").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("the default spec pins litellm==X")
        .to_owned()
}

#[tokio::test]
async fn litellm_health_check_reports_versions() {
    let Some(python) = litellm_python("litellm_health_check_reports_versions") else {
        return;
    };
    let report = verify_python_environment_with(&python, Duration::from_secs(180))
        .await
        .expect("health");
    assert_eq!(
        report.litellm_version(),
        Some(default_spec_litellm().as_str()),
        "the layer ci/test.sh builds is the default spec's"
    );
    assert!(report.packages.get("openai").is_some_and(Option::is_some));
    assert!(
        report.import_litellm.is_some(),
        "{:?}",
        report.import_litellm_error
    );
    assert!(report.site_packages.iter().any(|s| s.kind == "directory"));
}

/// `spawn_ready` at Lambda INIT: it returns once `import litellm` is done.
#[tokio::test]
async fn spawn_ready_returns_once_the_preload_is_imported() {
    let Some(python) = litellm_python("spawn_ready_returns_once_the_preload_is_imported") else {
        return;
    };
    let config = WorkerConfig::default()
        .interpreter(python)
        .preload(["litellm"]);
    let (worker, ready) = Worker::spawn_within(config, Duration::from_secs(120))
        .await
        .expect("spawn");
    assert!(matches!(ready, Readiness::Ready { .. }), "{ready:?}");
    // Asked before any request could have waited for it.
    assert!(worker.is_ready());
    let imported = worker
        .eval("'litellm' in __import__('sys').modules")
        .await
        .expect("eval");
    assert_eq!(imported, json!(true));
    worker.shutdown().await.unwrap();
}

/// Past its deadline `spawn_ready` falls back to the non-blocking start, saying why; the
/// first request then waits for the import.
#[tokio::test]
async fn spawn_ready_falls_back_when_the_deadline_passes() {
    let Some(python) = litellm_python("spawn_ready_falls_back_when_the_deadline_passes") else {
        return;
    };
    let config = WorkerConfig::default()
        .interpreter(python)
        .preload(["litellm"]);
    let (worker, ready) = Worker::spawn_within(config, Duration::from_millis(50))
        .await
        .expect("spawn");
    let Readiness::NotYet { reason } = ready else {
        panic!("`import litellm` took under 50 ms: {ready:?}");
    };
    assert!(reason.contains("50ms deadline"), "{reason}");
    assert!(reason.contains("importing litellm"), "{reason}");
    assert!(!worker.is_ready());
    let version = worker
        .eval("__import__('litellm').__name__")
        .await
        .expect("the first request waits for the import");
    assert_eq!(version, json!("litellm"));
    assert!(worker.is_ready());
    worker.shutdown().await.unwrap();
}

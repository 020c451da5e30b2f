//! A loopback OpenAI-compatible server, for tests and for `cargo xtask verify`.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let mock = pythonexec::testing::MockOpenAi::start()?;
//! // point LiteLLM at it: model "openai/gpt-4o-mini", api_base = mock.base_url(), api_key "x"
//! assert!(mock.base_url().ends_with("/v1"));
//! # Ok(()) }
//! ```
//!
//! Endpoints: `GET /v1/models`; `POST /v1/chat/completions` (and any path ending in
//! `/chat/completions`, as Azure OpenAI's deployments use), answered with
//! [`MockOpenAi::reply_text`] as JSON, or with `"stream": true` as server-sent events
//! (`data: {chunk}\n\n` ... `data: [DONE]\n\n`, chunked transfer, one chunk per word).
//! Google AI Studio's (Gemini's) `POST .../models/<model>:generateContent` and
//! `:streamGenerateContent?alt=sse` are answered in that format, minimally.
//! The server stops when the value is dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The reply of [`MockOpenAi::start`].
pub const DEFAULT_REPLY: &str = "Hello from the mock server: the layer works.";

/// See the module documentation.
pub struct MockOpenAi {
    server: Arc<tiny_http::Server>,
    base_url: String,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    reply: String,
    echo: bool,
    stop: AtomicBool,
    count: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
}

impl MockOpenAi {
    /// Listen on `127.0.0.1` on an ephemeral port; every completion replies [`DEFAULT_REPLY`].
    pub fn start() -> std::io::Result<MockOpenAi> {
        Self::start_with_reply(DEFAULT_REPLY)
    }

    /// Every completion replies `reply`.
    pub fn start_with_reply(reply: impl Into<String>) -> std::io::Result<MockOpenAi> {
        Self::launch(reply.into(), false)
    }

    /// Every completion replies with the text of the last user message.
    pub fn start_echo() -> std::io::Result<MockOpenAi> {
        Self::launch(String::new(), true)
    }

    fn launch(reply: String, echo: bool) -> std::io::Result<MockOpenAi> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(std::io::Error::other)?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| std::io::Error::other("mock server has no IP address"))?;
        let server = Arc::new(server);
        let state = Arc::new(State {
            reply,
            echo,
            stop: AtomicBool::new(false),
            count: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
        });
        let thread = {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("mock-openai".to_owned())
                .spawn(move || accept(&server, &state))?
        };
        Ok(MockOpenAi {
            server,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            state,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The text every completion answers with (empty for [`MockOpenAi::start_echo`]).
    pub fn reply_text(&self) -> &str {
        &self.state.reply
    }

    /// How many chat completion requests arrived.
    pub fn requests(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// The JSON bodies of the chat completion requests, in arrival order.
    pub fn request_bodies(&self) -> Vec<Value> {
        self.state
            .bodies
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept(server: &tiny_http::Server, state: &Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => {
                let state = Arc::clone(state);
                // One thread per request: concurrent streamed replies must not wait on each other.
                let _ = std::thread::Builder::new()
                    .name("mock-openai-req".to_owned())
                    .spawn(move || handle(request, &state));
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
}

fn handle(mut request: tiny_http::Request, state: &State) {
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let method = request.method().clone();
    let response = match (method, path.trim_end_matches('/')) {
        (tiny_http::Method::Get, "/v1/models") => json_response(
            200,
            &json!({"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "mock"}
            ]}),
        ),
        // Any path ending in /chat/completions: Azure's OpenAI-compatible deployments route
        // (`/openai/deployments/<name>/chat/completions?api-version=...`) answers the same way.
        (tiny_http::Method::Post, p) if p.ends_with("/chat/completions") => {
            let mut body = String::new();
            if request.as_reader().read_to_string(&mut body).is_err() {
                let _ = request.respond(json_response(400, &error_body("unreadable body")));
                return;
            }
            let Ok(body) = serde_json::from_str::<Value>(&body) else {
                let _ = request.respond(json_response(400, &error_body("body is not JSON")));
                return;
            };
            state.count.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut bodies) = state.bodies.lock() {
                bodies.push(body.clone());
            }
            let reply = if state.echo {
                last_user_text(&body)
            } else {
                state.reply.clone()
            };
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("gpt-4o-mini")
                .to_owned();
            let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
            let id = format!("chatcmpl-mock{}", state.count.load(Ordering::SeqCst));
            if stream {
                let _ = request.respond(sse_response(&id, &model, &reply));
                return;
            }
            json_response(200, &completion(&id, &model, &reply))
        }
        (tiny_http::Method::Post, p)
            if p.ends_with(":generateContent") || p.ends_with(":streamGenerateContent") =>
        {
            let mut body = String::new();
            if request.as_reader().read_to_string(&mut body).is_err() {
                let _ = request.respond(json_response(400, &error_body("unreadable body")));
                return;
            }
            let body = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null);
            state.count.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut bodies) = state.bodies.lock() {
                bodies.push(body);
            }
            let reply = state.reply.clone();
            if p.ends_with(":streamGenerateContent") {
                let _ = request.respond(gemini_sse(&reply));
                return;
            }
            json_response(200, &gemini_candidate(&reply, true))
        }
        _ => json_response(404, &error_body("no such endpoint")),
    };
    let _ = request.respond(response);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn tokens(text: &str) -> usize {
    text.split_whitespace().count()
}

fn completion(id: &str, model: &str, reply: &str) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens(reply), "total_tokens": 5 + tokens(reply)},
    })
}

/// Split `text` into pieces that concatenate back to it: one per word, spaces leading.
pub fn split_reply(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if ch == ' ' && !current.trim().is_empty() {
            pieces.push(std::mem::take(&mut current));
        }
        current.push(ch);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn chunk(id: &str, model: &str, created: u64, delta: Value, finish: Option<&str>) -> String {
    let value = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    format!("data: {value}\n\n")
}

fn sse_response(
    id: &str,
    model: &str,
    reply: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let created = now();
    let mut body = chunk(
        id,
        model,
        created,
        json!({"role": "assistant", "content": ""}),
        None,
    );
    for piece in split_reply(reply) {
        body.push_str(&chunk(id, model, created, json!({"content": piece}), None));
    }
    body.push_str(&chunk(id, model, created, json!({}), Some("stop")));
    body.push_str("data: [DONE]\n\n");
    event_stream(body)
}

/// One Gemini `GenerateContentResponse` holding `text`; `last` adds the finish reason and usage.
fn gemini_candidate(text: &str, last: bool) -> Value {
    let mut candidate =
        json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    let mut value = json!({"modelVersion": "mock"});
    if last {
        candidate["finishReason"] = json!("STOP");
        value["usageMetadata"] = json!({
            "promptTokenCount": 5,
            "candidatesTokenCount": tokens(text),
            "totalTokenCount": 5 + tokens(text),
        });
    }
    value["candidates"] = json!([candidate]);
    value
}

fn gemini_sse(reply: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let pieces = split_reply(reply);
    let mut body = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        let value = gemini_candidate(piece, i + 1 == pieces.len());
        body.push_str(&format!("data: {value}\r\n\r\n"));
    }
    event_stream(body)
}

/// A `text/event-stream` reply of server-sent events.
fn event_stream(body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let headers = [
        header("Content-Type", "text/event-stream"),
        header("Cache-Control", "no-cache"),
    ]
    .into_iter()
    .flatten()
    .collect();
    // No length: tiny_http sends it with chunked transfer encoding.
    tiny_http::Response::new(
        tiny_http::StatusCode(200),
        headers,
        std::io::Cursor::new(body.into_bytes()),
        None,
        None,
    )
}

fn json_response(status: u16, value: &Value) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let response =
        tiny_http::Response::from_data(value.to_string().into_bytes()).with_status_code(status);
    match header("Content-Type", "application/json") {
        Some(h) => response.with_header(h),
        None => response,
    }
}

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn error_body(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "code": null}})
}

fn last_user_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|msgs| {
            msgs.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reassembles() {
        let text = "Hello from the mock server: the layer works.";
        let parts = split_reply(text);
        assert!(parts.len() > 3);
        assert_eq!(parts.concat(), text);
    }
}

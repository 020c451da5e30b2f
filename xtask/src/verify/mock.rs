//! A loopback OpenAI-compatible server for the LiteLLM checks.
//!
//! Stand-in with the same API as `pythonexec::testing::MockOpenAi` (being written on the
//! `pyexec` branch, not on main yet): `start`, `base_url` (ends with `/v1`), `reply_text`,
//! `requests`. Switch to the library's server once it lands and delete this file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct MockOpenAi {
    server: Arc<tiny_http::Server>,
    port: u16,
    reply: String,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl MockOpenAi {
    /// Listens on 127.0.0.1 on a free port and answers until dropped.
    pub fn start() -> std::io::Result<MockOpenAi> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(std::io::Error::other)?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| std::io::Error::other("the mock server has no IP address"))?;
        // A reply no library could produce by accident: the checks compare it exactly.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let reply = format!(
            "Verified reply {:x}-{nonce:x}: the layer talks to its server.",
            std::process::id()
        );
        let server = Arc::new(server);
        let requests = Arc::new(AtomicUsize::new(0));
        let thread = {
            let server = Arc::clone(&server);
            let requests = Arc::clone(&requests);
            let reply = reply.clone();
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    requests.fetch_add(1, Ordering::SeqCst);
                    // A client that hung up is not this server's failure.
                    let _ = answer(request, &reply);
                }
            })
        };
        Ok(MockOpenAi {
            server,
            port,
            reply,
            requests,
            thread: Some(thread),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn reply_text(&self) -> &str {
        &self.reply
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut request: tiny_http::Request, reply: &str) -> std::io::Result<()> {
    let mut body = String::new();
    request.as_reader().read_to_string(&mut body)?;
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let json = |v: serde_json::Value| {
        tiny_http::Response::from_string(v.to_string())
            .with_header(header("Content-Type", "application/json"))
    };
    match (request.method(), path.as_str()) {
        (tiny_http::Method::Get, "/v1/models") => request.respond(json(serde_json::json!({
            "object": "list",
            "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "verify"}],
        }))),
        (tiny_http::Method::Post, "/v1/chat/completions") => {
            let asked: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let model = asked["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
            if asked["stream"].as_bool() == Some(true) {
                let sse = sse_body(&model, reply);
                request.respond(
                    tiny_http::Response::from_string(sse)
                        .with_header(header("Content-Type", "text/event-stream"))
                        .with_header(header("Cache-Control", "no-cache")),
                )
            } else {
                request.respond(json(serde_json::json!({
                    "id": "chatcmpl-verify",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 8, "total_tokens": 9},
                })))
            }
        }
        _ => request.respond(
            tiny_http::Response::from_string(
                serde_json::json!({"error": {"message": format!("no route {path}")}}).to_string(),
            )
            .with_status_code(404),
        ),
    }
}

/// The reply cut into word-sized chunks, as server-sent events ending in `data: [DONE]`.
fn sse_body(model: &str, reply: &str) -> String {
    let mut out = String::new();
    let mut pieces: Vec<&str> = reply.split_inclusive(' ').collect();
    if pieces.is_empty() {
        pieces.push("");
    }
    for (i, piece) in pieces.iter().enumerate() {
        let mut delta = serde_json::json!({"content": piece});
        if i == 0 {
            delta["role"] = "assistant".into();
        }
        out += &format!(
            "data: {}\n\n",
            serde_json::json!({
                "id": "chatcmpl-verify", "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": null}],
            })
        );
    }
    out += &format!(
        "data: {}\n\n",
        serde_json::json!({
            "id": "chatcmpl-verify", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        })
    );
    out += "data: [DONE]\n\n";
    out
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Both are ASCII constants above, which tiny_http always accepts.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("constant header {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_reassembles_to_the_reply() {
        let body = sse_body("m", "a b c");
        assert!(body.ends_with("data: [DONE]\n\n"));
        let text: String = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|l| *l != "[DONE]")
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "a b c");
    }

    #[test]
    fn serves_models_over_loopback() {
        let mock = MockOpenAi::start().expect("server starts");
        assert!(mock.base_url().ends_with("/v1"));
        let body = ureq::get(&format!("{}/models", mock.base_url()))
            .call()
            .expect("GET /v1/models")
            .into_body()
            .read_to_string()
            .expect("body");
        assert!(body.contains("gpt-4o-mini"), "{body}");
        assert_eq!(mock.requests(), 1);
    }
}

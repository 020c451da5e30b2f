//! LiteLLM chat completions through the [`Worker`]: typed requests, responses and chunks.
//!
//! Every struct keeps fields it does not name in `extra`, so what LiteLLM accepts or returns
//! round-trips even when this crate does not know the field.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::worker::{Op, ReplyStream, Worker};

/// `litellm.completion(**request)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// `provider/model`, e.g. `openai/gpt-4o-mini`, `bedrock/anthropic.claude-3-haiku...`.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// Anything else LiteLLM accepts (`top_p`, `tool_choice`, `timeout`, `metadata`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionRequest {
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatCompletionRequest {
            model: model.into(),
            messages,
            ..Default::default()
        }
    }
}

/// A chat message, in a request or a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, or a list of content parts (`[{"type": "text", "text": ...}]`); `None` for
    /// an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: Some(Content::Text(content.into())),
            ..Default::default()
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// The content when it is plain text.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Some(Content::Text(text)) => Some(text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Present in stream deltas, where a call arrives in pieces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: FunctionCall,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// JSON-encoded arguments, as the model wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What `litellm.completion` returns (a `ModelResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: Option<String>,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletion {
    /// The text of the first choice.
    pub fn text(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.message.text())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ChatMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chunk of a streamed completion (a `ModelResponseStream`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionChunk {
    /// The text this chunk adds to the first choice.
    pub fn text(&self) -> Option<&str> {
        self.choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Worker {
    /// `await litellm.acompletion(**request)` in the worker. Many may run at once.
    pub async fn completion(&self, request: &ChatCompletionRequest) -> Result<ChatCompletion> {
        self.completion_with_timeout(request, None).await
    }

    /// [`Worker::completion`] with its own timeout.
    pub async fn completion_with_timeout(
        &self,
        request: &ChatCompletionRequest,
        timeout: Option<Duration>,
    ) -> Result<ChatCompletion> {
        let mut params = serde_json::to_value(request).map_err(Error::Encode)?;
        if let Some(obj) = params.as_object_mut() {
            obj.insert("stream".to_owned(), Value::Bool(false));
        }
        let value = self.request(Op::Completion { params }, timeout).await?;
        serde_json::from_value(value).map_err(|source| Error::Decode {
            id: None,
            what: "chat completion",
            source,
        })
    }

    /// A streamed completion: chunks arrive as the model sends them.
    pub async fn completion_stream(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<CompletionStream> {
        self.completion_stream_with_timeout(request, None).await
    }

    /// [`Worker::completion_stream`]; `timeout` bounds the whole stream.
    pub async fn completion_stream_with_timeout(
        &self,
        request: &ChatCompletionRequest,
        timeout: Option<Duration>,
    ) -> Result<CompletionStream> {
        let mut params = serde_json::to_value(request).map_err(Error::Encode)?;
        if let Some(obj) = params.as_object_mut() {
            obj.insert("stream".to_owned(), Value::Bool(true));
        }
        let inner = self
            .request_stream(Op::Completion { params }, timeout)
            .await?;
        Ok(CompletionStream { inner })
    }
}

/// Typed chunks of a streamed completion. Dropping it cancels the request.
pub struct CompletionStream {
    inner: ReplyStream,
}

impl futures_core::Stream for CompletionStream {
    type Item = Result<ChatCompletionChunk>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let id = self.inner.id();
        Pin::new(&mut self.inner).poll_next(cx).map(|item| {
            item.map(|value| {
                value.and_then(|value| {
                    serde_json::from_value(value).map_err(|source| Error::Decode {
                        id: Some(id),
                        what: "chat completion chunk",
                        source,
                    })
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trips_unknown_fields() {
        let raw = json!({
            "model": "openai/gpt-4o-mini",
            "messages": [
                {"role": "user", "content": "hi", "name": "bob"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
                {"role": "user", "content": [{"type": "text", "text": "x"}]}
            ],
            "temperature": 0.2,
            "top_p": 0.9,
            "tool_choice": "auto",
        });
        let req: ChatCompletionRequest = serde_json::from_value(raw.clone()).expect("parse");
        assert_eq!(req.extra.get("top_p"), Some(&json!(0.9)));
        assert_eq!(req.messages[0].name.as_deref(), Some("bob"));
        assert_eq!(serde_json::to_value(&req).expect("ser"), raw);
    }

    #[test]
    fn response_keeps_unknown_fields() {
        let raw = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "system_fingerprint": "fp",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hello", "provider_specific_fields": {}}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                "completion_tokens_details": null}
        });
        let resp: ChatCompletion = serde_json::from_value(raw.clone()).expect("parse");
        assert_eq!(resp.text(), Some("hello"));
        assert_eq!(resp.extra.get("system_fingerprint"), Some(&json!("fp")));
        assert_eq!(serde_json::to_value(&resp).expect("ser"), raw);
    }

    #[test]
    fn chunk_delta_parses() {
        let raw = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "He", "role": null}, "finish_reason": null}]});
        let chunk: ChatCompletionChunk = serde_json::from_value(raw).expect("parse");
        assert_eq!(chunk.text(), Some("He"));
    }
}

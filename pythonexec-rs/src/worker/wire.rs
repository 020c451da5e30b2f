//! What goes on the wire: requests out, reply lines in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{tail, PythonException};

/// How much of an undecodable reply line an error quotes.
const BAD_LINE_QUOTE: usize = 500;

/// A request, as it goes on the wire (with an `id` added).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Does nothing; answers `null`. For health and benchmarks.
    Ping,
    /// Run statements with `input` bound; the reply is the variable `result`.
    Exec { code: String, input: Value },
    /// Evaluate an expression with `input` bound; an awaitable result is awaited.
    Eval { expr: String, input: Value },
    /// Call a function by dotted name (`"json.dumps"`, `"mypkg.mod.func"`).
    Call {
        function: String,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    },
    /// `litellm.acompletion(**params)`; streamed as chunks when `params.stream` is true.
    Completion { params: Value },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Exec { .. } => "exec",
            Op::Eval { .. } => "eval",
            Op::Call { .. } => "call",
            Op::Completion { .. } => "completion",
        }
    }
}

#[derive(Serialize)]
pub(super) struct Envelope<'a> {
    pub(super) id: u64,
    #[serde(flatten)]
    pub(super) op: &'a Op,
}

#[derive(Deserialize)]
pub(super) struct Incoming {
    pub(super) id: Option<u64>,
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) value: Value,
    pub(super) error: Option<PythonException>,
    pub(super) protocol: Option<u32>,
    pub(super) message: Option<String>,
}

/// One line read from the worker's protocol pipe.
pub(super) enum Line {
    Reply(Incoming),
    Blank,
    /// Not a reply this library can decode. `id` is the request it names, when that much can
    /// be read; `line` is the raw text, decoded lossily and cut for quoting.
    Bad {
        id: Option<u64>,
        line: String,
        reason: String,
    },
}

/// Decode one line; never fails: what cannot be decoded becomes [`Line::Bad`].
pub(super) fn parse_line(bytes: &[u8]) -> Line {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Line::Blank;
    }
    let reason = match serde_json::from_slice::<Incoming>(trimmed) {
        Ok(incoming) => return Line::Reply(incoming),
        Err(err) => err.to_string(),
    };
    let text = String::from_utf8_lossy(trimmed);
    Line::Bad {
        id: id_of(&text),
        line: tail(&text, BAD_LINE_QUOTE),
        reason,
    }
}

/// The request id of a line that is not a valid reply: from the JSON when it parses, else
/// from its start, which is `{"id":N,` in every line the worker writes.
fn id_of(text: &str) -> Option<u64> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return value.get("id").and_then(Value::as_u64);
    }
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest
        .strip_prefix("\"id\"")?
        .trim_start()
        .strip_prefix(':')?;
    let rest = rest.trim_start();
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let after = rest[digits..].trim_start();
    if !(after.starts_with(',') || after.starts_with('}')) {
        return None;
    }
    rest[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(op: &Op) -> Value {
        serde_json::to_value(Envelope { id: 7, op }).expect("serialize")
    }

    #[test]
    fn requests_have_the_documented_shape() {
        assert_eq!(wire(&Op::Ping), json!({"id": 7, "op": "ping"}));
        assert_eq!(
            wire(&Op::Exec {
                code: "result = 1".into(),
                input: json!([1])
            }),
            json!({"id": 7, "op": "exec", "code": "result = 1", "input": [1]})
        );
        assert_eq!(
            wire(&Op::Call {
                function: "json.dumps".into(),
                args: vec![json!(1)],
                kwargs: Map::new()
            }),
            json!({"id": 7, "op": "call", "function": "json.dumps", "args": [1], "kwargs": {}})
        );
        assert_eq!(
            wire(&Op::Completion {
                params: json!({"model": "m"})
            }),
            json!({"id": 7, "op": "completion", "params": {"model": "m"}})
        );
    }

    #[test]
    fn replies_parse() {
        let r: Incoming = serde_json::from_str(
            r#"{"id":3,"type":"error","error":{"type":"ValueError","message":"m","traceback":"t"}}"#,
        )
        .expect("parse");
        assert_eq!(r.id, Some(3));
        assert_eq!(r.error.map(|e| e.exc_type), Some("ValueError".to_owned()));
        let r: Incoming =
            serde_json::from_str(r#"{"id":null,"type":"ready","protocol":1,"pid":5}"#)
                .expect("parse");
        assert_eq!(r.protocol, Some(super::super::PROTOCOL_VERSION));
    }

    fn bad(line: &[u8]) -> (Option<u64>, String, String) {
        match parse_line(line) {
            Line::Bad { id, line, reason } => (id, line, reason),
            Line::Reply(_) => panic!("parsed"),
            Line::Blank => panic!("blank"),
        }
    }

    #[test]
    fn undecodable_lines_keep_their_id_and_text() {
        let (id, line, reason) = bad(b"{\"id\":12,\"type\":\"result\",\"value\":NaN}\n");
        assert_eq!(id, Some(12));
        assert_eq!(line, "{\"id\":12,\"type\":\"result\",\"value\":NaN}");
        assert!(!reason.is_empty());
        let (id, _, _) = bad(b"{\"id\": 5, \"type\":\"result\",\"value\":\"\\ud800\"}");
        assert_eq!(id, Some(5));
        let (id, line, _) = bad(b"{\"id\":7,\"type\":\"result\",\"value\":\"\xff\xfe\"}");
        assert_eq!(id, Some(7));
        assert!(line.contains('\u{fffd}'), "{line}");
        // Valid JSON, wrong shape: the id still comes from the JSON.
        let (id, _, _) = bad(br#"{"id":9,"type":3}"#);
        assert_eq!(id, Some(9));
        assert_eq!(bad(b"garbage").0, None);
        assert_eq!(bad(b"{\"id\":12x,").0, None);
        assert!(matches!(parse_line(b" \n"), Line::Blank));
    }
}

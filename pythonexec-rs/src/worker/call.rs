//! One request in flight, and the stream of a streamed reply.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::lock;
use super::process::{died, Process, Reply};
use crate::error::{Error, Result};

pub(super) struct Call {
    pub(super) id: u64,
    pub(super) rx: mpsc::UnboundedReceiver<Reply>,
    pub(super) process: Arc<Process>,
    pub(super) done: bool,
}

impl Call {
    pub(super) async fn result(&mut self) -> Result<Value> {
        loop {
            let reply = self.rx.recv().await;
            if let Some(outcome) = self.settle(reply) {
                return outcome;
            }
        }
    }

    /// `None` for a chunk (keep going), else the final outcome.
    fn settle(&mut self, reply: Option<Reply>) -> Option<Result<Value>> {
        let outcome = match reply {
            Some(Reply::Chunk(_)) => return None,
            Some(Reply::Result(value)) => Ok(value),
            Some(Reply::Error(exc)) => Err(Error::Python(exc)),
            Some(Reply::Cancelled) => Err(Error::Cancelled { id: self.id }),
            Some(Reply::Bad { line, reason }) => Err(Error::BadReply {
                id: self.id,
                line,
                reason,
            }),
            Some(Reply::Died(death)) => Err(death.error()),
            None => Err(died(&self.process.shared)),
        };
        self.done = true;
        Some(outcome)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(map) = lock(&self.process.shared.pending).as_mut() {
            map.remove(&self.id);
        }
        let line = format!("{{\"op\":\"cancel\",\"target\":{}}}\n", self.id);
        self.process.send(line.into_bytes());
    }
}

/// The chunks of a streamed reply, as JSON values. Implements [`futures_core::Stream`].
pub struct ReplyStream {
    pub(super) call: Call,
    pub(super) op: &'static str,
    pub(super) timeout: Duration,
    pub(super) deadline: Pin<Box<tokio::time::Sleep>>,
    pub(super) finished: bool,
}

impl ReplyStream {
    /// The request id, as sent to Python.
    pub fn id(&self) -> u64 {
        self.call.id
    }
}

impl futures_core::Stream for ReplyStream {
    type Item = Result<Value>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(reply) = this.call.rx.poll_recv(cx) {
            return Poll::Ready(match reply {
                Some(Reply::Chunk(value)) => Some(Ok(value)),
                other => {
                    this.finished = true;
                    match this.call.settle(other) {
                        Some(Ok(_)) | None => None,
                        Some(Err(err)) => Some(Err(err)),
                    }
                }
            });
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.finished = true;
            return Poll::Ready(Some(Err(Error::RequestTimeout {
                id: this.call.id,
                op: this.op,
                timeout: this.timeout,
            })));
        }
        Poll::Pending
    }
}

// A Node.js Lambda function that answers a chat request with LiteLLM through the layer's
// Python (the Node.js twin of pythonexec-rs/examples/lambda_chat.rs).
//
// Event: a LiteLLM chat completion request, e.g.
//   {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
// Reply: the completion as LiteLLM returns it. With "stream": true the chunks are gathered
// and the reply is {"text": ..., "chunks": N}. Errors reach the caller with the Python
// exception's type as errorType (litellm.exceptions.AuthenticationError).
//
// The package comes from the layer (/opt/nodejs/node_modules/pythonexec); the worker is
// started at INIT and the module waits for it with top-level await, so LiteLLM is imported
// during INIT, not during the first invocation.

import { PythonError, Worker, WorkerError } from "pythonexec";

const worker = new Worker({ preload: ["litellm"] });
try {
  const info = await worker.ready();
  console.log(
    JSON.stringify({ msg: "python worker ready", pid: info.pid, python: info.python, preloadSeconds: info.preload_seconds, interpreter: worker.interpreter.program }),
  );
} catch (err) {
  // Not fatal: every invocation tries a fresh process and answers with the reason.
  console.error(JSON.stringify({ msg: "python worker failed to start", code: err.code, error: err.message }));
}

/** Lambda uses `name` as errorType: the Python exception's type, or pythonexec.<CODE>. */
function forLambda(err) {
  if (err instanceof PythonError) {
    const out = new Error(err.pythonMessage);
    out.name = err.type;
    return out;
  }
  if (err instanceof WorkerError) {
    const out = new Error(err.message);
    out.name = `pythonexec.${err.code}`;
    return out;
  }
  return err;
}

export const handler = async (event) => {
  if (!event || typeof event.model !== "string" || !Array.isArray(event.messages)) {
    const err = new TypeError('the event must be a chat completion request: {"model": "...", "messages": [...]}');
    err.name = "InvalidEvent";
    throw err;
  }
  try {
    if (!event.stream) return await worker.completion(event);
    let text = "";
    let chunks = 0;
    for await (const chunk of worker.completionStream(event)) {
      chunks += 1;
      text += chunk.choices?.[0]?.delta?.content ?? "";
    }
    return { text, chunks };
  } catch (err) {
    console.error(JSON.stringify({ msg: "completion failed", type: err.type ?? err.code, error: err.message }));
    throw forLambda(err);
  }
};

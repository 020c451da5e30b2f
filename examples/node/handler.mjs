// A Node.js Lambda function that answers a chat request with LiteLLM through the layer's
// Python (the Node.js twin of pythonexec-rs/examples/lambda_chat.rs).
//
// Event: a LiteLLM chat completion request, e.g.
//   {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
// Reply: the completion as LiteLLM returns it. With "stream": true the chunks are gathered
// and the reply is {"text": ..., "chunks": N}. Errors reach the caller with the Python
// exception's type as errorType (litellm.exceptions.AuthenticationError).
//
// The package comes from the layer (/opt/nodejs/node_modules/pythonexec). INIT waits, with
// top-level await, until the worker has imported LiteLLM, at most 9 s of Lambda's 10 s INIT
// limit: INIT runs with an unthrottled CPU, invocations at the memory's share of a vCPU (0.29
// at 512 MB), so an import left to the first invocation takes several times longer. Past the
// deadline, or when the worker cannot start, spawnReady logs why and INIT goes on; every
// invocation then waits for the worker (or tries a fresh process and answers with the reason).

import { PythonError, Worker, WorkerError } from "pythonexec";

const worker = await Worker.spawnReady({ preload: ["litellm"], deadlineMs: 9000 });
const logReady = (info, atInit) =>
  console.log(
    JSON.stringify({ msg: "python worker ready", atInit, pid: info.pid, python: info.python, preloadSeconds: info.preload_seconds, interpreter: worker.interpreter.program }),
  );
if (worker.readyInfo) logReady(worker.readyInfo, true);
// Still starting after the deadline: say so when it is ready.
else if (worker.pid) worker.ready().then((info) => logReady(info, false), () => {});

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

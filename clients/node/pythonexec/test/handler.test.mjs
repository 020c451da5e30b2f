// examples/node/handler.mjs behind a Runtime API emulator: INIT with top-level await, cold and
// warm invocations, a bad event, a Python exception, a crash of the worker between invocations.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

import { LITELLM_PYTHON, PYTHON, WORKER_PATH, repo } from "../fixtures/helpers.mjs";
import { REPLY, startMock } from "../fixtures/mock-openai.mjs";

/** A Runtime API emulator: `invoke(event)` resolves to `{ ok, body }`. */
async function startRuntimeApi() {
  const queue = [];
  const waiting = [];
  const results = new Map();
  let n = 0;
  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url.endsWith("/invocation/next")) {
      const serve = ({ id, event }) => {
        res.writeHead(200, {
          "Content-Type": "application/json",
          "Lambda-Runtime-Aws-Request-Id": id,
          "Lambda-Runtime-Deadline-Ms": String(Date.now() + 300000),
          "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:chat",
        });
        res.end(JSON.stringify(event));
      };
      if (queue.length) serve(queue.shift());
      else waiting.push(serve);
      return;
    }
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => {
      const m = /\/invocation\/([^/]+)\/(response|error)$/.exec(req.url);
      res.writeHead(202).end();
      if (m) results.get(m[1])?.({ ok: m[2] === "response", body: JSON.parse(data) });
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${server.address().port}`,
    invoke(event) {
      const id = `req-${++n}`;
      const done = new Promise((resolve) => results.set(id, resolve));
      const item = { id, event };
      if (waiting.length) waiting.shift()(item);
      else queue.push(item);
      return done;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The function as Lambda lays it out: /var/task/handler.mjs, the package from the layer. */
function taskDir() {
  const task = mkdtempSync(path.join(os.tmpdir(), "pythonexec-task-"));
  copyFileSync(path.join(repo, "examples/node/handler.mjs"), path.join(task, "handler.mjs"));
  mkdirSync(path.join(task, "node_modules"));
  symlinkSync(path.join(repo, "clients/node/pythonexec"), path.join(task, "node_modules/pythonexec"));
  return task;
}

function startFunction(api, python) {
  const logs = [];
  const child = spawn(process.execPath, [path.join(repo, "clients/node/pythonexec/fixtures/lambda-runtime.mjs"), path.join(taskDir(), "handler.mjs")], {
    env: {
      ...process.env,
      AWS_LAMBDA_RUNTIME_API: api.address,
      AWS_LAMBDA_FUNCTION_NAME: "chat",
      PYTHONEXEC_PYTHON: python,
      PYTHONEXEC_WORKER: WORKER_PATH,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (c) => logs.push(...String(c).split("\n")));
  child.stderr.on("data", (c) => logs.push(...String(c).split("\n")));
  return { child, logs };
}

/** Kills the worker with SIGKILL and waits until the process is gone (up to 2 s). */
async function killAndWait(pid) {
  process.kill(pid, "SIGKILL");
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}

test("the Node handler: bad event, Python exception, crash between invocations", { timeout: 120000 }, async () => {
  const api = await startRuntimeApi();
  const fn = startFunction(api, PYTHON);
  try {
    const bad = await api.invoke({ hello: "world" });
    assert.equal(bad.ok, false);
    assert.equal(bad.body.errorType, "InvalidEvent");
    // Nothing listens on port 9: with LiteLLM a litellm.exceptions.* error, without it
    // ModuleNotFoundError; either way the Python exception's type is the errorType.
    const event = {
      model: "openai/gpt-4o-mini",
      messages: [{ role: "user", content: "hi" }],
      api_base: "http://127.0.0.1:9/v1",
      api_key: "x",
      num_retries: 0,
    };
    const first = await api.invoke(event);
    assert.equal(first.ok, false);
    assert.match(first.body.errorType, /^(ModuleNotFoundError|litellm\.exceptions\.\w+)$/, JSON.stringify(first.body));
    const ready = fn.logs.map((l) => /"python worker ready".*"pid":(\d+)/.exec(l)).find(Boolean);
    assert.ok(ready, fn.logs.join("\n"));
    const pid = Number(ready[1]);
    // "Between invocations": the process is gone before the next event arrives.
    await killAndWait(pid);
    const again = await api.invoke(event);
    assert.equal(again.body.errorType, first.body.errorType, JSON.stringify(again.body));
  } finally {
    fn.child.kill("SIGKILL");
    await api.close();
  }
});

test("the Node handler answers plain and streamed completions, cold and warm", { skip: LITELLM_PYTHON ? false : "set PYTHONEXEC_TEST_PYTHON to a python with litellm", timeout: 300000 }, async () => {
  const mock = await startMock();
  const api = await startRuntimeApi();
  const fn = startFunction(api, LITELLM_PYTHON);
  try {
    const event = { model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }], api_base: mock.baseUrl, api_key: "x", num_retries: 0 };
    const cold = await api.invoke(event);
    assert.equal(cold.ok, true, JSON.stringify(cold.body));
    assert.equal(cold.body.choices[0].message.content, REPLY);
    const started = Date.now();
    const warm = await api.invoke(event);
    assert.equal(warm.body.choices[0].message.content, REPLY);
    assert.ok(Date.now() - started < 5000);
    const streamed = await api.invoke({ ...event, stream: true });
    assert.equal(streamed.body.text, REPLY);
    const failed = await api.invoke({ ...event, api_base: "http://127.0.0.1:9/v1" });
    assert.match(failed.body.errorType, /^litellm\./);
  } finally {
    fn.child.kill("SIGKILL");
    await api.close();
    await mock.close();
  }
});

// pythonexec-rs/examples/lambda_chat.rs behind the same emulator (built by
// `cargo test -p pythonexec-rs` or `cargo build -p pythonexec-rs --example lambda_chat`).
const RUST_EXAMPLE = path.join(repo, "target/debug/examples/lambda_chat");

function startRust(api, env) {
  const logs = [];
  const child = spawn(RUST_EXAMPLE, [], {
    env: {
      ...process.env,
      AWS_LAMBDA_RUNTIME_API: api.address,
      AWS_LAMBDA_FUNCTION_NAME: "chat",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "1024",
      AWS_LAMBDA_FUNCTION_VERSION: "1",
      AWS_LAMBDA_LOG_STREAM_NAME: "test",
      AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/chat",
      RUST_LOG: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (c) => logs.push(...String(c).split("\n")));
  child.stderr.on("data", (c) => logs.push(...String(c).split("\n")));
  // An invocation the function will never answer (it died) fails instead of hanging.
  const exited = new Promise((_, reject) =>
    child.on("exit", (code, signal) => reject(new Error(`function exited (${code ?? signal}):\n${logs.join("\n")}`))),
  );
  exited.catch(() => {});
  const invoke = (event) => Promise.race([api.invoke(event), exited]);
  return { child, logs, invoke };
}

test("the Rust example: Python exception type as errorType, crash between invocations, plain logs", { skip: existsSync(RUST_EXAMPLE) ? false : `build ${RUST_EXAMPLE} first`, timeout: 120000 }, async () => {
  const api = await startRuntimeApi();
  const fn = startRust(api, { PYTHONEXEC_PYTHON: PYTHON });
  try {
    const event = { model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }], api_base: "http://127.0.0.1:9/v1", api_key: "x", num_retries: 0 };
    const first = await fn.invoke(event);
    assert.equal(first.ok, false);
    assert.match(first.body.errorType, /^(ModuleNotFoundError|litellm\.exceptions\.\w+)$/, JSON.stringify(first.body));
    const started = fn.logs.map((l) => /started python worker pid=(\d+)/.exec(l)).find(Boolean);
    assert.ok(started, fn.logs.join("\n"));
    const pid = Number(started[1]);
    await killAndWait(pid);
    const again = await fn.invoke(event);
    assert.equal(again.body.errorType, first.body.errorType, JSON.stringify(again.body));
    assert.ok(!fn.logs.some((l) => l.includes("\x1b")), "no ANSI escapes in the logs");
  } finally {
    fn.child.kill("SIGKILL");
    await api.close();
  }
});

test("the Rust example without a python says to set PYTHONEXEC_PYTHON, at once", { skip: existsSync(RUST_EXAMPLE) ? false : `build ${RUST_EXAMPLE} first`, timeout: 60000 }, async () => {
  const api = await startRuntimeApi();
  const fn = startRust(api, { PYTHONEXEC_PYTHON: "" });
  try {
    const started = Date.now();
    const reply = await fn.invoke({ model: "m", messages: [] });
    assert.equal(reply.body.errorType, "pythonexec::InterpreterNotFound");
    assert.match(reply.body.errorMessage, /set PYTHONEXEC_PYTHON/);
    assert.ok(Date.now() - started < 10000);
  } finally {
    fn.child.kill("SIGKILL");
    await api.close();
  }
});

// LiteLLM through the Node.js client against a loopback server. Needs a python that can
// import litellm: PYTHONEXEC_TEST_PYTHON (e.g. the fixture layer's python/bin/python3.11).

import assert from "node:assert/strict";
import { test } from "node:test";

import { Worker } from "../index.mjs";
import { LITELLM_PYTHON, WORKER_PATH, worker } from "../fixtures/helpers.mjs";
import { REPLY, startMock } from "../fixtures/mock-openai.mjs";

const skip = LITELLM_PYTHON ? false : "set PYTHONEXEC_TEST_PYTHON to a python that can import litellm";

test("completion, completionStream and concurrent completions", { skip, timeout: 300000 }, async () => {
  const mock = await startMock();
  const w = worker({ python: LITELLM_PYTHON, preload: ["litellm"] });
  await w.ready();
  const params = (text) => ({
    model: "openai/gpt-4o-mini",
    messages: [{ role: "user", content: text }],
    api_base: mock.baseUrl,
    api_key: "x",
    num_retries: 0,
  });
  const reply = await w.completion(params("Say hello"));
  assert.equal(reply.object, "chat.completion");
  assert.equal(reply.choices[0].message.content, REPLY);
  let text = "";
  let chunks = 0;
  for await (const chunk of w.completionStream(params("Stream please"))) {
    chunks += 1;
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(text, REPLY);
  assert.ok(chunks > 2);
  const many = await Promise.all([0, 1, 2, 3].map((i) => w.completion(params(`n${i}`))));
  assert.equal(many.length, 4);
  assert.equal(mock.bodies.at(-1).model, "gpt-4o-mini");
  // A failed call (nothing listens on port 9) is a typed exception; LiteLLM's stdout banner
  // does not disturb the protocol.
  await assert.rejects(w.completion({ ...params("x"), api_base: "http://127.0.0.1:9/v1" }), (e) => {
    assert.match(e.type, /^litellm\./);
    return true;
  });
  assert.equal(await w.ping(), null);
  await w.shutdown();
  await mock.close();
});

test("spawnReady returns once litellm is imported (Lambda INIT)", { skip, timeout: 300000 }, async () => {
  const w = await Worker.spawnReady({
    python: LITELLM_PYTHON,
    workerPath: WORKER_PATH,
    stderr: false,
    preload: ["litellm"],
    deadlineMs: 120000,
  });
  // Asked before any request could have waited for it.
  assert.equal(w.isReady, true);
  assert.equal(await w.eval("'litellm' in __import__('sys').modules"), true);
  await w.shutdown();
});

test("spawnReady falls back past its deadline and says why", { skip, timeout: 300000 }, async () => {
  const logged = [];
  const original = console.error;
  console.error = (line) => logged.push(String(line));
  let w;
  try {
    w = await Worker.spawnReady({
      python: LITELLM_PYTHON,
      workerPath: WORKER_PATH,
      stderr: false,
      preload: ["litellm"],
      deadlineMs: 50,
    });
  } finally {
    console.error = original;
  }
  assert.equal(w.isReady, false, "`import litellm` took under 50 ms");
  assert.equal(logged.length, 1, logged.join("\n"));
  assert.match(logged[0], /^pythonexec: the python worker was not ready within the 50 ms deadline \(importing litellm\)/);
  // The first request waits for the import.
  assert.equal(await w.eval("__import__('litellm').__name__"), "litellm");
  assert.equal(w.isReady, true);
  await w.shutdown();
});

// The protocol conformance suite for the Node.js client; the same cases run against the Rust
// client in pythonexec-rs/tests (python.rs, conformance.rs).

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

import { PythonError, WorkerError } from "../index.mjs";
import { BAD_WORKER, PYTHON, WORKER_PATH, fakePython, repo, sleep, worker } from "../fixtures/helpers.mjs";

test("requests: ping, exec, eval, call, awaited coroutines", async () => {
  const w = worker();
  const info = await w.ready();
  assert.equal(info.protocol, 1);
  assert.equal(await w.ping(), null);
  assert.deepEqual(await w.exec("result = {'sum': input['a'] + input['b']}", { a: 1, b: 2 }), { sum: 3 });
  assert.equal(await w.eval("[1, 2, 3][-1]"), 3);
  assert.equal(await w.call("json.dumps", [{ b: 1, a: 2 }], { sort_keys: true }), '{"a": 2, "b": 1}');
  assert.equal(await w.eval("__import__('asyncio').sleep(0, result='awaited')"), "awaited");
  assert.equal(w.generation, 1);
  await w.shutdown();
  await assert.rejects(w.ping(), (e) => e.code === "SHUT_DOWN");
});

test("streams: for await over generator items, early exit cancels", async () => {
  const w = worker();
  const items = [];
  for await (const item of w.stream({ op: "eval", expr: "({'i': i} for i in range(5))" })) items.push(item);
  assert.deepEqual(items, [0, 1, 2, 3, 4].map((i) => ({ i })));
  const code = "async def gen():\n    for i in range(1000):\n        yield i\n        await __import__('asyncio').sleep(0.01)\n";
  await w.exec(code + "import builtins\nbuiltins.gen = gen\nresult = None");
  const seen = [];
  for await (const item of w.stream({ op: "eval", expr: "gen()" })) {
    seen.push(item);
    if (seen.length === 3) break;
  }
  assert.deepEqual(seen, [0, 1, 2]);
  assert.equal(await w.ping(), null);
  await w.shutdown();
});

test("errors: Python exceptions are typed, the worker survives", async () => {
  const w = worker();
  await assert.rejects(w.exec("def f():\n    raise ValueError('bad value 7')\nf()"), (e) => {
    assert.ok(e instanceof PythonError);
    assert.equal(e.type, "ValueError");
    assert.equal(e.pythonMessage, "bad value 7");
    assert.match(e.traceback, /Traceback[\s\S]*in f/);
    return true;
  });
  await assert.rejects(w.call("json.loads", ["{nope"]), (e) => e.type === "json.decoder.JSONDecodeError");
  await assert.rejects(w.eval("object()"), (e) => e.type === "TypeError");
  assert.equal(await w.ping(), null);
  assert.equal(w.generation, 1);
  await w.shutdown();
});

test("prints to stdout (a LiteLLM banner) do not corrupt the protocol", async () => {
  const lines = [];
  const w = worker({ stderr: (line) => lines.push(line) });
  const v = await w.exec(
    "import os, sys\nprint('\\x1b[92mGive Feedback / Get Help {')\nsys.stdout.write('more garbage\\n')\nos.write(1, b'raw fd 1\\n')\nresult = 'clean'",
  );
  assert.equal(v, "clean");
  assert.equal(await w.ping(), null);
  assert.ok(lines.includes("Give Feedback / Get Help {"), "logged without colours: " + JSON.stringify(lines));
  await w.shutdown();
});

test("cancellation with AbortSignal rejects with its reason and frees the worker", async () => {
  const w = worker();
  await w.ready();
  const controller = new AbortController();
  const slow = w.eval("__import__('asyncio').sleep(600)", null, { signal: controller.signal });
  await sleep(200);
  controller.abort();
  await assert.rejects(slow, (e) => e.name === "AbortError");
  await assert.rejects(w.ping({ signal: AbortSignal.abort() }), (e) => e.name === "AbortError");
  let tasks = 99;
  for (let i = 0; i < 100 && tasks !== 0; i++) {
    tasks = await w.eval("len([t for t in __import__('asyncio').all_tasks(loop) if 'sleep' in repr(t.get_coro())])");
    if (tasks) await sleep(50);
  }
  assert.equal(tasks, 0);
  await w.shutdown();
});

test("a request timeout cancels it and the worker keeps working", async () => {
  const w = worker();
  await w.ready();
  const started = Date.now();
  await assert.rejects(w.eval("__import__('asyncio').sleep(600)", null, { timeoutMs: 300 }), (e) => e.code === "TIMEOUT");
  assert.ok(Date.now() - started < 2000);
  assert.equal(await w.ping(), null);
  await w.shutdown();
});

test("kill -9 mid-request fails it at once; the next request runs on a new process", async () => {
  const w = worker();
  await w.ready();
  const pid = w.pid;
  const slow = w.exec("import time\ntime.sleep(120)");
  await sleep(300);
  process.kill(pid, "SIGKILL");
  const started = Date.now();
  await assert.rejects(slow, (e) => {
    assert.equal(e.code, "WORKER_DIED");
    assert.match(e.message, /SIGKILL/);
    return true;
  });
  assert.ok(Date.now() - started < 2000, "failed at once");
  assert.equal(await w.ping(), null);
  assert.notEqual(w.pid, pid);
  assert.equal(w.generation, 2);
  await w.shutdown();
});

test("non-UTF-8 bytes on fd 1 and fd 2, then normal requests and lots of prints", async () => {
  const lines = [];
  const w = worker({ stderr: (line) => lines.push(line) });
  const code =
    "import os, sys\nos.write(1, b'\\xff\\xfe not utf-8 on fd 1\\n')\nos.write(2, b'\\xc3\\x28 not utf-8 on fd 2\\n')\nresult = 'still fine'";
  assert.equal(await w.exec(code), "still fine");
  const lots = "import sys\nfor i in range(20000):\n    print('x' * 100)\n    print('y' * 100, file=sys.stderr)\nresult = 'printed'";
  assert.equal(await w.exec(lots), "printed");
  assert.equal(await w.ping(), null);
  assert.ok(lines.some((l) => l.includes("\ufffd\ufffd not utf-8 on fd 1")), "fd 1 logged lossily");
  assert.ok(lines.some((l) => l.includes("not utf-8 on fd 2")));
  assert.equal(w.generation, 1);
  await w.shutdown();
});

test("NaN, infinities, a lone surrogate and 10**400 are each refused within a second", async () => {
  const w = worker();
  await w.ready();
  const cases = [
    ["float('nan')", "float nan"],
    ["{'x': [float('-inf')]}", "float -inf"],
    ["'a\\udcff'", "lone surrogate"],
    ["b'\\xff'.decode('utf-8', 'surrogateescape')", "lone surrogate"],
    ["10**400", "an int of 1329 bits"],
  ];
  for (const [expr, what] of cases) {
    const started = Date.now();
    await assert.rejects(w.eval(expr), (e) => {
      assert.equal(e.type, "pythonexec.UnsendableValue", expr);
      assert.ok(e.message.includes(what), `${expr}: ${e.message}`);
      return true;
    });
    assert.ok(Date.now() - started < 1000, `${expr} took too long`);
  }
  assert.deepEqual(await w.eval("[2**53, -(2**53), 'a,12345678901234567890123', 1e308, 'é']"), [
    2 ** 53,
    -(2 ** 53),
    "a,12345678901234567890123",
    1e308,
    "é",
  ]);
  const chunks = [];
  await assert.rejects(async () => {
    for await (const c of w.stream({ op: "eval", expr: "(x for x in [1, float('nan'), 3])" })) chunks.push(c);
  }, (e) => e.type === "pythonexec.UnsendableValue");
  assert.deepEqual(chunks, [1]);
  await w.shutdown();
});

test("1,000 concurrent requests", async () => {
  const w = worker();
  const replies = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => w.eval("{'echo': input, 'sq': input * input}", i)),
  );
  replies.forEach((r, i) => assert.deepEqual(r, { echo: i, sq: i * i }));
  assert.equal(w.generation, 1);
  await w.shutdown();
});

test("a five-megabyte reply round-trips", async () => {
  const w = worker();
  const big = "x".repeat(5 * 1024 * 1024);
  const v = await w.exec("result = input + 'y'", big);
  assert.equal(v.length, big.length + 1);
  await w.shutdown();
});

test("an undecodable reply line fails its own request at once, quoting it", async () => {
  const python = fakePython(`exec '${PYTHON}' -u '${BAD_WORKER}'`);
  const w = worker({ python });
  await w.ready();
  for (const [kind, quoted] of [
    ["nan", "NaN"],
    ["bytes", "\ufffd"],
    ["shape", '"type":7'],
  ]) {
    const started = Date.now();
    await assert.rejects(w.eval(kind), (e) => {
      assert.equal(e.code, "BAD_REPLY", kind);
      assert.ok(e.details.line.includes(quoted), `${kind}: ${e.details.line}`);
      assert.ok(e.message.includes(quoted));
      return true;
    });
    assert.ok(Date.now() - started < 1000, `${kind} took too long`);
  }
  assert.equal(await w.eval("ok"), "fine");
  await w.shutdown();
});

test("the stderr tail of a dead worker is the real one", async () => {
  const w = worker();
  const code =
    "import os, sys\nos.write(2, b'\\xff\\xfe early garbage\\n')\nprint('last words 4711', file=sys.stderr)\nsys.stderr.flush()\nos._exit(3)";
  await assert.rejects(w.exec(code), (e) => {
    assert.equal(e.code, "WORKER_DIED");
    assert.match(e.details.stderrTail, /last words 4711/);
    assert.match(e.details.stderrTail, /\ufffd/);
    assert.match(e.details.status, /3/);
    return true;
  });
  assert.equal(await w.ping(), null);
  assert.equal(w.generation, 2);
  await w.shutdown();
});

test("a worker that dies at start reports its stderr; each request tries a fresh process", async () => {
  const python = fakePython("echo 'ImportError: no module named encodings' >&2\nexit 3");
  const w = worker({ python });
  await assert.rejects(w.ping(), (e) => {
    assert.equal(e.code, "WORKER_START");
    assert.match(e.message, /no module named encodings/);
    assert.match(e.message, /exit status: 3/);
    assert.match(e.message, /given explicitly/);
    return true;
  });
  await assert.rejects(w.ping(), (e) => e.code === "WORKER_START");
  assert.equal(w.generation, 2);
});

test("a worker with another protocol version is refused", async () => {
  const python = fakePython(`echo '{"id": null, "type": "ready", "protocol": 99}'\nexec sleep 600`);
  const w = worker({ python });
  await assert.rejects(w.ready(), (e) => e.code === "PROTOCOL_VERSION" && e.details.found === 99);
});

test("a missing interpreter is reported with the reason; inside Lambda the hint names PYTHONEXEC_PYTHON", async () => {
  const w = worker({ python: "/nonexistent/python3" });
  await assert.rejects(w.ready(), (e) => e.code === "INTERPRETER_NOT_FOUND" && /given explicitly/.test(e.message));
  const root = mkdtempSync(path.join(os.tmpdir(), "pythonexec-opt-"));
  const { Worker } = await import("../index.mjs");
  const inLambda = new Worker({
    workerPath: WORKER_PATH,
    layerRoot: root,
    env: { AWS_LAMBDA_FUNCTION_NAME: "_" },
  });
  await assert.rejects(inLambda.ping(), (e) => {
    assert.equal(e.code, "INTERPRETER_NOT_FOUND");
    assert.match(e.message, /set PYTHONEXEC_PYTHON/);
    return true;
  });
});

test("cwd is /tmp and neither it nor the function's folder is on sys.path", async () => {
  const task = mkdtempSync(path.join(os.tmpdir(), "pythonexec-task-"));
  writeFileSync(path.join(task, "json.py"), "raise SystemExit('shadowed!')\n");
  const w = worker({ cwd: task });
  assert.equal(await w.eval("__import__('json').dumps(1)"), "1");
  const sysPath = await w.eval("__import__('sys').path");
  assert.ok(!sysPath.includes(task) && !sysPath.includes(""), JSON.stringify(sysPath));
  assert.ok(!sysPath.includes(path.dirname(WORKER_PATH)));
  await w.shutdown();
  const w2 = worker();
  assert.equal(await w2.eval("__import__('os').getcwd()"), os.tmpdir());
  await w2.shutdown();
});

test("a handler's process ends by itself: the idle worker keeps no event loop alive", () => {
  const script = `
    import { Worker } from ${JSON.stringify(path.join(repo, "clients/node/pythonexec/index.mjs"))};
    const w = new Worker({ python: ${JSON.stringify(PYTHON)}, workerPath: ${JSON.stringify(WORKER_PATH)} });
    await w.ready();
    console.log(JSON.stringify(await w.eval("6 * 7")));
  `;
  const started = Date.now();
  const out = spawnSync(process.execPath, ["--input-type=module", "-e", script], { timeout: 30000, encoding: "utf8" });
  assert.equal(out.status, 0, out.stderr);
  assert.equal(out.stdout.trim(), "42");
  assert.ok(Date.now() - started < 15000);
});

test("a pending request keeps the loop alive until its answer", () => {
  const script = `
    import { Worker } from ${JSON.stringify(path.join(repo, "clients/node/pythonexec/index.mjs"))};
    const w = new Worker({ python: ${JSON.stringify(PYTHON)}, workerPath: ${JSON.stringify(WORKER_PATH)}, requestTimeoutMs: Infinity });
    w.exec("import time\\ntime.sleep(1)\\nresult = 'waited'").then((v) => console.log(v));
  `;
  const out = spawnSync(process.execPath, ["--input-type=module", "-e", script], { timeout: 30000, encoding: "utf8" });
  assert.equal(out.stdout.trim(), "waited", out.stderr);
});

test("shutdown is graceful and final", async () => {
  const w = worker();
  await w.ready();
  const pid = w.pid;
  await w.shutdown();
  assert.throws(() => process.kill(pid, 0));
  await assert.rejects(w.ping(), (e) => e instanceof WorkerError && e.code === "SHUT_DOWN");
  void execFileSync;
});

test("a crash between requests is invisible to the next one", async () => {
  const w = worker();
  await w.ready();
  const pid = w.pid;
  process.kill(pid, "SIGKILL");
  for (let i = 0; i < 100 && w.pid === pid; i++) await sleep(20);
  assert.equal(await w.ping(), null);
  assert.equal(w.generation, 2);
  await w.shutdown();
});

// Which interpreter, from the layer: the same rules as pythonexec-rs's src/layer.rs.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

import { layerPython, locatePython, locateWorker, parseLine, runPython, verifyPythonEnvironment } from "../index.mjs";
import { PYTHON, repo } from "../fixtures/helpers.mjs";

const tmp = () => mkdtempSync(path.join(os.tmpdir(), "pythonexec-layer-"));
const touch = (file) => {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, "");
};

test("explicit wins, then PYTHONEXEC_PYTHON, then Lambda, then python3", () => {
  const env = { PYTHONEXEC_PYTHON: "/y/python", AWS_LAMBDA_FUNCTION_NAME: "f" };
  assert.equal(locatePython({ python: "/x/python", env }).choice, "explicit");
  assert.deepEqual(locatePython({ env }).program, "/y/python");
  const root = tmp();
  const lambda = locatePython({ env: { LAMBDA_TASK_ROOT: "/var/task" }, layerRoot: root });
  assert.equal(lambda.choice, "lambda");
  assert.match(lambda.reason, /LAMBDA_TASK_ROOT/);
  assert.equal(locatePython({ env: { PYTHONEXEC_PYTHON: "" } }).program, "python3");
});

test("the manifest's python_version names the interpreter and PYTHONPATH", () => {
  const root = tmp();
  touch(path.join(root, "python/bin/python3.12"));
  touch(path.join(root, "python/bin/python3"));
  writeFileSync(path.join(root, "python/layer-manifest.json"), JSON.stringify({ python_version: "3.12.4" }));
  const found = layerPython(root);
  assert.equal(found.program, path.join(root, "python/bin/python3.12"));
  assert.equal(found.env.PYTHONHOME, path.join(root, "python"));
  assert.equal(found.env.PYTHONPATH, path.join(root, "python/lib/python3.12"));
  assert.match(found.foundBy, /python_version 3.12.4/);
});

test("without a manifest the highest lib/python3.* decides; else bin/python3", () => {
  const root = tmp();
  for (const minor of ["python3.9", "python3.13", "python3.x"]) mkdirSync(path.join(root, "python/lib", minor), { recursive: true });
  touch(path.join(root, "python/bin/python3.13"));
  assert.equal(layerPython(root).program, path.join(root, "python/bin/python3.13"));
  const empty = tmp();
  const found = layerPython(empty);
  assert.equal(found.program, path.join(empty, "python/bin/python3"));
  assert.equal(found.env.PYTHONPATH, undefined);
});

test("a built layer tree names its own interpreter", async (t) => {
  const tree = path.join(repo, "target/test-fixtures/layer-x86_64-default/tree");
  const found = layerPython(tree);
  if (!found.foundBy.startsWith("python_version")) {
    t.skip(`no layer tree at ${tree}`);
    return;
  }
  const out = await runPython("import sys, json\nprint(json.dumps(sys.version))", { python: found.program, env: found.env });
  assert.ok(out.json.startsWith(found.foundBy.split(" ")[1]));
});

test("the worker script: explicit, PYTHONEXEC_WORKER, else the layer's", () => {
  assert.equal(locateWorker({ workerPath: "/w.py" }), "/w.py");
  assert.equal(locateWorker({ env: { PYTHONEXEC_WORKER: "/e.py" } }), "/e.py");
  assert.equal(locateWorker({ env: {}, layerRoot: "/lr" }), "/lr/python/lib/pythonexec/worker.py");
});

test("parseLine keeps the id and the raw text of what it cannot decode", () => {
  assert.deepEqual(parseLine(Buffer.from('{"id":3,"type":"result","value":1}')).reply.value, 1);
  assert.equal(parseLine(Buffer.from(" \n")).blank, true);
  const bad = parseLine(Buffer.from('{"id":12,"type":"result","value":NaN}')).bad;
  assert.equal(bad.id, 12);
  assert.match(bad.line, /NaN/);
  assert.equal(parseLine(Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x37, 0x2c, 0xff])).bad.id, 7);
  assert.equal(parseLine(Buffer.from("garbage")).bad.id, null);
});

test("runPython: output, last JSON line, input, timeout, exit status, bad JSON", async () => {
  const out = await runPython("import sys\nprint('hello')\nprint('to stderr', file=sys.stderr)\nprint('{\"answer\": 42}')", { python: PYTHON });
  assert.ok(out.stdout.startsWith("hello\n"));
  assert.match(out.stderr, /to stderr/);
  assert.deepEqual(out.json, { answer: 42 });
  const doubled = await runPython("import json, sys\nprint(json.dumps(json.load(sys.stdin)['n'] * 2))", { python: PYTHON, input: { n: 21 } });
  assert.equal(doubled.json, 42);
  await assert.rejects(runPython("import time\ntime.sleep(60)", { python: PYTHON, timeoutMs: 300 }), (e) => e.code === "TIMEOUT");
  await assert.rejects(runPython("raise SystemExit('boom: bad config')", { python: PYTHON }), (e) => {
    assert.equal(e.code, "NON_ZERO_EXIT");
    assert.match(e.details.stderrTail, /boom: bad config/);
    return true;
  });
  await assert.rejects(runPython("print('not json')", { python: PYTHON }), (e) => e.code === "BAD_JSON");
  assert.equal((await runPython("print('free text')", { python: PYTHON, expectJson: false })).json, null);
  await assert.rejects(runPython("print(1)", { python: "/nonexistent/python3" }), (e) => e.code === "INTERPRETER_NOT_FOUND");
});

test("verifyPythonEnvironment reports the interpreter and packages", async () => {
  const report = await verifyPythonEnvironment({ python: PYTHON });
  assert.match(report.version, /^3\./);
  assert.equal(report.reason, "given explicitly");
  assert.ok("litellm" in report.packages);
  if (report.packages.litellm === null) assert.ok(report.importLitellmError);
});

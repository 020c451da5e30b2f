// The package as a Lambda function meets it: the built layer read-only at /opt (Python and
// nodejs/node_modules/pythonexec from the layer, nothing else installed), the function's code
// read-only at /var/task, a fresh /tmp, no network but loopback, inside bubblewrap. The handler
// imports "pythonexec" by its bare name, resolved from /opt/nodejs/node_modules as Lambda's
// Node.js runtimes do, and answers plain, streamed and async completions from the loopback
// server (started inside the sandbox) with the server's exact text.
//
// Needs PYTHONEXEC_TEST_LAYER (a built layer's tree/, as ci/test.sh exports) and bwrap.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";

import { repo } from "../fixtures/helpers.mjs";

const LAYER = process.env.PYTHONEXEC_TEST_LAYER;
const bwrap = ["/usr/bin/bwrap", "/bin/bwrap"].find((p) => existsSync(p));
const skip = !LAYER
  ? "set PYTHONEXEC_TEST_LAYER to a built layer's tree/"
  : !bwrap
    ? "bubblewrap is not installed"
    : !existsSync(path.join(LAYER, "nodejs/node_modules/pythonexec/package.json"))
      ? `${LAYER} carries no Node.js package ([clients] node = false?)`
      : false;

// What Lambda's Node.js runtime does for ES modules: a bare specifier the function's own
// folders do not resolve is looked up in /opt/nodejs/node_modules.
const LAMBDA_RESOLVE = `
import { register } from "node:module";
register("data:text/javascript," + encodeURIComponent(\`
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code !== "ERR_MODULE_NOT_FOUND" || /^[./]|:/.test(specifier)) throw err;
    return next(specifier, { ...context, parentURL: "file:///opt/nodejs/index.mjs" });
  }
}\`));
`;

const HANDLER = `
import { Worker } from "pythonexec";
import { REPLY, startMock } from "./mock-openai.mjs";

const mock = await startMock();
const worker = new Worker({ preload: ["litellm"] });
const info = await worker.ready();
const params = {
  model: "openai/gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello" }],
  api_base: mock.baseUrl,
  api_key: "x",
};
const plain = await worker.completion(params);
let streamed = "";
for await (const chunk of worker.completionStream(params)) {
  streamed += chunk?.choices?.[0]?.delta?.content ?? "";
}
const asyncText = await worker.exec(
  "import asyncio, litellm\\n" +
    "reply = asyncio.run_coroutine_threadsafe(litellm.acompletion(**input), loop).result()\\n" +
    "result = reply.choices[0].message.content",
  params,
);
console.log(JSON.stringify({
  executable: info.executable,
  cwd: process.cwd(),
  plain: plain.choices[0].message.content,
  streamed,
  async: asyncText,
  reply: REPLY,
  requests: mock.bodies.length,
}));
await worker.shutdown();
await mock.close();
`;

test("a Node.js handler imports pythonexec from the layer and answers in the Lambda-like sandbox", { skip, timeout: 300000 }, () => {
  const task = mkdtempSync(path.join(os.tmpdir(), "pythonexec-sandbox-task-"));
  writeFileSync(path.join(task, "handler.mjs"), HANDLER);
  writeFileSync(path.join(task, "lambda-resolve.mjs"), LAMBDA_RESOLVE);
  copyFileSync(path.join(repo, "clients/node/pythonexec/fixtures/mock-openai.mjs"), path.join(task, "mock-openai.mjs"));
  const args = [
    "--die-with-parent", "--unshare-all", "--share-net=false", "--new-session",
    "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
    "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
    ...(existsSync("/lib64") ? ["--symlink", "usr/lib64", "/lib64"] : []),
    "--ro-bind", LAYER, "/opt", "--ro-bind", task, "/var/task",
    "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
    "--chdir", "/tmp", "--clearenv",
    "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
    "--setenv", "AWS_LAMBDA_FUNCTION_NAME", "chat",
    "--setenv", "LAMBDA_TASK_ROOT", "/var/task",
    "--setenv", "HOME", "/tmp",
    process.execPath, "--import", "/var/task/lambda-resolve.mjs", "/var/task/handler.mjs",
  ].filter((a) => a !== "--share-net=false");
  const run = spawnSync(bwrap, args, { encoding: "utf8", timeout: 280000 });
  assert.equal(run.status, 0, `${run.stderr}\n${run.stdout}`);
  const out = JSON.parse(run.stdout.trim().split("\n").at(-1));
  assert.match(out.executable, /^\/opt\/python\//, JSON.stringify(out));
  assert.equal(out.plain, out.reply);
  assert.equal(out.streamed, out.reply);
  assert.equal(out.async, out.reply);
  assert.ok(out.requests >= 3, JSON.stringify(out));
});

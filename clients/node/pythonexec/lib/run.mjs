// One snippet, one fresh interpreter; and the environment check.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";

import { WorkerError, tail } from "./errors.mjs";
import { locatePython, notFoundHint } from "./locate.mjs";

/** The last non-empty line of `stdout`, parsed as JSON; throws BAD_JSON. */
export function lastJsonLine(stdout) {
  const lines = stdout.split("\n").map((l) => l.trim()).filter(Boolean);
  const line = lines.at(-1) ?? "";
  try {
    if (!line) throw new Error("no output");
    return JSON.parse(line);
  } catch (err) {
    throw new WorkerError("BAD_JSON", `python printed output that is not the expected JSON: ${JSON.stringify(tail(line, 200))}`, {
      line: tail(line, 200),
      cause: err,
    });
  }
}

/**
 * Run `code` with `python -u -c` in a fresh interpreter (cwd /tmp). Resolves to
 * `{stdout, stderr, code, durationMs, json}`; `json` is the last non-empty stdout line parsed
 * (BAD_JSON when it is not JSON, unless `expectJson: false`).
 * @param {string} code
 * @param {{input?: any, stdin?: string|Buffer, timeoutMs?: number, python?: string,
 *          env?: object, expectJson?: boolean, args?: string[]}} [options]
 *   `input` is written to stdin as JSON (`json.load(sys.stdin)` reads it).
 */
export function runPython(code, options = {}) {
  const interpreter = locatePython({ ...options, env: { ...process.env, ...(options.env ?? {}) } });
  const args = options.args ?? ["-u", "-c", code];
  const timeoutMs = options.timeoutMs ?? 60000;
  const expectJson = options.expectJson ?? true;
  return new Promise((resolve, reject) => {
    if (interpreter.program.includes("/") && !existsSync(interpreter.program)) {
      reject(
        new WorkerError(
          "INTERPRETER_NOT_FOUND",
          `python interpreter not found: ${interpreter.program} (${interpreter.reason})${notFoundHint(interpreter)}`,
        ),
      );
      return;
    }
    const started = performance.now();
    const child = spawn(interpreter.program, args, {
      cwd: options.cwd ?? os.tmpdir(),
      env: { ...process.env, ...interpreter.env, ...(options.env ?? {}) },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out = [];
    const err = [];
    child.stdout.on("data", (c) => out.push(c));
    child.stderr.on("data", (c) => err.push(c));
    child.stdin.on("error", () => {}); // a snippet that never reads stdin closes it early
    const stdin =
      options.input !== undefined ? JSON.stringify(options.input) : options.stdin !== undefined ? options.stdin : null;
    if (stdin !== null) child.stdin.end(stdin);
    else child.stdin.end();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(
        new WorkerError(
          e.code === "ENOENT" ? "INTERPRETER_NOT_FOUND" : "SPAWN",
          `could not start python: ${interpreter.program} (${interpreter.reason}): ${e.message}${e.code === "ENOENT" ? notFoundHint(interpreter) : ""}`,
          { cause: e },
        ),
      );
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString("utf8");
      const stderr = Buffer.concat(err).toString("utf8");
      const durationMs = performance.now() - started;
      if (timedOut) {
        reject(
          new WorkerError("TIMEOUT", `python did not finish within ${timeoutMs} ms and was killed (pid ${child.pid}); stderr ends with: ${tail(stderr)}`, {
            pid: child.pid,
            timeoutMs,
            stderrTail: tail(stderr),
          }),
        );
        return;
      }
      if (code !== 0) {
        const status = signal ? `signal ${signal}` : `exit status: ${code}`;
        reject(
          new WorkerError("NON_ZERO_EXIT", `python exited with ${status}; stderr ends with: ${tail(stderr)}`, {
            code,
            signal,
            stdout,
            stderrTail: tail(stderr),
          }),
        );
        return;
      }
      let json = null;
      try {
        json = lastJsonLine(stdout);
      } catch (e) {
        if (expectJson) {
          reject(e);
          return;
        }
      }
      resolve({ stdout, stderr, code, durationMs, json });
    });
  });
}

const HEALTH_PY = String.raw`
import json, os, platform, sys, time
started = time.time()
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
from importlib import metadata
packages = {}
for name in ("litellm", "openai", "httpx", "pydantic", "tiktoken", "tokenizers", "aiohttp"):
    try:
        packages[name] = metadata.version(name)
    except Exception:
        packages[name] = None
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
t = time.time()
try:
    import litellm
    imported, error = time.time() - t, None
except BaseException as exc:
    imported, error = None, repr(exc)
print(json.dumps({
    "executable": sys.executable, "version": sys.version.split()[0],
    "implementation": platform.python_implementation(), "machine": platform.machine(),
    "platform": platform.platform(), "prefix": sys.prefix, "sys_path": sys.path,
    "packages": packages, "import_litellm_seconds": imported, "import_litellm_error": error,
    "script_seconds": time.time() - started,
}))
`;

/**
 * Which interpreter runs, why, its version and machine, versions of litellm and friends
 * (null when absent) and how long `import litellm` takes.
 */
export async function verifyPythonEnvironment(options = {}) {
  const interpreter = locatePython({ ...options, env: { ...process.env, ...(options.env ?? {}) } });
  const out = await runPython(HEALTH_PY, { timeoutMs: 180000, ...options });
  const r = out.json;
  return {
    interpreter: interpreter.program,
    choice: interpreter.choice,
    reason: interpreter.reason,
    executable: r.executable,
    version: r.version,
    implementation: r.implementation,
    machine: r.machine,
    platform: r.platform,
    prefix: r.prefix,
    sysPath: r.sys_path,
    packages: r.packages,
    importLitellmMs: r.import_litellm_seconds === null ? null : r.import_litellm_seconds * 1000,
    importLitellmError: r.import_litellm_error,
    totalMs: out.durationMs,
  };
}

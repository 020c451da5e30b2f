// A persistent Python process answering many concurrent requests: the Node.js client of
// protocol v1, speaking to the same worker.py as pythonexec-rs (see its README).

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";

import { PythonError, WorkerError, tail } from "./errors.mjs";
import { locatePython, locateWorker, notFoundHint } from "./locate.mjs";

export const PROTOCOL_VERSION = 1;
const STDERR_LINES = 40;
const STDERR_LINE_MAX = 16 * 1024;
const BAD_LINE_QUOTE = 500;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|[^[])/g;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Split a byte stream into lines; `onLine(buffer)` gets each without its newline. */
function lineSplitter(onLine, maxLine = Infinity) {
  let parts = [];
  let size = 0;
  return {
    push(chunk) {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(10, start);
        if (nl === -1) break;
        const piece = chunk.subarray(start, nl);
        if (parts.length) {
          parts.push(piece);
          onLine(Buffer.concat(parts).subarray(0, maxLine));
          parts = [];
          size = 0;
        } else {
          onLine(piece.subarray(0, maxLine));
        }
        start = nl + 1;
      }
      if (start < chunk.length && size < maxLine) {
        const rest = chunk.subarray(start);
        parts.push(rest);
        size += rest.length;
      }
    },
    end() {
      if (parts.length) onLine(Buffer.concat(parts).subarray(0, maxLine));
      parts = [];
    },
  };
}

/**
 * Decode one protocol line: `{ reply }`, `{ blank: true }` or `{ bad: { id, line, reason } }`.
 * Never throws: what cannot be decoded names its request when its start says `{"id":N,`.
 */
export function parseLine(bytes) {
  let text;
  let reason;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    reason = "not valid UTF-8";
  }
  if (text !== undefined) {
    if (!text.trim()) return { blank: true };
    try {
      const reply = JSON.parse(text);
      if (
        reply !== null &&
        typeof reply === "object" &&
        typeof reply.type === "string" &&
        (reply.id === null || reply.id === undefined || Number.isSafeInteger(reply.id))
      ) {
        return { reply };
      }
      reason = "not a reply object (needs a string `type` and an integer or null `id`)";
    } catch (err) {
      reason = err.message;
    }
  }
  const lossy = Buffer.from(bytes).toString("utf8").trim();
  const m = /^\{\s*"id"\s*:\s*(\d+)\s*[,}]/.exec(lossy);
  return { bad: { id: m ? Number(m[1]) : null, line: tail(lossy, BAD_LINE_QUOTE), reason } };
}

/** One running Python process. */
class Process {
  constructor(owner, generation) {
    this.owner = owner;
    this.generation = generation;
    this.pending = new Map();
    this.stderrTail = [];
    this.dead = false;
    this.death = null;
    this.outQueue = [];
    this.flushScheduled = false;
    this.refs = 0;
    this.info = null;
    const o = owner.options;
    const interp = owner.interpreter;
    const env = {
      ...process.env,
      ...interp.env,
      PYTHONEXEC_PRELOAD: (o.preload ?? []).join(","),
      PYTHONEXEC_THREADS: String(o.threads ?? 16),
      PYTHONEXEC_DRAIN_SECONDS: String((o.shutdownGraceMs ?? 5000) / 1000),
      ...(o.env ?? {}),
    };
    // cwd /tmp: in Lambda the cwd is the function's /var/task, which must never be on
    // sys.path; worker.py also drops its own folder (a script's sys.path[0]).
    this.child = spawn(interp.program, ["-u", owner.workerPath], {
      cwd: o.cwd ?? os.tmpdir(),
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.pid = this.child.pid ?? 0;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // reported to whoever awaits it, never "unhandled"
    this.startupTimer = setTimeout(() => {
      this.notReady(`not ready within ${o.startupTimeoutMs ?? 120000} ms; killed`);
      this.child.kill("SIGKILL");
    }, o.startupTimeoutMs ?? 120000);
    this.startupTimer.unref();
    // Nothing of this process keeps Node's event loop alive by itself (a Lambda handler
    // must be able to end); requests in flight take a reference (see hold/release).
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) s.unref?.();
    this.hold(); // until ready
    this.ready.then(
      () => this.release(),
      () => this.release(),
    );

    this.child.stdin.on("error", () => {}); // EPIPE after a crash: the exit handler reports it
    const replies = lineSplitter((line) => this.onLine(line));
    this.child.stdout.on("data", (chunk) => replies.push(chunk));
    this.stdoutEnded = new Promise((resolve) => this.child.stdout.on("close", resolve));
    this.stdoutEnded.then(() => replies.end());
    const logs = lineSplitter((line) => this.onStderr(line), STDERR_LINE_MAX);
    this.child.stderr.on("data", (chunk) => logs.push(chunk));
    this.stderrEnded = new Promise((resolve) => this.child.stderr.on("close", resolve));
    this.stderrEnded.then(() => logs.end());
    this.child.on("error", (err) => this.onSpawnError(err));
    this.child.on("exit", (code, signal) => this.onExit(code, signal));
  }

  hold() {
    if (this.refs++ === 0 && !this.dead) {
      this.child.ref();
      this.child.stdout.ref?.();
    }
  }

  release() {
    if (--this.refs === 0 && !this.dead) {
      this.child.unref();
      this.child.stdout.unref?.();
    }
  }

  describe() {
    return `${this.owner.interpreter.program} (${this.owner.interpreter.reason})`;
  }

  stderrText() {
    return tail(this.stderrTail.join("\n"));
  }

  notReady(reason) {
    clearTimeout(this.startupTimer);
    this.rejectReady(
      new WorkerError(
        "WORKER_START",
        `python worker (pid ${this.pid}) did not become ready: ${reason}; interpreter: ${this.describe()}`,
        { pid: this.pid, reason, stderrTail: this.stderrText() },
      ),
    );
  }

  onSpawnError(err) {
    const code =
      err.code === "ENOENT" ? "INTERPRETER_NOT_FOUND" : err.code === "EACCES" ? "SPAWN" : "SPAWN";
    const hint = code === "INTERPRETER_NOT_FOUND" ? notFoundHint(this.owner.interpreter) : "";
    const error = new WorkerError(code, `could not start python: ${this.describe()}: ${err.message}${hint}`, {
      cause: err,
    });
    clearTimeout(this.startupTimer);
    this.rejectReady(error);
    this.finish(error);
  }

  onStderr(bytes) {
    // Lossy UTF-8, and no terminal colours (LiteLLM's banner has them; CloudWatch shows them as text).
    const line = Buffer.from(bytes).toString("utf8").replace(/\r$/, "").replace(ANSI, "");
    if (this.stderrTail.length === STDERR_LINES) this.stderrTail.shift();
    this.stderrTail.push(line);
    this.owner.log(line, this.pid);
  }

  onLine(bytes) {
    const parsed = parseLine(bytes);
    if (parsed.blank) return;
    if (parsed.bad) {
      const { id, line, reason } = parsed.bad;
      const entry = id === null ? undefined : this.pending.get(id);
      if (entry) {
        this.settle(
          id,
          new WorkerError(
            "BAD_REPLY",
            `python worker answered request ${id} with a line that cannot be decoded (${reason}): ${line}`,
            { id, line, reason },
          ),
        );
      } else {
        this.owner.log(`pythonexec: python worker wrote a line that is not a reply (${reason}): ${line}`, this.pid);
      }
      return;
    }
    const r = parsed.reply;
    switch (r.type) {
      case "ready":
        clearTimeout(this.startupTimer);
        if (r.protocol === PROTOCOL_VERSION) {
          this.info = r;
          this.resolveReady(r);
        } else {
          this.rejectReady(
            new WorkerError(
              "PROTOCOL_VERSION",
              `python worker speaks protocol ${r.protocol}, this library speaks ${PROTOCOL_VERSION}`,
              { expected: PROTOCOL_VERSION, found: r.protocol },
            ),
          );
          this.child.kill("SIGKILL");
        }
        return;
      case "protocol_error":
        this.owner.log(`pythonexec: python worker: ${r.message}`, this.pid);
        return;
      case "chunk": {
        const entry = this.pending.get(r.id);
        if (entry?.onChunk) entry.onChunk(r.value);
        return;
      }
      case "result":
        this.settle(r.id, null, r.value);
        return;
      case "error":
        this.settle(
          r.id,
          new PythonError(r.error ?? { type: "Unknown", message: "error reply without details" }),
        );
        return;
      case "cancelled":
        this.settle(r.id, new WorkerError("CANCELLED", `request ${r.id} was cancelled`, { id: r.id }));
        return;
      default:
        this.owner.log(`pythonexec: python worker sent an unknown reply type ${JSON.stringify(r.type)}`, this.pid);
    }
  }

  settle(id, error, value) {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    entry.done(error, value);
  }

  onExit(code, signal) {
    this.exited = true; // new requests go to a new process while this one is wound up
    this.exitStatus = signal ? `signal ${signal}` : `exit status: ${code}`;
    // Replies already written are still in the pipe; the last words (a traceback) are in
    // stderr, which a grandchild could keep open: wait for it within reason.
    const grace = new Promise((resolve) => setTimeout(resolve, 1000).unref());
    this.stdoutEnded
      .then(() => Promise.race([this.stderrEnded, grace]))
      .then(() => {
        const stderrTail = this.stderrText();
        const error = new WorkerError(
          "WORKER_DIED",
          `python worker (pid ${this.pid}) died (${this.exitStatus}); stderr ends with: ${stderrTail}`,
          { pid: this.pid, status: this.exitStatus, code, signal, stderrTail },
        );
        if (!this.info) {
          this.notReady(`it exited (${this.exitStatus}) before it was ready; stderr ends with: ${stderrTail}`);
        }
        this.finish(error);
      });
  }

  finish(error) {
    if (this.dead) return;
    this.dead = true;
    this.death = error;
    this.owner.onDeath(this);
    const pending = [...this.pending.entries()];
    this.pending.clear();
    for (const [, entry] of pending) entry.done(error);
  }

  send(message) {
    this.outQueue.push(JSON.stringify(message) + "\n");
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // One write per tick: 1,000 requests made together go out as one chunk.
      queueMicrotask(() => {
        this.flushScheduled = false;
        const data = this.outQueue.join("");
        this.outQueue = [];
        if (!this.dead && this.child.stdin.writable) this.child.stdin.write(data);
      });
    }
  }
}

/**
 * The persistent worker. Started by the constructor without waiting; `await ready()` waits
 * for it (do that at INIT with top-level await). When the process dies, requests in flight
 * fail with WORKER_DIED at once and the next request starts a new process.
 */
export class Worker {
  /**
   * @param {object} [options] python, workerPath, layerRoot, preload, threads, env, cwd,
   *   startupTimeoutMs (120000), requestTimeoutMs (300000), shutdownGraceMs (5000),
   *   stderr: function(line, pid) for Python's stderr lines, or false to drop them.
   */
  constructor(options = {}) {
    this.options = options;
    // `env` is the process's extra environment; it also counts for the choice.
    const env = { ...process.env, ...(options.env ?? {}) };
    this.interpreter = locatePython({ ...options, env });
    this.workerPath = locateWorker({ ...options, env });
    this.nextId = 1;
    this.generation = 0;
    this.current = null;
    this.shutDown = false;
    const sink = options.stderr;
    this.log =
      sink === false ? () => {} : typeof sink === "function" ? sink : (line, pid) => console.log(`python[${pid}]: ${line}`);
    try {
      this.process();
    } catch {
      // reported by ready() and every request
    }
  }

  /** The pid of the live process, or null. */
  get pid() {
    return this.current && !this.current.dead && !this.current.exited ? this.current.pid : null;
  }

  /** The live process, or a new one. Throws INTERPRETER_NOT_FOUND / SHUT_DOWN. */
  process() {
    if (this.shutDown) throw new WorkerError("SHUT_DOWN", "python worker has been shut down");
    if (this.current && !this.current.dead && !this.current.exited) return this.current;
    const { program } = this.interpreter;
    if (program.includes("/") && !existsSync(program)) {
      throw new WorkerError(
        "INTERPRETER_NOT_FOUND",
        `python interpreter not found: ${program} (${this.interpreter.reason})${notFoundHint(this.interpreter)}`,
        { program },
      );
    }
    if (!existsSync(this.workerPath)) {
      throw new WorkerError(
        "SPAWN",
        `worker script not found: ${this.workerPath} (pass workerPath or set PYTHONEXEC_WORKER; the layer ships it at /opt/python/lib/pythonexec/worker.py)`,
        { workerPath: this.workerPath },
      );
    }
    this.generation += 1;
    this.current = new Process(this, this.generation);
    return this.current;
  }

  onDeath(proc) {
    if (this.current === proc) this.current = null;
  }

  /** Wait until the process (started now if none runs) is ready; resolves to its `ready` line. */
  async ready() {
    return this.process().ready;
  }

  /**
   * A worker whose preload is imported before it is returned: for Lambda's INIT, which runs
   * with an unthrottled CPU for up to 10 s while invocations get the memory's share of a vCPU
   * (0.29 at 512 MB). `await Worker.spawnReady({ preload: ["litellm"], deadlineMs: 9000 })` at
   * the top of a handler module. Past `deadlineMs` (default 9000), or when the process could
   * not start, the worker is returned anyway, as the constructor returns it (it keeps
   * starting; the first request waits, or retries the start), and one line on stderr says
   * why.
   * @param {object} [options] the constructor's options, and `deadlineMs`
   */
  static async spawnReady(options = {}) {
    const { deadlineMs = 9000, ...rest } = options;
    const worker = new Worker(rest);
    const r = await worker.readyWithin(deadlineMs);
    if (!r.ready) console.error(`pythonexec: ${r.reason}`);
    return worker;
  }

  /**
   * Waits at most `deadlineMs` for the process to be ready, never throws: `{ ready: true,
   * info, afterMs }`, or `{ ready: false, reason, error? }`. The process is not killed when
   * the deadline passes.
   */
  async readyWithin(deadlineMs) {
    const started = performance.now();
    const what = this.options.preload?.length ? `importing ${this.options.preload.join(", ")}` : "its start";
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), deadlineMs);
    });
    try {
      const info = await Promise.race([this.ready(), late]);
      if (info) return { ready: true, info, afterMs: performance.now() - started };
      return {
        ready: false,
        reason: `the python worker was not ready within the ${deadlineMs} ms deadline (${what}); not waiting any longer: it keeps starting and the first request waits for it`,
      };
    } catch (error) {
      return { ready: false, reason: `the python worker did not start: ${error.message}`, error };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether the live process announced it is ready (its preload imported), now. */
  get isReady() {
    return this.readyInfo !== null;
  }

  /** The `ready` line of the live process, or null while it is starting (or dead). */
  get readyInfo() {
    const p = this.current;
    return (p && !p.dead && !p.exited && p.info) || null;
  }

  /**
   * One request; resolves to its result.
   * @param {object} op `{op: "eval", expr, input}` and the like (see the protocol).
   * @param {{timeoutMs?: number, signal?: AbortSignal}} [options]
   */
  async request(op, options = {}) {
    let result;
    for await (const item of this.#run(op, options, false)) result = item;
    return result;
  }

  /** A request whose reply streams: `for await (const chunk of worker.stream(op))`. */
  stream(op, options = {}) {
    return this.#run(op, options, true);
  }

  // One generator serves both: a plain request yields its result once; a stream yields its
  // chunks. Leaving the loop early (break, throw) cancels the request in Python.
  async *#run(op, options, streaming) {
    const { signal } = options;
    signal?.throwIfAborted();
    const proc = this.process();
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs ?? 300000;
    const id = this.nextId++;
    const queue = [];
    let wake = null;
    let outcome = null; // {error} or {value}
    const push = (item) => {
      queue.push(item);
      wake?.();
    };
    const entry = {
      onChunk: streaming ? (value) => push({ chunk: value }) : null,
      done: (error, value) => {
        outcome = error ? { error } : { value };
        wake?.();
      },
    };
    const cancel = (error) => {
      if (outcome) return;
      if (proc.pending.delete(id)) proc.send({ op: "cancel", target: id });
      entry.done(error);
    };
    const timer =
      Number.isFinite(timeoutMs) && timeoutMs > 0
        ? setTimeout(
            () =>
              cancel(
                new WorkerError(
                  "TIMEOUT",
                  `request ${id} (${op.op}) did not finish within ${timeoutMs} ms; it was cancelled`,
                  { id, op: op.op, timeoutMs },
                ),
              ),
            timeoutMs,
          )
        : null;
    const onAbort = () => cancel(signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    proc.hold();
    try {
      await Promise.race([
        proc.ready,
        new Promise((resolve) => {
          wake = resolve;
        }),
      ]);
      if (!outcome) {
        proc.pending.set(id, entry);
        if (proc.dead) {
          proc.pending.delete(id);
          entry.done(proc.death);
        } else {
          proc.send({ id, ...op });
        }
      }
      for (;;) {
        while (queue.length) yield queue.shift().chunk;
        if (outcome) break;
        await new Promise((resolve) => {
          wake = resolve;
        });
      }
      while (queue.length) yield queue.shift().chunk;
      if (outcome.error) throw outcome.error;
      if (!streaming) yield outcome.value;
    } finally {
      wake = null;
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (!outcome) cancel(new WorkerError("CANCELLED", `request ${id} was cancelled`, { id }));
      proc.release();
    }
  }

  ping(options) {
    return this.request({ op: "ping" }, options);
  }

  /** Run statements with `input` bound; resolves to their variable `result`. */
  exec(code, input = null, options) {
    return this.request({ op: "exec", code, input }, options);
  }

  /** Evaluate an expression with `input` bound (awaited if it is a coroutine). */
  eval(expr, input = null, options) {
    return this.request({ op: "eval", expr, input }, options);
  }

  /** Call a function by dotted name (`"json.dumps"`) with JSON arguments. */
  call(fn, args = [], kwargs = {}, options) {
    return this.request({ op: "call", function: fn, args, kwargs }, options);
  }

  /** `await litellm.acompletion(**params)`; resolves to LiteLLM's response as JSON. */
  completion(params, options) {
    return this.request({ op: "completion", params: { ...params, stream: false } }, options);
  }

  /** Streamed completion: `for await (const chunk of worker.completionStream(params))`. */
  completionStream(params, options) {
    return this.stream({ op: "completion", params: { ...params, stream: true } }, options);
  }

  /**
   * Ask the process to stop; requests in flight get `shutdownGraceMs` to finish, then it is
   * killed. Later requests fail with SHUT_DOWN.
   */
  async shutdown() {
    this.shutDown = true;
    const proc = this.current;
    if (!proc || proc.dead) return;
    const exited = new Promise((resolve) => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) resolve();
      else proc.child.once("exit", resolve);
    });
    proc.hold();
    proc.send({ op: "shutdown" });
    const grace = this.options.shutdownGraceMs ?? 5000;
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve("late"), grace + 1000);
    });
    if ((await Promise.race([exited, late])) === "late") {
      proc.child.kill("SIGKILL");
      await exited;
    }
    clearTimeout(timer);
    proc.release();
  }
}

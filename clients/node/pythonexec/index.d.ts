// Type declarations of the pythonexec Node.js package (protocol v1).

/** JSON as it crosses the protocol. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export declare const PROTOCOL_VERSION: 1;
/** `PYTHONEXEC_PYTHON`: the interpreter to use when no explicit path is given. */
export declare const PYTHON_ENV_VAR: "PYTHONEXEC_PYTHON";
/** `PYTHONEXEC_WORKER`: the worker script to use when no `workerPath` is given. */
export declare const WORKER_ENV_VAR: "PYTHONEXEC_WORKER";
/** Where Lambda unpacks layers: `/opt`. */
export declare const LAYER_ROOT: string;
/** `python/layer-manifest.json`, relative to the layer root. */
export declare const LAYER_MANIFEST: string;
/** `python/lib/pythonexec/worker.py`, relative to the layer root. */
export declare const WORKER_PY_IN_LAYER: string;

/** A Python exception raised by the code a request ran. */
export declare class PythonError extends Error {
  name: "PythonError";
  code: "PYTHON";
  /** Qualified type: `ValueError`, `litellm.exceptions.AuthenticationError`. */
  type: string;
  pythonMessage: string;
  traceback: string;
}

export type WorkerErrorCode =
  | "INTERPRETER_NOT_FOUND"
  | "SPAWN"
  | "WORKER_START"
  | "WORKER_DIED"
  | "PROTOCOL_VERSION"
  | "TIMEOUT"
  | "CANCELLED"
  | "BAD_REPLY"
  | "SHUT_DOWN"
  | "NON_ZERO_EXIT"
  | "BAD_JSON";

/** Every other failure; `details` carries pid, status, stderrTail, line... as they apply. */
export declare class WorkerError extends Error {
  name: "WorkerError";
  code: WorkerErrorCode;
  details: Record<string, unknown>;
}

export interface Interpreter {
  program: string;
  env: Record<string, string>;
  choice: "explicit" | "env_var" | "lambda" | "path";
  /** Why it was chosen: `"inside Lambda (AWS_LAMBDA_FUNCTION_NAME is set): ..."`. */
  reason: string;
}

export interface LocateOptions {
  /** An explicit interpreter; wins over everything. */
  python?: string;
  /**
   * `locatePython`: the environment to read (default `process.env`). `Worker`,
   * `runPython`: extra environment for the process, on top of `process.env`; it counts for
   * the choice too (`env: { PYTHONEXEC_PYTHON: ... }` works).
   */
  env?: Record<string, string | undefined>;
  /** Where the layer is unpacked (default `/opt`). */
  layerRoot?: string;
}

/** Explicit path, else PYTHONEXEC_PYTHON, else inside Lambda the layer's, else python3. */
export declare function locatePython(options?: LocateOptions): Interpreter;
/** The layer's interpreter, read from `<root>/python/layer-manifest.json`. */
export declare function layerPython(root?: string): {
  program: string;
  env: Record<string, string>;
  foundBy: string;
};
/** workerPath, else PYTHONEXEC_WORKER, else the layer's copy next to this package, else /opt's. */
export declare function locateWorker(
  options?: { workerPath?: string } & LocateOptions,
): string;

export interface RunOptions extends LocateOptions {
  /** Written to stdin as JSON. */
  input?: Json;
  /** Raw stdin (when `input` is not given). */
  stdin?: string | Buffer;
  /** Killed after this long (default 60,000). */
  timeoutMs?: number;
  /** Require the last non-empty stdout line to be JSON (default true). */
  expectJson?: boolean;
  cwd?: string;
}

export interface RunOutput {
  stdout: string;
  stderr: string;
  code: number;
  durationMs: number;
  /** The last non-empty stdout line parsed as JSON; null when `expectJson: false` and not JSON. */
  json: Json;
}

/** One snippet in a fresh `python -u -c` (cwd /tmp). */
export declare function runPython(code: string, options?: RunOptions): Promise<RunOutput>;
export declare function lastJsonLine(stdout: string): Json;

export interface HealthReport {
  interpreter: string;
  choice: Interpreter["choice"];
  reason: string;
  executable: string;
  version: string;
  implementation: string;
  machine: string;
  platform: string;
  prefix: string;
  sysPath: string[];
  /** Distribution name to version; null when absent. */
  packages: Record<string, string | null>;
  importLitellmMs: number | null;
  importLitellmError: string | null;
  totalMs: number;
}

export declare function verifyPythonEnvironment(options?: RunOptions): Promise<HealthReport>;

export interface WorkerOptions extends LocateOptions {
  /** The worker script (default: the layer's python/lib/pythonexec/worker.py). */
  workerPath?: string;
  /** Modules imported before the worker is ready (e.g. `["litellm"]`, at INIT). */
  preload?: string[];
  /** Threads for synchronous requests (default 16). */
  threads?: number;
  /** Working directory of the process (default the OS temp folder, `/tmp`). */
  cwd?: string;
  startupTimeoutMs?: number;
  /** Timeout of requests that do not set their own (default 300,000). */
  requestTimeoutMs?: number;
  shutdownGraceMs?: number;
  /** Where Python's stderr lines go (default console.log), or false to drop them. */
  stderr?: ((line: string, pid: number) => void) | false;
}

export interface RequestOptions {
  /** This request's timeout; bounds the whole stream of a streamed one. */
  timeoutMs?: number;
  /** Aborting cancels the request in Python; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

export type Op =
  | { op: "ping" }
  | { op: "exec"; code: string; input?: Json }
  | { op: "eval"; expr: string; input?: Json }
  | { op: "call"; function: string; args?: Json[]; kwargs?: Record<string, Json> }
  | { op: "completion"; params: Record<string, Json> };

/** The `ready` line the worker announces. */
export interface ReadyInfo {
  id: null;
  type: "ready";
  protocol: 1;
  pid: number;
  python: string;
  executable: string;
  preload_seconds: number;
}

/** A chat completion request as LiteLLM takes it (unknown keys pass through). */
export interface CompletionParams {
  model: string;
  messages: Array<{ role: string; content: Json; [key: string]: Json }>;
  [key: string]: Json | undefined;
}

/**
 * One persistent Python process, many concurrent requests. Started by the constructor;
 * restarted by the next request after a crash. Neither the process nor its pipes keep
 * Node's event loop alive when no request is in flight.
 */
export declare class Worker {
  constructor(options?: WorkerOptions);
  readonly interpreter: Interpreter;
  readonly workerPath: string;
  /** Processes started so far (1 after the constructor, +1 per restart). */
  readonly generation: number;
  /** The pid of the live process, or null. */
  readonly pid: number | null;
  ready(): Promise<ReadyInfo>;
  /**
   * A worker whose preload was imported before it is returned, for Lambda's INIT (top-level
   * `await`). Past `deadlineMs` (default 9000) or when the start failed, it is returned
   * anyway and one stderr line says why.
   */
  static spawnReady(options?: WorkerOptions & { deadlineMs?: number }): Promise<Worker>;
  /** Waits at most `deadlineMs` for `ready`; never rejects, never kills the process. */
  readyWithin(
    deadlineMs: number,
  ): Promise<
    | { ready: true; info: ReadyInfo; afterMs: number }
    | { ready: false; reason: string; error?: Error }
  >;
  /** Whether the live process announced it is ready (its preload imported), now. */
  readonly isReady: boolean;
  /** The `ready` line of the live process, or null while it is starting (or dead). */
  readonly readyInfo: ReadyInfo | null;
  request(op: Op, options?: RequestOptions): Promise<Json>;
  /** A streamed reply: `for await (const chunk of worker.stream(op))`; leaving early cancels. */
  stream(op: Op, options?: RequestOptions): AsyncGenerator<Json, void, undefined>;
  ping(options?: RequestOptions): Promise<null>;
  exec(code: string, input?: Json, options?: RequestOptions): Promise<Json>;
  eval(expr: string, input?: Json, options?: RequestOptions): Promise<Json>;
  call(
    fn: string,
    args?: Json[],
    kwargs?: Record<string, Json>,
    options?: RequestOptions,
  ): Promise<Json>;
  completion(params: CompletionParams, options?: RequestOptions): Promise<any>;
  completionStream(
    params: CompletionParams,
    options?: RequestOptions,
  ): AsyncGenerator<any, void, undefined>;
  shutdown(): Promise<void>;
}

/** Decode one protocol line (exported for tests). */
export declare function parseLine(
  bytes: Uint8Array,
):
  | { reply: Record<string, Json> }
  | { blank: true }
  | { bad: { id: number | null; line: string; reason: string } };

/** The worker the helpers below use (LiteLLM preloaded), created on first use. */
export declare function defaultWorker(options?: WorkerOptions): Worker;
export declare function completion(
  params: CompletionParams,
  options?: RequestOptions,
): Promise<any>;
export declare function completionStream(
  params: CompletionParams,
  options?: RequestOptions,
): AsyncGenerator<any, void, undefined>;

// pythonexec: run Python and LiteLLM from a Node.js AWS Lambda function with the interpreter
// of a python-litellm layer. The Node.js client of the pythonexec worker protocol v1; the
// Python side is the layer's /opt/python/lib/pythonexec/worker.py, the same file
// pythonexec-rs embeds.

import { Worker } from "./lib/worker.mjs";

export { PythonError, WorkerError } from "./lib/errors.mjs";
export {
  LAYER_MANIFEST,
  LAYER_ROOT,
  PYTHON_ENV_VAR,
  WORKER_ENV_VAR,
  WORKER_PY_IN_LAYER,
  layerPython,
  locatePython,
  locateWorker,
} from "./lib/locate.mjs";
export { lastJsonLine, runPython, verifyPythonEnvironment } from "./lib/run.mjs";
export { PROTOCOL_VERSION, Worker, parseLine } from "./lib/worker.mjs";

let shared = null;

/**
 * The worker the module-level helpers use, created on first use with LiteLLM preloaded
 * (`options` apply only then).
 */
export function defaultWorker(options = {}) {
  shared ??= new Worker({ preload: ["litellm"], ...options });
  return shared;
}

/** `litellm.acompletion(**params)` on the default worker. */
export function completion(params, options) {
  return defaultWorker().completion(params, options);
}

/** Streamed completion on the default worker: `for await (const chunk of completionStream(p))`. */
export function completionStream(params, options) {
  return defaultWorker().completionStream(params, options);
}

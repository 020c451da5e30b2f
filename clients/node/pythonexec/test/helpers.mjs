// Shared by the tests: the python to run, the worker script, stand-in interpreters.

import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Worker } from "../index.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "../../../..");
/** The one worker.py, as pythonexec-rs embeds it. */
export const WORKER_PATH = path.join(repo, "pythonexec-rs/src/worker.py");
export const BAD_WORKER = path.join(repo, "pythonexec-rs/tests/fixtures/bad_worker.py");
/** Any python3 for the protocol tests; PYTHONEXEC_TEST_PYTHON when set. */
export const PYTHON = process.env.PYTHONEXEC_TEST_PYTHON || "python3";
/** A python that can import litellm, or null (those tests skip). */
export const LITELLM_PYTHON = process.env.PYTHONEXEC_TEST_PYTHON || null;

export function worker(options = {}) {
  return new Worker({ python: PYTHON, workerPath: WORKER_PATH, stderr: false, ...options });
}

/** A stand-in "python": a shell script running `body`, whatever arguments it gets. */
export function fakePython(body) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "pythonexec-node-"));
  const file = path.join(dir, "python");
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Which Python to run, and why; where the worker script is. The same decision as
// pythonexec-rs (src/interpreter.rs, src/layer.rs): an explicit path, else PYTHONEXEC_PYTHON,
// else inside Lambda the layer's interpreter read from the layer, else python3 on PATH.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const PYTHON_ENV_VAR = "PYTHONEXEC_PYTHON";
export const WORKER_ENV_VAR = "PYTHONEXEC_WORKER";
export const LAYER_ROOT = "/opt";
export const LAYER_MANIFEST = "python/layer-manifest.json";
export const WORKER_PY_IN_LAYER = "python/lib/pythonexec/worker.py";
const LAMBDA_MARKERS = ["AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"];

/** "3.11.7" -> "python3.11", else null. */
export function minorOf(version) {
  const m = /^(\d+)\.(\d+)(\.|$)/.exec(String(version));
  return m ? `python${m[1]}.${m[2]}` : null;
}

/** The interpreter of the layer unpacked at `root`, and how it was found. */
export function layerPython(root = LAYER_ROOT) {
  const home = path.join(root, "python");
  const manifest = path.join(root, LAYER_MANIFEST);
  let minor = null;
  let foundBy;
  try {
    const version = JSON.parse(readFileSync(manifest, "utf8")).python_version;
    minor = minorOf(version);
    foundBy = minor
      ? `python_version ${version} in ${manifest}`
      : `${manifest} has python_version ${JSON.stringify(version)}, not like 3.11.7`;
  } catch (err) {
    foundBy = `cannot read ${manifest}: ${err.message}`;
  }
  if (!minor) {
    const lib = path.join(home, "lib");
    let best = null;
    try {
      for (const name of readdirSync(lib)) {
        const m = /^python3\.(\d+)$/.exec(name);
        if (m && statSync(path.join(lib, name)).isDirectory()) {
          if (!best || Number(m[1]) > best.n) best = { n: Number(m[1]), name };
        }
      }
    } catch {
      // no lib folder: the fallback below
    }
    if (best) {
      minor = best.name;
      foundBy += `; found ${path.join(lib, best.name)}`;
    } else {
      foundBy += `; no lib/python3.* under ${home}`;
    }
  }
  const fallback = path.join(home, "bin", "python3");
  let program = fallback;
  if (minor) {
    const versioned = path.join(home, "bin", minor);
    program = existsSync(versioned) || !existsSync(fallback) ? versioned : fallback;
  }
  const env = { PYTHONHOME: home };
  if (minor) env.PYTHONPATH = path.join(home, "lib", minor);
  return { program, env, foundBy };
}

/**
 * Choose the interpreter: `{ program, env, choice, reason }`.
 * @param {{python?: string, env?: object, layerRoot?: string}} options
 */
export function locatePython({ python, env = process.env, layerRoot = LAYER_ROOT } = {}) {
  if (python) {
    return { program: python, env: {}, choice: "explicit", reason: "given explicitly" };
  }
  if (env[PYTHON_ENV_VAR]) {
    return {
      program: env[PYTHON_ENV_VAR],
      env: {},
      choice: "env_var",
      reason: `${PYTHON_ENV_VAR} is set`,
    };
  }
  const marker = LAMBDA_MARKERS.find((name) => env[name]);
  if (marker) {
    const layer = layerPython(layerRoot);
    return {
      program: layer.program,
      env: layer.env,
      choice: "lambda",
      reason: `inside Lambda (${marker} is set): the layer's interpreter, from ${layer.foundBy}`,
    };
  }
  return {
    program: "python3",
    env: {},
    choice: "path",
    reason: `no explicit path, ${PYTHON_ENV_VAR} unset, not inside Lambda: python3 on PATH`,
  };
}

/** What to do when the interpreter is missing ("" when there is nothing to say). */
export function notFoundHint(interpreter) {
  if (interpreter.choice === "lambda") {
    return (
      "; no layer here: add the python-litellm layer to the function, or, outside AWS " +
      `(a local emulator also sets AWS_LAMBDA_FUNCTION_NAME), set ${PYTHON_ENV_VAR} to a ` +
      "python3, e.g. the interpreter of a layer tree built by `cargo xtask layer` " +
      "(<out>/tree/python/bin/python3)"
    );
  }
  if (interpreter.choice === "env_var") return `; ${PYTHON_ENV_VAR} names a file that does not exist`;
  return "";
}

/**
 * The worker script: `workerPath`, else PYTHONEXEC_WORKER, else the layer's copy next to this
 * package (`<layer>/nodejs/node_modules/pythonexec` -> `<layer>/python/lib/pythonexec/worker.py`),
 * else `<layerRoot>/python/lib/pythonexec/worker.py`.
 */
export function locateWorker({ workerPath, env = process.env, layerRoot = LAYER_ROOT } = {}) {
  if (workerPath) return workerPath;
  if (env[WORKER_ENV_VAR]) return env[WORKER_ENV_VAR];
  const here = path.dirname(fileURLToPath(import.meta.url));
  const besidePackage = path.resolve(here, "../../../..", WORKER_PY_IN_LAYER);
  if (existsSync(besidePackage)) return besidePackage;
  return path.join(layerRoot, WORKER_PY_IN_LAYER);
}

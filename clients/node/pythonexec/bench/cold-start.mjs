// Cold start as Lambda sees it, INIT + first invocation, with and without INIT waiting for the
// worker's `import litellm`: `node bench/cold-start.mjs --python PATH [--memory 512] [--runs 5]
// [--json]` (root; cgroup v1 `cpu` or v2 with the `cpu` controller).
//
// Each run is a fresh Node.js process in a new CPU control group: unthrottled during "INIT"
// (until the module's top-level work is done: `Worker.spawnReady` or `new Worker`), then
// throttled to Lambda's share, memory / 1769 of one CPU, for the first completion against a
// loopback server. The group gets four times the usual CPU weight, as `verify --memory` gives
// its own, so that this machine's other load matters less than the quota.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Worker } from "../index.mjs";
import { startMock } from "../fixtures/mock-openai.mjs";

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : args[i + 1];
};
const here = fileURLToPath(import.meta.url);
const python = arg("--python", process.env.PYTHONEXEC_PYTHON || "python3");
const workerPath = arg("--worker", path.resolve(path.dirname(here), "../../../../pythonexec-rs/src/worker.py"));
const memory = Number(arg("--memory", "512"));
const runs = Number(arg("--runs", "5"));
const PERIOD = 100000;
const quota = Math.round((memory * PERIOD) / 1769);

/** A CPU group below this process's own: `{ dir, version }`, or an error saying why not. */
function cpuGroup() {
  const mountinfo = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  const own = readFileSync("/proc/self/cgroup", "utf8").split("\n");
  const mount = (type, opt) =>
    mountinfo
      .map((l) => l.split(" - "))
      .filter(([, right]) => right?.split(" ")[0] === type && (!opt || right.split(" ")[2].split(",").includes(opt)))
      .map(([left]) => left.split(" ")[4])[0];
  const v1 = mount("cgroup", "cpu");
  const v1Path = own.map((l) => l.split(":")).find(([, list]) => list?.split(",").includes("cpu"))?.[2];
  const name = `pythonexec-cold-${process.pid}`;
  if (v1 && v1Path !== undefined) {
    const dir = path.join(v1, v1Path, name);
    mkdirSync(dir);
    writeFileSync(`${dir}/cpu.cfs_period_us`, String(PERIOD));
    writeFileSync(`${dir}/cpu.shares`, "4096");
    return { dir, version: 1 };
  }
  const v2 = mount("cgroup2");
  const v2Path = own.find((l) => l.startsWith("0::"))?.slice(3);
  if (v2 && v2Path !== undefined) {
    const parent = path.join(v2, v2Path);
    if (!readFileSync(`${parent}/cgroup.subtree_control`, "utf8").split(/\s+/).includes("cpu")) {
      writeFileSync(`${parent}/cgroup.subtree_control`, "+cpu");
    }
    const dir = path.join(parent, name);
    mkdirSync(dir);
    writeFileSync(`${dir}/cpu.weight`, "400");
    return { dir, version: 2 };
  }
  throw new Error("no cgroup v1 `cpu` hierarchy and no cgroup v2 mount: cannot apply Lambda's CPU share");
}

const setQuota = (g, q) =>
  g.version === 1
    ? writeFileSync(`${g.dir}/cpu.cfs_quota_us`, String(q ?? -1))
    : writeFileSync(`${g.dir}/cpu.max`, `${q ?? "max"} ${PERIOD}`);

/** One cold start in this process: `{ init_ms, first_ms, cold_ms }`. */
async function once(wait) {
  const g = cpuGroup();
  try {
    setQuota(g, null);
    writeFileSync(`${g.dir}/cgroup.procs`, String(process.pid)); // the worker follows
    const mock = await startMock();
    const t0 = performance.now();
    const options = { python, workerPath, stderr: false, preload: ["litellm"] };
    const w = wait ? await Worker.spawnReady({ ...options, deadlineMs: 9000 }) : new Worker(options);
    const init = performance.now() - t0;
    setQuota(g, quota);
    const t1 = performance.now();
    await w.completion({
      model: "openai/gpt-4o-mini",
      messages: [{ role: "user", content: "hi" }],
      api_base: mock.baseUrl,
      api_key: "x",
      num_retries: 0,
    });
    const first = performance.now() - t1;
    await w.shutdown();
    await mock.close();
    return { init_ms: init, first_ms: first, cold_ms: init + first };
  } finally {
    // Out of the group again (to the one this process came from), then remove it.
    const parent = path.dirname(g.dir);
    if (existsSync(`${parent}/cgroup.procs`)) writeFileSync(`${parent}/cgroup.procs`, String(process.pid));
    rmdirSync(g.dir);
  }
}

if (args.includes("--child")) {
  console.log(JSON.stringify(await once(args.includes("--wait"))));
} else {
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const result = { memory_mb: memory, cpu_share: memory / 1769, runs };
  for (const mode of ["wait", "no-wait"]) {
    const samples = [];
    for (let i = 0; i < runs; i++) {
      const out = execFileSync(process.execPath, [here, ...args, "--child", ...(mode === "wait" ? ["--wait"] : [])], {
        encoding: "utf8",
      });
      samples.push(JSON.parse(out.trim().split("\n").at(-1)));
    }
    result[mode] = Object.fromEntries(
      ["init_ms", "first_ms", "cold_ms"].map((k) => [k, Math.round(median(samples.map((s) => s[k])))]),
    );
  }
  if (args.includes("--json")) console.log(JSON.stringify(result));
  else {
    console.log(`cold start at ${memory} MB (${result.cpu_share.toFixed(2)} vCPU after INIT), median of ${runs} fresh processes`);
    for (const mode of ["wait", "no-wait"]) {
      const r = result[mode];
      console.log(`  INIT ${mode === "wait" ? "waits for the import" : "does not wait      "}  INIT ${r.init_ms} ms + first invocation ${r.first_ms} ms = ${r.cold_ms} ms`);
    }
  }
}

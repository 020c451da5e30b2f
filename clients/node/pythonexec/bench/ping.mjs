// Warm round trip of the Node.js client: `node bench/ping.mjs [--python PATH] [--worker PATH]
// [--n N] [--json]`. The twin of `cargo bench -p pythonexec-rs --bench worker`.

import path from "node:path";
import { fileURLToPath } from "node:url";

import { Worker } from "../index.mjs";

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i === -1 ? fallback : args[i + 1];
};
const here = path.dirname(fileURLToPath(import.meta.url));
const python = arg("--python", process.env.PYTHONEXEC_PYTHON || "python3");
const workerPath = arg("--worker", path.resolve(here, "../../../../pythonexec-rs/src/worker.py"));
const n = Number(arg("--n", "2000"));

const w = new Worker({ python, workerPath, stderr: false });
await w.ready();
for (let i = 0; i < 200; i++) await w.ping(); // warm-up

const stats = (times, total) => {
  times.sort((a, b) => a - b);
  return {
    n: times.length,
    median_ms: times[Math.floor(times.length / 2)],
    p99_ms: times[Math.floor(times.length * 0.99)],
    per_second: (times.length / total) * 1000,
  };
};
const seq = [];
let started = performance.now();
for (let i = 0; i < n; i++) {
  const t = performance.now();
  await w.ping();
  seq.push(performance.now() - t);
}
const sequential = stats(seq, performance.now() - started);
const conc = [];
started = performance.now();
for (let round = 0; round < Math.max(1, Math.floor(n / 64)); round++) {
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      const t = performance.now();
      await w.ping();
      conc.push(performance.now() - t);
    }),
  );
}
const concurrent = stats(conc, performance.now() - started);
await w.shutdown();

const report = { client: "node", node: process.version, python, sequential, concurrent_64: concurrent };
if (args.includes("--json")) {
  console.log(JSON.stringify(report));
} else {
  const f = (s) => `n ${s.n}, median ${(s.median_ms * 1000).toFixed(0)} µs, p99 ${(s.p99_ms * 1000).toFixed(0)} µs, ${s.per_second.toFixed(0)} req/s`;
  console.log(`node ${process.version}, python ${python}`);
  console.log(`worker ping, sequential:    ${f(sequential)}`);
  console.log(`worker ping, 64 concurrent: ${f(concurrent)}`);
}

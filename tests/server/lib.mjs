// Shared helpers of the server tests: start `compresskv serve` on 127.0.0.1
// with --port 0, reference answers from `compresskv run`, /metrics parsing.
// Every child process is killed when the test process exits, whatever happens.
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.CKV_BINARY || path.join(ROOT, 'build/compresskv');
export const STORIES = path.join(ROOT, 'models/stories260k/stories260K.bin');
export const SMOL = path.resolve(ROOT, '../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf');
// Threads of every server and reference run: the machine has 2 cores.
export const THREADS = process.env.CKV_TEST_THREADS || '2';
// OpenMP threads that sleep when idle: spinning ones make a shared 2-core
// machine ~10x slower (SmolLM2's `run -n 8`: 12 s against 0.9 s).
const ENV = { ...process.env, OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY || 'passive' };

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

// Starts `compresskv serve ARGS --port 0`; resolves when the contract's ready
// line names the port. Rejects (and kills the child) on exit or timeout.
export function startServer(args, { timeoutMs = 60000 } = {}) {
  const full = ['serve', '--host', '127.0.0.1', '--port', '0', '-t', THREADS, ...args];
  const proc = spawn(BIN, full, { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
  children.add(proc);
  let stderr = '';
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      children.delete(proc);
      resolve(exited);
    });
  });
  proc.stdout.on('data', () => {});
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`serve did not print its ready line in ${timeoutMs} ms; args ${full.join(' ')}; stderr:\n${stderr}`));
    }, timeoutMs);
    proc.stderr.on('data', (d) => {
      stderr += d.toString();
      const m = stderr.match(/^compresskv serve: listening on http:\/\/([^:\s]+):(\d+)$/m);
      if (m && timer) {
        clearTimeout(timer);
        const port = Number(m[2]);
        resolve({
          proc,
          host: m[1],
          port,
          url: `http://127.0.0.1:${port}`,
          stderr: () => stderr,
          exited: () => exited,
          exitPromise,
          // SIGTERM, then SIGKILL after `graceMs`; resolves to {code, signal, killed}.
          async stop(graceMs = 5000) {
            if (exited) return { ...exited, killed: false };
            proc.kill('SIGTERM');
            let t;
            const r = await Promise.race([exitPromise, new Promise((res) => { t = setTimeout(() => res(null), graceMs); })]);
            clearTimeout(t);
            if (r) return { ...r, killed: false };
            proc.kill('SIGKILL');
            return { ...(await exitPromise), killed: true };
          },
        });
      }
    });
    exitPromise.then((e) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${JSON.stringify(e)}) before it was ready; args ${full.join(' ')}; stderr:\n${stderr}`));
    });
  });
}

// `compresskv ARGS` -> stdout (rejects with stderr on a non-zero exit).
export function ckv(args, { timeoutMs = 120000, input } = {}) {
  return new Promise((resolve, reject) => {
    const p = execFile(BIN, args, { timeout: timeoutMs, maxBuffer: 64 << 20, env: ENV }, (err, stdout, stderr) => {
      if (err) reject(new Error(`compresskv ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
    children.add(p);
    p.on('exit', () => children.delete(p));
    if (input !== undefined) p.stdin.end(input);
  });
}

// The greedy reference: `compresskv run --temp 0 -n N ...` -> {text,
// promptTokens, generatedTokens} (the counts from run's stderr line).
export async function runReference({ model, prompt, n, chat = false, kv = [], extra = [] }) {
  const args = ['run', '-m', model, '-p', prompt, '--temp', '0', '-n', String(n), '-t', THREADS, ...kv, ...extra];
  if (chat) args.push('--chat');
  const { stdout, stderr } = await ckv(args);
  const m = stderr.match(/prompt tokens: (\d+),.*generated tokens: (\d+)/);
  if (!m) throw new Error(`run printed no token counts: ${stderr}`);
  // run ends its output with one newline (as llama2.c) once it generated anything.
  const text = Number(m[2]) > 0 && stdout.endsWith('\n') ? stdout.slice(0, -1) : stdout;
  return { text, promptTokens: Number(m[1]), generatedTokens: Number(m[2]) };
}

// Token ids of `text` as `compresskv tokenize` gives them (BOS included).
export async function tokenize(model, text) {
  return JSON.parse((await ckv(['tokenize', '-m', model, '-p', text])).stdout);
}

// fetch with a deadline.
export async function http(url, { method = 'GET', headers = {}, body, timeoutMs = 30000 } = {}) {
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

export function postJson(url, obj, opts = {}) {
  return http(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(opts.headers || {}) },
    body: typeof obj === 'string' ? obj : JSON.stringify(obj), timeoutMs: opts.timeoutMs });
}

// Prometheus text -> Map "name{labels}" -> number (labels as written).
export function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i).trim(), Number(line.slice(i + 1)));
  }
  return m;
}

// A Prometheus histogram's invariants: buckets by le, non-decreasing, +Inf == _count. Returns _count.
export function checkHistogram(assert, m, name) {
  const buckets = [...m].filter(([k]) => k.startsWith(`${name}_bucket{`))
    .map(([k, v]) => [k.match(/le="([^"]+)"/)[1], v]);
  assert.ok(buckets.length >= 2, `${name}: no buckets`);
  const le = (x) => (x === '+Inf' ? Infinity : Number(x));
  buckets.sort((a, b) => le(a[0]) - le(b[0]));
  for (let i = 1; i < buckets.length; ++i) assert.ok(buckets[i][1] >= buckets[i - 1][1], `${name}: buckets decrease`);
  assert.equal(buckets.at(-1)[0], '+Inf');
  assert.equal(buckets.at(-1)[1], m.get(`${name}_count`));
  assert.ok(m.get(`${name}_sum`) >= 0);
  return m.get(`${name}_count`);
}

export async function metrics(server, headers = {}) {
  const r = await http(`${server.url}/metrics`, { headers });
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.text}`);
  return parseMetrics(r.text);
}

// Calls fn(metrics) every intervalMs while `work` runs; resolves to work's
// result (a failed fn fails it too).
export async function sampleMetrics(server, work, fn, intervalMs = 20) {
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      fn(await metrics(server));
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  try {
    return await work;
  } finally {
    sampling = false;
    await sampler;
  }
}

// Polls `fn` until it returns a truthy value, or throws after timeoutMs with `what`.
export async function waitFor(fn, { timeoutMs = 20000, intervalMs = 100, what = 'condition' } = {}) {
  const t0 = Date.now();
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// A small seeded PRNG (mulberry32): the fuzz and the disconnects are reproducible.
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (arr) => arr[Math.floor(next() * arr.length)],
  };
}

// Checks an OpenAI error body; returns the error object.
export function assertErrorBody(assert, r, { status, type, param } = {}) {
  const ctx = `status ${r.status}, body ${r.text.slice(0, 300)}`;
  if (status !== undefined) assert.equal(r.status, status, ctx);
  assert.ok(r.json && typeof r.json.error === 'object' && r.json.error !== null, `no error object: ${ctx}`);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string', ctx);
  assert.ok(e.message.length > 0, ctx);
  assert.ok(['invalid_request_error', 'authentication_error', 'rate_limit_error', 'server_error'].includes(e.type), ctx);
  assert.ok('param' in e && (e.param === null || typeof e.param === 'string'), `param: ${ctx}`);
  assert.ok('code' in e && (e.code === null || typeof e.code === 'string'), `code: ${ctx}`);
  if (type !== undefined) assert.equal(e.type, type, ctx);
  if (param !== undefined) assert.equal(e.param, param, ctx);
  return e;
}

export function tempDir(prefix) {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir: d, remove: () => rmSync(d, { recursive: true, force: true }) };
}

export const haveSmol = existsSync(SMOL);

// bench/loadgen against a stories260K server: every request completes, the
// token counts add up (chunks and usage), a --stop-after run is cut with a
// window where all clients decode, and the KV it read from /metrics is back
// to 0 after it; a burst of connections at once is served in full.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, tempDir, BIN, STORIES } from './lib.mjs';

const LOADGEN = process.env.CKV_LOADGEN || path.join(path.dirname(BIN), 'loadgen');

function loadgen(args) {
  return new Promise((resolve, reject) => {
    execFile(LOADGEN, args, { timeout: 60000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`loadgen ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

describe('bench/loadgen', () => {
  let server;
  let tmp;
  before(async () => {
    assert.ok(existsSync(LOADGEN), `${LOADGEN} is missing: build the loadgen target (or set CKV_LOADGEN)`);
    server = await startServer(['-m', STORIES]);
    tmp = tempDir('ckv-loadgen-');
  });
  after(async () => {
    await server?.stop();
    tmp?.remove();
  });

  test('8 clients read to the end, then a cut run; JSON lines and the table', async () => {
    const json = path.join(tmp.dir, 'runs.jsonl');
    const common = ['--url', server.url, '-n', '8', '-p', '32', '--vocab', '512', '--json', json, '--metrics-every', '0.02'];
    const out = await loadgen([...common, '-m', '48', '--label', 'whole']);
    assert.match(out, /\| whole \| 8 \| 32 \| 48 \|/);
    await loadgen([...common, '-m', '400', '--stop-after', '12', '--interval', '0.01', '--label', 'cut',
      '--kv-method', 'snapkv', '--kv-budget', '16']);
    const [whole, cut] = readFileSync(json, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(whole.ok, 8);
    assert.equal(whole.cut, 0);
    assert.equal(whole.usage_completion_tokens, 8 * 48);
    assert.ok(whole.tokens <= 8 * 48 && whole.tokens >= 8, `chunks ${whole.tokens}`);
    assert.ok(whole.ttft_p50_s > 0 && whole.ttft_p99_s >= whole.ttft_p50_s);
    assert.ok(whole.itl_p99_ms >= whole.itl_p50_ms);
    assert.equal(whole.kv_end_bytes, 0);
    assert.ok(whole.kv_limit_bytes > 0);
    assert.equal(cut.ok, 8);
    assert.ok(cut.cut >= 1, `cut ${cut.cut}`);
    assert.ok(cut.window_s > 0 && cut.decode_tok_s > 0, JSON.stringify(cut));
    assert.equal(cut.peak_decoding, 8);
    assert.ok(cut.tokens < 8 * 400);
    assert.equal(cut.kv, 'snapkv@16');
    assert.equal(cut.kv_end_bytes, 0, 'the cut streams freed their KV');
    const table = await loadgen(['--table', json]);
    assert.equal(table.trim().split('\n').length, 4);
  });

  // 64 clients connecting at the same instant (the default 16 running and 64
  // waiting hold them all): every connection is served
  // (with cpp-httplib's listen backlog of 5 the kernel dropped some of a
  // burst of 64 before the server saw them: "HTTP client: Read").
  test('a burst of 64 connections at once is served in full', async () => {
    const json = path.join(tmp.dir, 'burst.jsonl');
    for (const seed of ['1', '2', '3']) {
      await loadgen(['--url', server.url, '-n', '64', '-p', '8', '-m', '4', '--vocab', '512', '--seed', seed,
        '--json', json, '--label', 'burst']);
    }
    for (const r of readFileSync(json, 'utf8').trim().split('\n').map((l) => JSON.parse(l)))
      assert.equal(r.ok, 64, JSON.stringify(r.errors));
  });
});

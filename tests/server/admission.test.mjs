// Admission by memory: with --kv-memory sized for one request, a burst runs
// one at a time, queues --queue more and answers the rest 429 with
// Retry-After; never a 500. A request that could never fit is a 400; one that
// fits still answers exactly.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, runReference, postJson, metrics, sampleMetrics, assertErrorBody, STORIES } from './lib.mjs';

const M = 200;       // generated tokens of each request
const P = 32;        // prompt tokens (ids)
const ids = Array.from({ length: P }, (_, i) => 1 + ((i * 37) % 500));

const PROBE = 4 << 20;
// From a server's own report: KV bytes of one prompt token with the full
// cache, and what of --kv-memory goes elsewhere than the page pool (a prompt
// read's transient, the page tables of --max-seqs 16): limits below are that
// plus the pool wanted.
async function probe() {
  const s = await startServer(['-m', STORIES, '--kv-memory', String(PROBE), '--max-seqs', '16']);
  try {
    const r = await postJson(`${s.url}/v1/completions`, { model: 'm', prompt: ids, max_tokens: 1, temperature: 0 });
    assert.equal(r.status, 200, r.text);
    const m = await metrics(s);
    assert.equal(m.get('ckv_kv_memory_limit_bytes'), PROBE);
    assert.ok(m.get('ckv_kv_pool_bytes') > 0 && m.get('ckv_kv_pool_bytes') <= PROBE);
    return { perTok: r.json.kv.full_kv_bytes / P, overhead: PROBE - m.get('ckv_kv_pool_bytes') };
  } finally {
    await s.stop();
  }
}

describe('admission past --kv-memory', () => {
  let perTok;
  let overhead;
  let ref;
  before(async () => {
    let p;
    [p, ref] = await Promise.all([probe(),
      runReference({ model: STORIES, prompt: 'Once upon a time', n: M, extra: ['--ignore-eos'] })]);
    ({ perTok, overhead } = p);
  });

  test('a burst: one runs, --queue wait, the rest 429 with Retry-After; no 500', async () => {
    const need = perTok * (P + M);  // one request's full cache with its generation room
    const limit = Math.floor(overhead + 1.6 * need);  // a pool with room for one, not two
    const server = await startServer(['-m', STORIES, '--kv-memory', String(limit), '--queue', '2', '--max-seqs', '16']);
    try {
      const body = { model: 'm', prompt: ids, max_tokens: M, temperature: 0, ignore_eos: true };
      let peakRunning = 0;
      const burst = await sampleMetrics(server,
        Promise.all(Array.from({ length: 8 }, () => postJson(`${server.url}/v1/completions`, body, { timeoutMs: 60000 }))),
        (m) => {
          peakRunning = Math.max(peakRunning, m.get('ckv_running_sequences'));
          assert.ok(m.get('ckv_kv_bytes') <= m.get('ckv_kv_pool_bytes'), `ckv_kv_bytes ${m.get('ckv_kv_bytes')} over the pool`);
        });
      const statuses = burst.map((r) => r.status).sort();
      console.log(`admission: burst of ${burst.length} under a pool for one: statuses ${statuses}, peak running ${peakRunning}`);
      const ok = burst.filter((r) => r.status === 200);
      const busy = burst.filter((r) => r.status === 429);
      assert.equal(ok.length + busy.length, burst.length, `statuses ${statuses}`);
      assert.ok(busy.length >= 1, `no 429 in ${statuses}`);
      assert.ok(ok.length >= 1, `statuses ${statuses}`);
      assert.equal(peakRunning <= 1, true, `${peakRunning} sequences ran at once under a limit for one`);
      for (const r of busy) {
        assertErrorBody(assert, r, { status: 429, type: 'rate_limit_error' });
        const ra = r.headers.get('retry-after');
        assert.match(ra || '', /^\d+$/, `Retry-After: ${ra}`);
        assert.ok(Number(ra) >= 1);
      }
      // Every admitted request is exact (queued ones too); the token-id prompt's text answer is the same
      // on each, so compare them with each other and the usage with the request.
      for (const r of ok) {
        assert.equal(r.json.usage.completion_tokens, M);
        assert.equal(r.json.choices[0].text, ok[0].json.choices[0].text);
      }
      const m = await metrics(server);
      assert.ok(!(m.get('ckv_requests_total{status="500"}') > 0), 'a 500 was counted');
      assert.equal(m.get('ckv_requests_total{status="429"}'), busy.length);
      assert.equal(m.get('ckv_kv_memory_limit_bytes'), limit);
      assert.equal(m.get('ckv_kv_bytes'), 0);
      // Alone again, a text request answers as run does.
      const one = await postJson(`${server.url}/v1/completions`, { model: 'm', prompt: 'Once upon a time', max_tokens: M,
        temperature: 0, ignore_eos: true });
      assert.equal(one.status, 200, one.text);
      assert.equal(one.json.choices[0].text, ref.text);
    } finally {
      const st = await server.stop();
      assert.equal(st.killed, false);
    }
  });

  test('a request that could never fit is a 400 naming max_tokens or prompt; a small one runs', async () => {
    const limit = Math.floor(overhead + perTok * 64);
    const server = await startServer(['-m', STORIES, '--kv-memory', String(limit)]);
    try {
      const big = await postJson(`${server.url}/v1/completions`, { model: 'm', prompt: ids, max_tokens: 400, temperature: 0 });
      const e = assertErrorBody(assert, big, { status: 400, type: 'invalid_request_error' });
      assert.ok(['max_tokens', 'prompt'].includes(e.param), `param ${e.param}`);
      const text = await postJson(`${server.url}/v1/completions`, { model: 'm', prompt: 'Once upon a time', max_tokens: 300,
        temperature: 0, stream: true });
      assertErrorBody(assert, text, { status: 400 });
      const small = await postJson(`${server.url}/v1/completions`, { model: 'm', prompt: 'Once upon a time', max_tokens: 8,
        temperature: 0 });
      assert.equal(small.status, 200, small.text);
      assert.ok(ref.text.startsWith(small.json.choices[0].text));
      const m = await metrics(server);
      assert.ok(!(m.get('ckv_requests_total{status="500"}') > 0));
    } finally {
      await server.stop();
    }
  });
});

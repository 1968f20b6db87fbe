// 64 concurrent streaming clients, a seeded half of which go away (before the
// first token, or after a few chunks): KV memory (/metrics ckv_kv_bytes)
// returns to its baseline, nothing stays running or queued, every request is
// counted once, the disconnects as 499, and the streams read to the end are
// the greedy answers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, runReference, metrics, sampleMetrics, waitFor, rng, http, checkHistogram, STORIES } from './lib.mjs';

const CLIENTS = 64;
const N = 300;
const prompts = ['Once upon a time', 'The little dog', 'One day, a girl named Sue', 'Tom had a red ball'];

// Streams one completion; aborts after `abortAfter` SSE events (-1: never, 0:
// before the response). Resolves to {aborted, text, events}.
async function client(url, prompt, abortAfter) {
  const ac = new AbortController();
  const deadline = setTimeout(() => ac.abort(new Error('deadline')), 120000);
  let text = '';
  let events = 0;
  try {
    if (abortAfter === 0) setTimeout(() => ac.abort(), 5);
    const res = await fetch(`${url}/v1/completions`, { method: 'POST', signal: ac.signal,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt, max_tokens: N, temperature: 0, ignore_eos: true, stream: true }) });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, k);
        buf = buf.slice(k + 2);
        if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
        events++;
        text += JSON.parse(ev.slice(6)).choices?.[0]?.text ?? '';
        if (abortAfter > 0 && events >= abortAfter) {
          ac.abort();
          return { aborted: true, text, events };
        }
      }
    }
    return { aborted: false, text, events };
  } catch (e) {
    if (ac.signal.aborted && !(ac.signal.reason instanceof Error && ac.signal.reason.message === 'deadline'))
      return { aborted: true, text, events };
    throw e;
  } finally {
    clearTimeout(deadline);
  }
}

describe(`${CLIENTS} concurrent clients with random disconnects`, () => {
  let server;
  const refs = new Map();
  before(async () => {
    server = await startServer(['-m', STORIES, '--max-seqs', '16', '--queue', '64']);
    for (const p of prompts) refs.set(p, (await runReference({ model: STORIES, prompt: p, n: N, extra: ['--ignore-eos'] })).text);
  });
  after(async () => { await server?.stop(); });

  test('KV bytes back at the baseline, disconnects counted, completed streams exact', async () => {
    const m0 = await metrics(server);
    const base = m0.get('ckv_kv_bytes');
    assert.equal(base, 0, 'an idle server holds no KV');
    const pool0 = m0.get('ckv_kv_pool_bytes');
    const r = rng(Number(process.env.CKV_DISCONNECT_SEED || 5));
    const plan = Array.from({ length: CLIENTS }, (_, i) => ({
      prompt: prompts[i % prompts.length],
      abortAfter: r.next() < 0.5 ? -1 : r.pick([0, 1, 2, 5, 20, 60, 150]),
    }));
    let peak = 0;
    const results = await sampleMetrics(server, Promise.all(plan.map((p) => client(server.url, p.prompt, p.abortAfter))),
      (m) => {
        peak = Math.max(peak, m.get('ckv_kv_bytes'));
        assert.ok(m.get('ckv_kv_full_bytes') >= m.get('ckv_kv_bytes'), 'KV held above what FullKV would hold');
        assert.ok(m.get('ckv_kv_bytes') <= m.get('ckv_kv_pool_bytes'));
      }, 50);
    assert.ok(peak > 0, 'ckv_kv_bytes never rose during the run');

    const m = await waitFor(async () => {
      const mm = await metrics(server);
      return mm.get('ckv_kv_bytes') === base && mm.get('ckv_running_sequences') === 0 && mm.get('ckv_queue_depth') === 0 && mm;
    }, { timeoutMs: 15000, what: 'ckv_kv_bytes back at its baseline with nothing running or queued' });
    assert.equal(m.get('ckv_kv_pool_bytes'), pool0);
    const aborted = results.filter((x) => x.aborted).length;
    const full = results.filter((x) => !x.aborted);
    console.log(`disconnect: ${aborted} of ${CLIENTS} aborted, peak KV ${peak} bytes, 499 counted ` +
      `${(m.get('ckv_requests_total{status="499"}') || 0) - (m0.get('ckv_requests_total{status="499"}') || 0)}`);
    assert.ok(aborted >= CLIENTS / 4, `only ${aborted} clients aborted`);
    const d499 = (m.get('ckv_requests_total{status="499"}') || 0) - (m0.get('ckv_requests_total{status="499"}') || 0);
    assert.ok(d499 >= 1 && d499 <= aborted, `499 counted ${d499} times for ${aborted} disconnects`);
    // Every stream read to the end is a 200 (scrapes of /metrics may add to it).
    const d200 = (m.get('ckv_requests_total{status="200"}') || 0) - (m0.get('ckv_requests_total{status="200"}') || 0);
    assert.ok(d200 >= full.length, `200 counted ${d200} times for ${full.length} complete streams`);
    assert.ok(!(m.get('ckv_requests_total{status="500"}') > 0), 'a 500 was counted');
    for (const [i, x] of results.entries()) {
      if (!x.aborted) assert.equal(x.text, refs.get(plan[i].prompt), `client ${i} (read to the end)`);
      else assert.ok(refs.get(plan[i].prompt).startsWith(x.text), `client ${i}: the part read before the abort`);
    }
    assert.ok(full.length > 0);
    // Every complete stream had a first token and N - 1 gaps.
    assert.ok(checkHistogram(assert, m, 'ckv_time_to_first_token_seconds') >= full.length);
    assert.ok(checkHistogram(assert, m, 'ckv_inter_token_latency_seconds') >= full.length * (N - 1));
    // Still serving, exactly.
    const after = await http(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: prompts[1], max_tokens: N, temperature: 0, ignore_eos: true }) });
    assert.equal(after.status, 200, after.text);
    assert.equal(after.json.choices[0].text, refs.get(prompts[1]));
  });
});

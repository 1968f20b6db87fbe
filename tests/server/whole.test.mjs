// Requests with stream: false. The status line waits for the answer, so a
// request that fails after admission gets its own status (SIGTERM: 503 with
// an error object, not a 200); a client that hangs up mid-generation cancels
// its sequence at once (KV back to 0, counted as 499, far fewer tokens
// generated than it asked for).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, metrics, waitFor, STORIES } from './lib.mjs';

const LONG = { model: 'm', prompt: 'Once upon a time', max_tokens: 100000, temperature: 0, ignore_eos: true };

function post(url, body, signal) {
  return fetch(`${url}/v1/completions`, { method: 'POST', signal, headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body) });
}

describe('non-streamed requests', () => {
  test('a client that hangs up cancels its sequence: KV back to 0, a 499, the generation stopped', async () => {
    // A context far longer than the 2 s the request runs (stories260K: about a thousand tokens a second).
    const server = await startServer(['-m', STORIES, '-c', '100000']);
    try {
      const ac = new AbortController();
      const req = post(server.url, LONG, ac.signal).catch((e) => e);
      await waitFor(async () => (await metrics(server)).get('ckv_generated_tokens_total') > 50,
        { what: 'the generation to start', timeoutMs: 20000, intervalMs: 20 });
      ac.abort();
      assert.ok((await req) instanceof Error, 'the aborted fetch resolved');
      const m = await waitFor(async () => {
        const x = await metrics(server);
        return x.get('ckv_running_sequences') === 0 && x.get('ckv_kv_bytes') === 0 ? x : null;
      }, { what: 'the sequence to be cancelled', timeoutMs: 2000, intervalMs: 20 });
      assert.equal(m.get('ckv_requests_total{status="499"}'), 1);
      const made = m.get('ckv_generated_tokens_total');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await metrics(server)).get('ckv_generated_tokens_total'), made, 'tokens are still being generated');
      assert.ok(made < 20000, `${made} tokens generated for a client that left`);
    } finally {
      await server.stop();
    }
  });

  test('SIGTERM during a non-streamed request: 503 with an OpenAI error object', async () => {
    const server = await startServer(['-m', STORIES, '-c', '100000']);
    try {
      const req = post(server.url, LONG);
      await waitFor(async () => (await metrics(server)).get('ckv_generated_tokens_total') > 50,
        { what: 'the generation to start', timeoutMs: 20000, intervalMs: 20 });
      server.proc.kill('SIGTERM');
      const res = await req;
      assert.equal(res.status, 503);
      const j = await res.json();
      assert.equal(typeof j.error?.message, 'string', JSON.stringify(j));
      assert.ok(j.error.message.length > 0);
      const exit = await server.exitPromise;
      assert.deepEqual(exit, { code: 0, signal: null });
    } finally {
      await server.stop(1000);
    }
  });
});

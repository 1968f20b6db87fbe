// SIGTERM mid-stream and SIGINT when idle: the stream is ended (final chunk or
// error event, or the connection closed), the process exits 0 within a few
// seconds, and the port no longer answers.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, http, SMOL, STORIES } from './lib.mjs';

async function refused(url) {
  try {
    await http(`${url}/health`, { timeoutMs: 2000 });
    return false;
  } catch {
    return true;
  }
}

describe('signals', () => {
  test('SIGTERM during a stream: the stream ends, exit 0 within 5 s', async () => {
    const server = await startServer(['-m', SMOL]);
    try {
      const ac = new AbortController();
      const guard = setTimeout(() => ac.abort(), 60000);
      const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'Tell me a long story.' }], max_tokens: 2000,
          temperature: 0, ignore_eos: true, stream: true }) });
      assert.equal(res.status, 200);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let text = '';
      let signalled = 0;
      let endedAt = 0;
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch {
          break;  // the connection closed: an ended stream too
        }
        if (chunk.done) break;
        text += dec.decode(chunk.value, { stream: true });
        if (!signalled && (text.match(/\n\n/g) || []).length >= 3) {
          server.proc.kill('SIGTERM');
          signalled = Date.now();
        }
      }
      endedAt = Date.now();
      clearTimeout(guard);
      assert.ok(signalled, 'the stream ended before three events');
      assert.ok(endedAt - signalled < 5000, `the stream ran ${endedAt - signalled} ms after SIGTERM`);
      assert.ok(!/"finish_reason":"length"/.test(text), 'a cancelled stream claims finish_reason length');
      let t;
      const exit = await Promise.race([server.exitPromise, new Promise((r) => { t = setTimeout(() => r(null), 5000); })]);
      clearTimeout(t);
      assert.ok(exit, `no exit within 5 s of SIGTERM; stderr:\n${server.stderr().slice(-1500)}`);
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(await refused(server.url));
    } finally {
      await server.stop(1000);
    }
  });

  test('SIGINT when idle: exit 0', async () => {
    const server = await startServer(['-m', STORIES]);
    try {
      const h = await http(`${server.url}/health`);
      assert.equal(h.status, 200);
      server.proc.kill('SIGINT');
      let t;
      const exit = await Promise.race([server.exitPromise, new Promise((r) => { t = setTimeout(() => r(null), 5000); })]);
      clearTimeout(t);
      assert.deepEqual(exit, { code: 0, signal: null });
    } finally {
      await server.stop(1000);
    }
  });
});

// logprobs through the official OpenAI client on stories260K: completions
// (tokens, token_logprobs, top_logprobs, text_offset) and chat (content
// entries with bytes and top_logprobs), streamed and not. The tokens spell
// the text, one entry per generated token; greedy picks the most likely; a
// stream's chunks carry the same entries as the whole answer. (The values
// against a brute-force log-softmax: test_server's LogprobsAreTheModelsLogSoftmax.)
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, STORIES } from './lib.mjs';

const N = 12;
const near = (a, b) => Math.abs(a - b) < 1e-6;

describe('logprobs', () => {
  let server;
  let ai;
  before(async () => {
    server = await startServer(['-m', STORIES, '--chat-template', 'chatml']);
    ai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', timeout: 60000, maxRetries: 0 });
  });
  after(async () => { await server?.stop(); });

  test('completions: the tokens spell the text; greedy is the most likely; a stream carries the same', async () => {
    const req = { model: 'm', prompt: 'Once upon a time', max_tokens: N, temperature: 0, ignore_eos: true, logprobs: 3 };
    const r = await ai.completions.create(req);
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.length, N);
    assert.equal(r.usage.completion_tokens, N);
    assert.equal(lp.tokens.join(''), r.choices[0].text);
    let off = 0;
    for (let i = 0; i < N; ++i) {
      assert.equal(lp.text_offset[i], off);
      off += lp.tokens[i].length;
      const alts = Object.values(lp.top_logprobs[i]);
      assert.ok(alts.length >= 1 && alts.length <= 3);
      assert.ok(lp.token_logprobs[i] <= 0);
      assert.ok(near(lp.token_logprobs[i], Math.max(...alts)), `token ${i}: ${lp.token_logprobs[i]} vs ${alts}`);
      assert.ok(near(lp.top_logprobs[i][lp.tokens[i]], lp.token_logprobs[i]));
      assert.ok(alts.reduce((s, v) => s + Math.exp(v), 0) <= 1 + 1e-6);
    }
    const s = await ai.completions.create({ ...req, stream: true });
    const got = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for await (const c of s) {
      const l = c.choices?.[0]?.logprobs;
      if (l) for (const k of Object.keys(got)) got[k].push(...l[k]);
    }
    assert.deepEqual(got, lp);
    // Without logprobs: null.
    const plain = await ai.completions.create({ ...req, logprobs: undefined });
    assert.equal(plain.choices[0].logprobs, null);
    assert.equal(plain.choices[0].text, r.choices[0].text);
  });

  test('chat: content entries with bytes and top_logprobs, streamed and not', async () => {
    const req = { model: 'm', messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: N, temperature: 0,
      ignore_eos: true, logprobs: true, top_logprobs: 2 };
    const r = await ai.chat.completions.create(req);
    const content = r.choices[0].logprobs.content;
    assert.equal(content.length, r.usage.completion_tokens);
    assert.equal(content.map((e) => e.token).join(''), r.choices[0].message.content);
    for (const e of content) {
      assert.equal(Buffer.from(e.bytes).toString('utf8'), e.token);
      assert.equal(e.top_logprobs.length, 2);
      assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
      assert.equal(e.top_logprobs[0].token, e.token);
      assert.ok(near(e.top_logprobs[0].logprob, e.logprob));
    }
    const s = await ai.chat.completions.create({ ...req, stream: true });
    const streamed = [];
    for await (const c of s) streamed.push(...(c.choices?.[0]?.logprobs?.content ?? []));
    assert.deepEqual(streamed, content);
    // logprobs: true alone: the sampled tokens, no alternatives.
    const bare = await ai.chat.completions.create({ ...req, top_logprobs: undefined });
    assert.deepEqual(bare.choices[0].logprobs.content.map((e) => e.top_logprobs.length), content.map(() => 0));
    await assert.rejects(ai.chat.completions.create({ ...req, logprobs: false }), (e) => e.status === 400 && e.param === 'top_logprobs');
  });
});

// Per-request KV settings (the "kv" extension) equal `compresskv run` with the
// same --kv-* flags; concurrent greedy requests (mixed methods) give the same
// tokens as sequential ones.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, runReference, tempDir, STORIES, SMOL } from './lib.mjs';

// A prompt of ~200 stories260K tokens: long enough that budgets of 32 evict.
const story = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. ' +
  'One day, she saw a big red ball in the park. She ran to the ball and kicked it very hard. ' +
  'The ball went up into the sky and landed in a tree. Lily was sad because she could not reach it. ' +
  'Her friend Tom came and helped her climb the tree. They got the ball and played together all day. ' +
  'At the end of the day, Lily said';

// kv extension -> the run flags that mean the same.
function runFlags(kv) {
  const f = [];
  if (kv.method) f.push('--kv-method', kv.method);
  if (kv.select) f.push('--kv-select', kv.select, '--kv-alloc', kv.alloc);
  if (kv.budget !== undefined) f.push('--kv-budget', String(kv.budget));
  if (kv.window !== undefined) f.push('--kv-window', String(kv.window));
  if (kv.window_at !== undefined) f.push('--kv-window-at', kv.window_at);
  return f;
}

describe('per-request kv settings on stories260K', () => {
  let server;
  let ai;
  const N = 16;
  const cases = [
    { method: 'snapkv', budget: 32, window: 8 },
    { method: 'snapkv', budget: 48, window: 4 },
    { method: 'pyramidkv', budget: 32 },
    { method: 'adakv', budget: 40 },
    { method: 'streamingllm', budget: 32 },
    { select: 'window', alloc: 'pyramid', budget: 32 },
    { method: 'full' },
  ];
  const refs = [];
  before(async () => {
    server = await startServer(['-m', STORIES]);
    ai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', timeout: 60000, maxRetries: 0 });
    for (const kv of cases) refs.push(await runReference({ model: STORIES, prompt: story, n: N, kv: runFlags(kv), extra: ['--ignore-eos'] }));
  });
  after(async () => { await server?.stop(); });

  test('each method/budget equals run with the same flags; kv echoed, bytes below full', async () => {
    const answers = new Set();
    for (const [i, kv] of cases.entries()) {
      const r = await ai.completions.create({ model: 'm', prompt: story, max_tokens: N, temperature: 0, ignore_eos: true, kv });
      assert.equal(r.choices[0].text, refs[i].text, `kv ${JSON.stringify(kv)}`);
      assert.equal(r.usage.prompt_tokens, refs[i].promptTokens);
      assert.ok(r.kv, 'response has kv');
      if (kv.method) assert.equal(r.kv.method, kv.method);
      if (kv.budget !== undefined) assert.equal(r.kv.budget, kv.budget);
      if (kv.window !== undefined) assert.equal(r.kv.window, kv.window);
      if (kv.method === 'full') assert.equal(r.kv.kv_bytes, r.kv.full_kv_bytes);
      else assert.ok(r.kv.kv_bytes < r.kv.full_kv_bytes, `kv ${JSON.stringify(r.kv)}`);
      answers.add(r.choices[0].text);
    }
    // The methods really differ here (else the comparison proves little).
    assert.ok(answers.size >= 3, `only ${answers.size} distinct answers over ${cases.length} settings`);
  });

  test('concurrent requests with mixed methods give the sequential tokens', async () => {
    // Eight prompts (different lengths and methods) at once.
    const reqs = [];
    for (let i = 0; i < 8; ++i) {
      const words = story.split(' ');
      reqs.push({ model: 'm', prompt: words.slice(0, 20 + 9 * i).join(' '), max_tokens: N + i, temperature: 0,
        ignore_eos: true, kv: cases[i % cases.length] });
    }
    const seq = [];
    for (const q of reqs) seq.push((await ai.completions.create(q)).choices[0].text);
    const par = await Promise.all(reqs.map((q, i) => (i % 2
      ? ai.completions.create(q).then((r) => r.choices[0].text)
      : ai.completions.create({ ...q, stream: true }).then(async (s) => {
        let t = '';
        for await (const c of s) t += c.choices?.[0]?.text ?? '';
        return t;
      }))));
    assert.deepEqual(par, seq);
  });
});

describe('compresskv (SRH x error-aware, shipped profile) on SmolLM2', () => {
  let server;
  let ai;
  let tmp;
  let alt;
  const N = 8;
  const prompt = `Read this story and answer. ${story} Question: what was the name of the girl? Answer:`;
  before(async () => {
    // A second profile a request can name: the shipped one with every layer's
    // head ranking and the layer scores reversed (other heads, other budgets).
    tmp = tempDir('ckv-profiles-');
    const p = JSON.parse(readFileSync(path.join(import.meta.dirname, '../../profiles/smollm2-135m-instruct.json'), 'utf8'));
    p.srh.ranking = p.srh.ranking.map((r) => [...r].reverse());
    p.layer_scores = [...p.layer_scores].reverse();
    alt = path.join(tmp.dir, 'alt.json');
    writeFileSync(alt, JSON.stringify(p));
    server = await startServer(['-m', SMOL, '--kv-profiles', `alt=${alt}`]);
    ai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', timeout: 60000, maxRetries: 0 });
  });
  after(async () => {
    await server?.stop();
    tmp?.remove();
  });

  test('kv.profile picks one of --kv-profiles: equals run --kv-profile; the response names it', async () => {
    // Budget 40, window 4 on the story: the two profiles answer differently.
    const kv = { method: 'compresskv', budget: 40, window: 4 };
    const req = { model: 'm', prompt: story, max_tokens: 16, temperature: 0, ignore_eos: true };
    const [named, own, refAlt, refOwn] = await Promise.all([
      ai.completions.create({ ...req, kv: { ...kv, profile: 'alt' } }),
      ai.completions.create({ ...req, kv }),
      runReference({ model: SMOL, prompt: story, n: 16, kv: [...runFlags(kv), '--kv-profile', alt], extra: ['--ignore-eos'] }),
      runReference({ model: SMOL, prompt: story, n: 16, kv: runFlags(kv), extra: ['--ignore-eos'] }),
    ]);
    assert.notEqual(refAlt.text, refOwn.text, 'the test needs profiles that answer differently');
    assert.equal(named.choices[0].text, refAlt.text);
    assert.equal(own.choices[0].text, refOwn.text);
    assert.equal(named.kv.profile, 'alt');
    assert.equal(own.kv.profile, 'default');
    const snap = await ai.completions.create({ model: 'm', prompt, max_tokens: 1, kv: { method: 'snapkv', budget: 48 } });
    assert.equal(snap.kv.profile, null);
    for (const [bad, why] of [[{ ...kv, profile: 'nope' }, /not one of this server's profiles \(alt, default/],
      [{ method: 'snapkv', budget: 48, profile: 'alt' }, /reads no profile/], [{ ...kv, profile: 3 }, /kv.profile/]]) {
      await assert.rejects(ai.completions.create({ model: 'm', prompt, max_tokens: 1, kv: bad }), (e) => {
        assert.equal(e.status, 400);
        assert.equal(e.param, 'kv.profile');
        assert.match(e.message, why);
        return true;
      });
    }
  });

  test('compresskv and adacompresskv budgets equal run', async () => {
    for (const kv of [{ method: 'compresskv', budget: 48 }, { method: 'adacompresskv', budget: 64, window: 8 }]) {
      const [r, ref] = await Promise.all([
        ai.completions.create({ model: 'm', prompt, max_tokens: N, temperature: 0, kv }),
        runReference({ model: SMOL, prompt, n: N, kv: runFlags(kv) }),
      ]);
      assert.equal(r.choices[0].text, ref.text, `kv ${JSON.stringify(kv)}`);
      assert.equal(r.usage.completion_tokens, ref.generatedTokens);
      assert.ok(r.kv.kv_bytes < r.kv.full_kv_bytes);
    }
  });

  test('window_at user on a chat equals run --chat --kv-window-at user', async () => {
    const messages = [{ role: 'user', content: prompt }];
    for (const kv of [{ method: 'snapkv', budget: 48, window_at: 'user' }, { method: 'compresskv', budget: 48, window_at: 'user' }]) {
      const [r, ref] = await Promise.all([
        ai.chat.completions.create({ model: 'm', messages, max_tokens: N, temperature: 0, kv }),
        runReference({ model: SMOL, prompt, n: N, chat: true, kv: runFlags(kv) }),
      ]);
      assert.equal(r.choices[0].message.content, ref.text, `kv ${JSON.stringify(kv)}`);
    }
  });

  test('a long prompt read (sliced) while another request decodes: both equal run', async () => {
    const long = `${Array.from({ length: 12 }, (_, i) => `Part ${i + 1}. ${story}`).join(' ')} Question: who helped Lily? Answer:`;
    const kv = { method: 'snapkv', budget: 64 };
    const [refA, refB] = [await runReference({ model: SMOL, prompt: story, n: 48, extra: ['--ignore-eos'] }),
      await runReference({ model: SMOL, prompt: long, n: N, kv: runFlags(kv) })];
    assert.ok(refB.promptTokens > 1000, `long prompt of ${refB.promptTokens} tokens`);
    const a = await ai.completions.create({ model: 'm', prompt: story, max_tokens: 48, temperature: 0, ignore_eos: true,
      stream: true });
    let textA = '';
    let b = null;
    for await (const c of a) {
      textA += c.choices?.[0]?.text ?? '';
      if (!b) b = ai.completions.create({ model: 'm', prompt: long, max_tokens: N, temperature: 0, kv });  // once A decodes
    }
    const rb = await b;
    assert.equal(textA, refA.text);
    assert.equal(rb.choices[0].text, refB.text);
    assert.equal(rb.usage.prompt_tokens, refB.promptTokens);
  });

  test('chat with a kv method equals run --chat with its flags', async () => {
    const kv = { method: 'snapkv', budget: 32, window: 8 };
    const q = `${story} Who helped Lily?`;
    const [r, ref] = await Promise.all([
      ai.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: q }], max_tokens: N, temperature: 0, kv }),
      runReference({ model: SMOL, prompt: q, n: N, chat: true, kv: runFlags(kv) }),
    ]);
    assert.equal(r.choices[0].message.content, ref.text);
    assert.equal(r.kv.method, 'snapkv');
    assert.equal(r.kv.budget, 32);
  });
});

// The official OpenAI Node client against `compresskv serve`: completions
// (stories260K) and chat completions (SmolLM2), streaming and not, equal to
// `compresskv run` with the same settings; usage counts; models, health.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, runReference, tokenize, http, metrics, STORIES, SMOL } from './lib.mjs';

const client = (server, extra = {}) =>
  new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', timeout: 60000, maxRetries: 0, ...extra });

async function collectCompletion(stream) {
  let text = '';
  let finish = null;
  let usage = null;
  let kv = null;
  let chunks = 0;
  for await (const c of stream) {
    assert.equal(c.object, 'text_completion');
    if (c.usage) usage = c.usage;
    if (c.kv) kv = c.kv;
    if (!c.choices || c.choices.length === 0) continue;
    chunks++;
    text += c.choices[0].text ?? '';
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  return { text, finish, usage, kv, chunks };
}

describe('completions on stories260K', () => {
  let server;
  let ai;
  const prompt = 'Once upon a time';
  const N = 24;
  let ref;
  before(async () => {
    [server, ref] = await Promise.all([startServer(['-m', STORIES]), runReference({ model: STORIES, prompt, n: N })]);
    ai = client(server);
  });
  after(async () => { await server?.stop(); });

  test('non-streaming completion equals run --temp 0 -n N', async () => {
    const r = await ai.completions.create({ model: 'stories', prompt, max_tokens: N, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, 'stories');
    assert.equal(typeof r.id, 'string');
    assert.equal(typeof r.created, 'number');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(r.choices[0].text, ref.text);
    assert.equal(r.usage.prompt_tokens, ref.promptTokens);
    assert.equal(r.usage.completion_tokens, ref.generatedTokens);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.equal(r.choices[0].finish_reason, r.usage.completion_tokens === N ? 'length' : 'stop');
    // Full cache by default: it holds what FullKV holds.
    assert.equal(r.kv.method, 'full');
    assert.ok(r.kv.kv_bytes > 0);
    assert.equal(r.kv.kv_bytes, r.kv.full_kv_bytes);
  });

  test('streaming completion equals run, usage chunk last, then [DONE]', async () => {
    const s = await ai.completions.create({ model: 'stories', prompt, max_tokens: N, temperature: 0, stream: true,
      stream_options: { include_usage: true } });
    const got = await collectCompletion(s);
    assert.equal(got.text, ref.text);
    assert.ok(got.usage, 'no usage chunk with include_usage');
    assert.equal(got.usage.prompt_tokens, ref.promptTokens);
    assert.equal(got.usage.completion_tokens, ref.generatedTokens);
    assert.equal(got.usage.total_tokens, got.usage.prompt_tokens + got.usage.completion_tokens);
    assert.equal(got.finish, got.usage.completion_tokens === N ? 'length' : 'stop');
    assert.ok(got.kv && got.kv.kv_bytes > 0, 'final chunk carries kv');
    assert.ok(got.chunks >= 2, `streamed in ${got.chunks} chunks`);
  });

  test('raw SSE framing: data: lines, one per event, ending in data: [DONE]', async () => {
    const r = await http(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: 4, temperature: 0, stream: true }) });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /text\/event-stream/);
    const events = r.text.split('\n\n').filter((e) => e.length);
    assert.ok(events.every((e) => e.startsWith('data: ')), r.text);
    assert.equal(events.at(-1), 'data: [DONE]');
    for (const e of events.slice(0, -1)) JSON.parse(e.slice(6));
  });

  test('ignore_eos generates exactly max_tokens; a token-id prompt equals its text', async () => {
    // The text's ids after BOS (1 in llama2.c vocabularies), as run reads it; the request's ids are taken as they are.
    const ids = [1, ...(await tokenize(STORIES, prompt))];
    const n = 40;
    const [byText, byIds, refEos] = await Promise.all([
      ai.completions.create({ prompt, max_tokens: n, temperature: 0, ignore_eos: true, model: 'm' }),
      ai.completions.create({ prompt: ids, max_tokens: n, temperature: 0, ignore_eos: true, model: 'm' }),
      runReference({ model: STORIES, prompt, n, extra: ['--ignore-eos'] }),
    ]);
    assert.equal(byText.usage.completion_tokens, n);
    assert.equal(byText.choices[0].finish_reason, 'length');
    assert.equal(byText.choices[0].text, refEos.text);
    assert.equal(ids.length, refEos.promptTokens);
    assert.equal(byText.usage.prompt_tokens, ids.length);
    assert.equal(byIds.usage.prompt_tokens, ids.length);
    assert.equal(byIds.choices[0].text, refEos.text);
  });

  test('stop strings cut the answer as run --stop does', async () => {
    // A stop string taken from inside the reference answer.
    const half = Math.floor(ref.text.length / 2);
    const stop = ref.text.slice(half, half + 3);
    const [r, want] = await Promise.all([
      ai.completions.create({ prompt, max_tokens: N, temperature: 0, stop: [stop, 'zzzq'], model: 'm' }),
      runReference({ model: STORIES, prompt, n: N, extra: ['--stop', stop, '--stop', 'zzzq'] }),
    ]);
    assert.equal(r.choices[0].text, want.text);
    assert.ok(!r.choices[0].text.includes(stop));
    assert.equal(r.choices[0].finish_reason, 'stop');
  });

  test('seeded sampling repeats with the same seed', async () => {
    const req = { prompt, max_tokens: 16, temperature: 0.9, top_p: 0.9, seed: 1234, model: 'm' };
    const [a, b] = await Promise.all([ai.completions.create(req), ai.completions.create(req)]);
    assert.equal(a.choices[0].text, b.choices[0].text);
  });

  test('GET /v1/models, /health', async () => {
    const models = await ai.models.list();
    const data = models.data;
    assert.equal(data.length, 1);
    assert.equal(data[0].object, 'model');
    assert.equal(data[0].owned_by, 'compresskv');
    assert.equal(data[0].id, 'stories260K');
    const h = await http(`${server.url}/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(h.json, { status: 'ok' });
  });
});

describe('chat completions on SmolLM2-135M-Instruct', () => {
  let server;
  let ai;
  const question = 'What is the capital of France?';
  const N = 12;
  let ref;
  before(async () => {
    [server, ref] = await Promise.all([
      startServer(['-m', SMOL, '--alias', 'smol']),
      runReference({ model: SMOL, prompt: question, n: N, chat: true }),
    ]);
    ai = client(server);
  });
  after(async () => { await server?.stop(); });

  test('non-streaming chat equals run --chat; token counters move by its usage', async () => {
    const m0 = await metrics(server);
    const r = await ai.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: question }],
      max_tokens: N, temperature: 0 });
    const m1 = await metrics(server);
    assert.equal(m1.get('ckv_prompt_tokens_total') - m0.get('ckv_prompt_tokens_total'), r.usage.prompt_tokens);
    assert.equal(m1.get('ckv_generated_tokens_total') - m0.get('ckv_generated_tokens_total'), r.usage.completion_tokens);
    assert.equal(m1.get('ckv_time_to_first_token_seconds_count') - m0.get('ckv_time_to_first_token_seconds_count'), 1);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, 'smol');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, ref.text);
    assert.equal(r.usage.prompt_tokens, ref.promptTokens);
    assert.equal(r.usage.completion_tokens, ref.generatedTokens);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.equal(r.choices[0].finish_reason, r.usage.completion_tokens === N ? 'length' : 'stop');
  });

  test('streaming chat: role first, content deltas equal run --chat, usage', async () => {
    const s = await ai.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: question }],
      max_tokens: N, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let first = null;
    let finish = null;
    let usage = null;
    for await (const c of s) {
      assert.equal(c.object, 'chat.completion.chunk');
      if (c.usage) usage = c.usage;
      if (!c.choices?.length) continue;
      if (first === null) first = c.choices[0].delta;
      text += c.choices[0].delta?.content ?? '';
      if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
    }
    assert.equal(first.role, 'assistant');
    assert.equal(text, ref.text);
    assert.ok(usage);
    assert.equal(usage.prompt_tokens, ref.promptTokens);
    assert.equal(usage.completion_tokens, ref.generatedTokens);
    assert.equal(finish, usage.completion_tokens === N ? 'length' : 'stop');
  });

  test('/v1/sequences and the gauges show a running stream, then nothing', async () => {
    const ac = new AbortController();
    const guard = setTimeout(() => ac.abort(), 60000);
    const s = await ai.chat.completions.create({ model: 'smol', messages: [{ role: 'user', content: 'Tell me a story.' }],
      max_tokens: 48, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } },
    { signal: ac.signal });
    let seen = null;
    let gauges = null;
    let usage = null;
    for await (const c of s) {
      if (c.usage) usage = c.usage;
      if (!seen && c.choices?.[0]?.delta?.content) {
        const q = await http(`${server.url}/v1/sequences`);
        assert.equal(q.status, 200);
        seen = q.json;
        gauges = await metrics(server);
      }
    }
    clearTimeout(guard);
    assert.ok(seen, 'no content chunk');
    assert.equal(seen.sequences.length, 1, JSON.stringify(seen));
    const q = seen.sequences[0];
    for (const k of ['id', 'state', 'method', 'budget', 'prompt_tokens', 'generated_tokens', 'kv_bytes', 'full_kv_bytes'])
      assert.ok(k in q, `sequence lacks ${k}: ${JSON.stringify(q)}`);
    assert.equal(q.state, 'decode');
    assert.equal(q.method, 'full');
    assert.equal(q.prompt_tokens, usage.prompt_tokens);
    assert.ok(q.generated_tokens >= 1 && q.generated_tokens <= 48);
    assert.ok(q.kv_bytes > 0 && q.kv_bytes <= q.full_kv_bytes);
    assert.ok(seen.kv_bytes >= q.kv_bytes && seen.kv_full_bytes >= seen.kv_bytes);
    assert.ok(seen.kv_memory_limit_bytes > 0);
    assert.equal(gauges.get('ckv_running_sequences'), 1);
    assert.ok(gauges.get('ckv_kv_bytes') > 0);
    const after = await http(`${server.url}/v1/sequences`);
    assert.deepEqual(after.json.sequences, []);
    assert.equal(after.json.kv_bytes, 0);
  });

  test('content as an array of text parts, max_completion_tokens', async () => {
    const r = await ai.chat.completions.create({ model: 'smol',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is the capital ' }, { type: 'text', text: 'of France?' }] }],
      max_completion_tokens: N, temperature: 0 });
    assert.equal(r.choices[0].message.content, ref.text);
  });

  test('a system message equals run --chat --system', async () => {
    const system = 'You answer in one word.';
    const [r, want] = await Promise.all([
      ai.chat.completions.create({ model: 'smol', max_tokens: 8, temperature: 0,
        messages: [{ role: 'system', content: system }, { role: 'user', content: question }] }),
      runReference({ model: SMOL, prompt: question, n: 8, chat: true, extra: ['--system', system] }),
    ]);
    assert.equal(r.choices[0].message.content, want.text);
  });
});

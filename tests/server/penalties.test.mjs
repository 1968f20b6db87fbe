// Repetition penalties (frequency_penalty, presence_penalty: OpenAI's;
// repetition_penalty: vLLM's) and logit_bias through the OpenAI client:
// greedy answers equal `compresskv run --temp 0` with --frequency-penalty /
// --presence-penalty / --repeat-penalty / --logit-bias, streamed or not, and
// they change what stories260K (which repeats itself when greedy) writes.
// Parts of the API the server lacks (echo, best_of, suffix, JSON mode,
// tools) are a 400 naming the field, not an answer that ignores them.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, runReference, postJson, assertErrorBody, STORIES } from './lib.mjs';

const prompt = 'Once upon a time, there was a little dog named Max. Max liked to';
const N = 48;
const cases = [
  { body: {}, flags: [] },
  { body: { frequency_penalty: 1.2 }, flags: ['--frequency-penalty', '1.2'] },
  { body: { presence_penalty: 1.5 }, flags: ['--presence-penalty', '1.5'] },
  { body: { repetition_penalty: 1.4 }, flags: ['--repeat-penalty', '1.4'] },
  { body: { frequency_penalty: -0.5, presence_penalty: 0.7, repetition_penalty: 0.9 },
    flags: ['--frequency-penalty', '-0.5', '--presence-penalty', '0.7', '--repeat-penalty', '0.9'] },
  { body: { logit_bias: { 300: 100 } }, flags: ['--logit-bias', '300+100'] },
  { body: { logit_bias: { 300: 6, 301: -5.5 }, presence_penalty: 0.5 },
    flags: ['--logit-bias', '300+6', '--logit-bias', '301-5.5', '--presence-penalty', '0.5'] },
];

describe('repetition penalties and logit_bias on stories260K', () => {
  let server;
  let ai;
  const refs = [];
  before(async () => {
    server = await startServer(['-m', STORIES]);
    ai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', timeout: 60000, maxRetries: 0 });
    for (const c of cases) refs.push(await runReference({ model: STORIES, prompt, n: N, extra: ['--ignore-eos', ...c.flags] }));
  });
  after(async () => { await server?.stop(); });

  test('each penalty equals run with the same flags, streamed and not', async () => {
    for (const [i, c] of cases.entries()) {
      const what = JSON.stringify(c.body);
      const r = await ai.completions.create({ model: 'm', prompt, max_tokens: N, temperature: 0, ignore_eos: true, ...c.body });
      assert.equal(r.choices[0].text, refs[i].text, what);
      const stream = await ai.completions.create({ model: 'm', prompt, max_tokens: N, temperature: 0, ignore_eos: true,
        stream: true, ...c.body });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
      assert.equal(text, refs[i].text, `${what}, streamed`);
    }
    // They do something: each positive penalty, and each bias, changes the greedy story.
    for (let i = 1; i < cases.length; ++i) {
      if (i !== 4) assert.notEqual(refs[i].text, refs[0].text, JSON.stringify(cases[i].body));
    }
  });

  test('values out of range, and what the server cannot do, are a 400 naming the field', async () => {
    for (const [param, value] of [['frequency_penalty', 2.5], ['presence_penalty', -3], ['repetition_penalty', 0],
      ['frequency_penalty', '1'], ['logit_bias', { abc: 1 }], ['logit_bias', { '-1': 1 }], ['logit_bias', { 5: 200 }],
      ['logit_bias', { 999999: 1 }], ['logit_bias', [1, 2]], ['echo', true], ['best_of', 3], ['suffix', 'x'],
      ['response_format', { type: 'json_object' }], ['tools', [{ type: 'function', function: { name: 'f' } }]],
      ['tool_choice', 'required']]) {
      const r = await postJson(`${server.url}/v1/completions`, { prompt, max_tokens: 2, [param]: value });
      assertErrorBody(assert, r, { status: 400, type: 'invalid_request_error', param });
    }
    // What is the default passes: text responses, no tools, no echo.
    const ok = await postJson(`${server.url}/v1/completions`, { prompt, max_tokens: 2, echo: false, best_of: 1,
      response_format: { type: 'text' }, tools: [], tool_choice: 'none', logit_bias: {} });
    assert.equal(ok.status, 200, ok.text);
  });
});

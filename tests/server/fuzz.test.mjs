// A seeded fuzz of malformed requests (CKV_FUZZ_SEED, CKV_FUZZ_COUNT): bad
// JSON, wrong types, missing fields, huge numbers, unknown routes, wrong
// methods, oversize bodies, bad auth. Each must get its expected 4xx with an
// OpenAI error object; the server stays alive and a normal request still
// answers as `compresskv run` does; /metrics counts no 500.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import OpenAI from 'openai';
import { startServer, runReference, http, metrics, rng, assertErrorBody, STORIES } from './lib.mjs';

const KEY = 'sk-test-7f3a';
const MAX_BODY = 4096;
const SEED = Number(process.env.CKV_FUZZ_SEED || 11);
const COUNT = Number(process.env.CKV_FUZZ_COUNT || 400);
const auth = { authorization: `Bearer ${KEY}` };

// Wrong-typed or out-of-range values per field (each must be a 400 naming the field).
const badValues = {
  model: [5, {}, [], true],
  prompt: [{}, true, 3.5, [1.5], ['a', 2], [true], [{}], [-1], [1e9]],
  max_tokens: ['10', true, 1.5, [], {}, -1, -1000, 1e12, 2 ** 53, 1e308],
  max_completion_tokens: ['10', -5, 2.5, 1e15],
  temperature: ['0', [], {}, -0.5, true, -1e9],
  top_p: ['1', -0.1, 1.5, [], {}],
  frequency_penalty: ['1', -2.5, 2.01, [], {}, true, 1e9],
  presence_penalty: ['0', -3, 5, [], {}],
  repetition_penalty: ['1.2', 0, -1, 11, [], {}],
  seed: ['1', 1.5, {}, [], true],
  stop: [5, [1], {}, ['a', 'b', 'c', 'd', 'e'], [null], true],
  stream: ['true', 1, {}, []],
  stream_options: ['x', 5, []],
  n: [2, 0, -1, '1', 1.5, 100],
  ignore_eos: ['yes', 1, {}],
  kv: ['snapkv', 5, [], true],
  'kv.method': [5, 'nosuchmethod', '', {}, []],
  'kv.budget': ['32', -1, 0, 1.5, {}, 2 ** 40, { method: 'snapkv', budget: 8, window: 8 }, { method: 'snapkv', budget: 4, window: 8 }],
  'kv.window': ['8', 0, -3, 1.5, {}],
  messages: ['hi', {}, [], 5, [{ role: 'user' }], [{ role: 'wizard', content: 'x' }], [{ role: 'user', content: 5 }],
    [{ content: 'x' }], [{ role: 'user', content: [{ type: 'text' }] }], [{ role: 'user', content: [{ type: 'text', text: 5 }] }],
    ['user'], [null], [{ role: 5, content: 'x' }]],
};
const chatOnly = new Set(['messages', 'max_completion_tokens']);
const completionOnly = new Set(['prompt']);

function validBody(route) {
  return route === 'chat'
    ? { model: 'm', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, temperature: 0 }
    : { model: 'm', prompt: 'Once', max_tokens: 2, temperature: 0 };
}
const routePath = (route) => (route === 'chat' ? '/v1/chat/completions' : '/v1/completions');

// One generated case: {what, method, path, headers, body (string|Buffer), status, param?}.
function generate(r) {
  const kind = r.pick(['json', 'json', 'type', 'type', 'type', 'type', 'missing', 'route', 'method', 'oversize', 'auth', 'long']);
  const route = r.pick(['chat', 'completion']);
  const base = { method: 'POST', path: routePath(route), headers: { 'content-type': 'application/json', ...auth } };
  if (kind === 'json') {
    const good = JSON.stringify(validBody(route));
    const variants = [
      () => good.slice(0, r.int(0, good.length - 1)),
      () => good.replace(/"/, "'"),
      () => good.slice(0, -1) + ',}',
      () => `${good}${good}`,
      () => Buffer.from(Array.from({ length: r.int(1, 64) }, () => r.int(0, 255))),
      () => r.pick(['null', '[]', '42', '"str"', 'true', '{"a":', '\u0000', 'NaN', '{"prompt": NaN}', '[{"prompt":"x"}]']),
      () => good.replace(':', ''),
    ];
    return { ...base, what: `bad JSON (${route})`, body: r.pick(variants)(), status: 400 };
  }
  if (kind === 'type') {
    let fields = Object.keys(badValues).filter((f) => !(route === 'chat' ? completionOnly : chatOnly).has(f));
    const field = r.pick(fields);
    const value = r.pick(badValues[field]);
    const body = validBody(route);
    let param = field;
    if (field.startsWith('kv.')) {
      const sub = field.slice(3);
      if (value && typeof value === 'object' && !Array.isArray(value) && 'method' in value) body.kv = value;
      else body.kv = { method: 'snapkv', budget: 32, [sub]: value };
      if (sub === 'budget' && body.kv.window === undefined) body.kv.window = 8;
    } else {
      body[field] = value;
    }
    return { ...base, what: `${field}=${JSON.stringify(value)} (${route})`, body: JSON.stringify(body), status: 400, param };
  }
  if (kind === 'missing') {
    const body = validBody(route);
    const field = route === 'chat' ? 'messages' : 'prompt';
    delete body[field];
    return { ...base, what: `no ${field}`, body: JSON.stringify(body), status: 400, param: field };
  }
  if (kind === 'long') {
    // Past stories260K's 512-token context.
    const body = validBody('completion');
    body.prompt = Array.from({ length: r.int(513, 900) }, () => r.int(1, 500));
    return { ...base, path: '/v1/completions', what: `prompt of ${body.prompt.length} ids`, body: JSON.stringify(body),
      status: 400, param: 'prompt', code: 'context_length_exceeded' };
  }
  if (kind === 'route') {
    const p = r.pick(['/v1/nope', '/v2/chat/completions', '/v1/completions/x', '/metricsx', '/v1', '/v1/models/x/y',
      `/${'a'.repeat(r.int(100, 2000))}`, '/v1/chat/completion', '/%2e%2e/etc/passwd', '/v1/embeddings']);
    const m = r.pick(['GET', 'POST']);
    return { ...base, method: m, path: p, what: `unknown route ${m} ${p.slice(0, 40)}`,
      body: m === 'POST' ? JSON.stringify(validBody(route)) : undefined, status: 404 };
  }
  if (kind === 'method') {
    const [m, p] = r.pick([['GET', '/v1/chat/completions'], ['GET', '/v1/completions'], ['PUT', '/v1/completions'],
      ['DELETE', '/v1/models'], ['POST', '/v1/models'], ['POST', '/health'], ['PATCH', '/metrics'],
      ['POST', '/v1/sequences'], ['DELETE', '/v1/chat/completions'], ['PUT', '/metrics']]);
    return { ...base, method: m, path: p, what: `${m} ${p}`, body: m === 'GET' ? undefined : '{}', status: 405 };
  }
  if (kind === 'oversize') {
    const body = validBody(route);
    const size = r.int(MAX_BODY + 1, MAX_BODY * 64);
    if (route === 'chat') body.messages[0].content = 'a'.repeat(size);
    else body.prompt = 'a'.repeat(size);
    return { ...base, what: `body of ${size} bytes`, body: JSON.stringify(body), status: 413 };
  }
  // auth
  const h = r.pick([{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${KEY}` }, { authorization: 'Bearer' },
    { authorization: `Bearer ${KEY}x` }, { authorization: `Bearer ${KEY.slice(0, -1)}` }, { authorization: '' }]);
  const [m, p] = r.pick([['POST', base.path], ['GET', '/v1/models'], ['GET', '/metrics'], ['GET', '/v1/sequences']]);
  return { method: m, path: p, headers: { 'content-type': 'application/json', ...h }, what: `auth ${JSON.stringify(h)} ${m} ${p}`,
    body: m === 'POST' ? JSON.stringify(validBody(route)) : undefined, status: 401, type: 'authentication_error' };
}

// A raw request over a socket (for bytes fetch will not send); resolves when the server closes or after 3 s.
function rawRequest(port, bytes) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => { s.destroy(); resolve(got); };
    const t = setTimeout(done, 3000);
    s.on('data', (d) => { got += d.toString('latin1'); });
    s.on('error', () => { clearTimeout(t); done(); });
    s.on('close', () => { clearTimeout(t); resolve(got); });
    s.end(bytes);
  });
}

describe(`fuzz of malformed requests (seed ${SEED}, ${COUNT} cases)`, () => {
  let server;
  let ref;
  before(async () => {
    [server, ref] = await Promise.all([
      // A chat template for stories260K (it has none), so chat requests get as far as their kv settings.
      startServer(['-m', STORIES, '--chat-template', 'chatml', '--api-key', KEY, '--max-body', String(MAX_BODY)]),
      runReference({ model: STORIES, prompt: 'Once upon a time', n: 16 }),
    ]);
  });
  after(async () => { await server?.stop(); });

  test('every malformed request gets its 4xx and error object; the server lives on', async () => {
    const r = rng(SEED);
    const cases = Array.from({ length: COUNT }, () => generate(r));
    const failures = [];
    const byStatus = {};
    let i = 0;
    const worker = async () => {
      while (i < cases.length) {
        const c = cases[i++];
        let res;
        try {
          res = await http(`${server.url}${c.path}`, { method: c.method, headers: c.headers, body: c.body, timeoutMs: 15000 });
        } catch (e) {
          failures.push(`${c.what}: request failed: ${e.message}`);
          continue;
        }
        byStatus[res.status] = (byStatus[res.status] || 0) + 1;
        try {
          assertErrorBody(assert, res, { status: c.status, type: c.type });
          const p = res.json.error.param;
          if (c.param) assert.ok(p === c.param || (p && (p.startsWith(`${c.param}.`) || p.startsWith(`${c.param}[`))),
            `param ${p}, want ${c.param}`);
          if (c.code) assert.equal(res.json.error.code, c.code);
        } catch (e) {
          failures.push(`${c.what}: want ${c.status}${c.param ? ` param ${c.param}` : ''}, got ${res.status} ${res.text.slice(0, 160)}` +
            ` (${e.message.split('\n')[0]})`);
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    // Bytes no HTTP client sends: the server answers 4xx or closes, and lives.
    for (const raw of ['GARBAGE\r\n\r\n', 'POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"pro',
      `GET /${'x'.repeat(20000)} HTTP/1.1\r\nHost: a\r\n\r\n`, 'POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n',
      'POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']) {
      const got = await rawRequest(server.port, raw);
      const st = Number((got.match(/^HTTP\/1\.[01] (\d{3})/) || [])[1] || 0);
      if (st >= 500) failures.push(`raw ${JSON.stringify(raw.slice(0, 40))}: got ${st}`);
    }
    const summary = `status counts ${JSON.stringify(byStatus)}; ${failures.length} failures:\n${failures.slice(0, 30).join('\n')}`;
    console.log(`fuzz: ${COUNT} cases, seed ${SEED}: ${JSON.stringify(byStatus)}`);
    assert.equal(server.exited(), null, `server exited: ${JSON.stringify(server.exited())}\n${server.stderr().slice(-2000)}`);
    assert.equal(failures.length, 0, summary);
    for (const s of Object.keys(byStatus)) assert.ok(Number(s) >= 400 && Number(s) < 500, summary);
  });

  test('after the fuzz: /health without a key, a normal request equals run, no 500 counted', async () => {
    const h = await http(`${server.url}/health`);
    assert.equal(h.status, 200);
    const page = await http(`${server.url}/`);
    assert.equal(page.status, 200);
    const res = await http(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ model: 'm', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 }) });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].text, ref.text);
    const m = await metrics(server, auth);
    assert.ok(!(m.get('ckv_requests_total{status="500"}') > 0), 'a 500 was counted');
    assert.ok(m.get('ckv_requests_total{status="400"}') > 0, '400s are counted');
    assert.ok(m.get('ckv_requests_total{status="401"}') > 0, '401s are counted');
    assert.ok(m.get('ckv_requests_total{status="200"}') >= 1, '200s are counted');
    for (const st of [404, 405, 413]) assert.ok(m.get(`ckv_requests_total{status="${st}"}`) > 0, `${st}s are counted`);
    assert.equal(m.get('ckv_kv_bytes'), 0, 'no KV held after the fuzz');
  });

  test('the OpenAI client with the key answers; with another key it gets AuthenticationError', async () => {
    const good = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, timeout: 30000, maxRetries: 0 });
    const r = await good.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 16, temperature: 0, n: 1 });
    assert.equal(r.choices[0].text, ref.text);
    const bad = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-wrong', timeout: 30000, maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  });
});

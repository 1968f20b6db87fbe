// The built-in web page in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core; never a downloaded browser): type a message, pick the
// method and budget, send; the streamed answer appears in #answer and equals
// the API's greedy answer to the same request; #sequences shows the running
// sequence (.seq). Screenshot at $SCREENSHOT (default build/server-web.png).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, postJson, tempDir, ROOT, SMOL } from './lib.mjs';

const CHROMIUM = process.env.CKV_CHROMIUM || '/usr/bin/chromium';
const SHOT = path.resolve(ROOT, process.env.SCREENSHOT || 'build/server-web.png');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const MAX_TOKENS = 96;  // long enough on SmolLM2 (CPU) for the sequence view to poll it while it runs

describe('web page in headless Chromium', () => {
  let server;
  let ctx;
  let profile;
  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/install_deps.sh server-tests`);
    server = await startServer(['-m', SMOL]);
    profile = tempDir('ckv-chromium-');
    ctx = await chromium.launchPersistentContext(profile.dir, { executablePath: CHROMIUM, headless: true, args: FLAGS,
      viewport: { width: 1200, height: 900 }, timeout: 60000 });
  });
  after(async () => {
    await ctx?.close().catch(() => {});
    profile?.remove();
    await server?.stop();
  });

  test('a typed message streams its answer; the KV view shows the sequence', async () => {
    const page = await ctx.newPage();
    page.setDefaultTimeout(30000);
    const foreign = [];
    page.on('request', (req) => { if (!req.url().startsWith(server.url)) foreign.push(req.url()); });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // The page's own request, made greedy and a fixed length so it can be replayed through the API.
    let sent = null;
    await page.route('**/v1/chat/completions', async (route) => {
      const body = JSON.parse(route.request().postData() || '{}');
      sent = { ...body, temperature: 0, max_tokens: MAX_TOKENS, ignore_eos: true };
      delete sent.max_completion_tokens;
      await route.continue({ postData: JSON.stringify(sent) });
    });
    await page.goto(server.url + '/', { waitUntil: 'load' });
    const question = 'Write a short story about a cat who finds a hat. ' +
      'The cat lives in a small house by the sea with an old fisherman who loves it.';
    await page.fill('#prompt', question);
    await page.selectOption('#method', 'snapkv');
    await page.fill('#budget', '24');
    await page.click('#send');
    // While it runs: the sequence's row, then some streamed text.
    await page.waitForSelector('#sequences .seq', { state: 'visible', timeout: 30000 });
    await page.waitForFunction(() => document.querySelector('#answer')?.textContent.trim().length > 10, null, { timeout: 30000 });
    const rows = await page.locator('#sequences .seq').count();
    assert.ok(rows >= 1);
    const rowText = await page.locator('#sequences .seq').first().textContent();
    mkdirSync(path.dirname(SHOT), { recursive: true });
    await page.screenshot({ path: SHOT, fullPage: true });
    console.log(`web: screenshot while streaming at ${SHOT}; sequence row: ${rowText.replace(/\s+/g, ' ').trim()}`);
    assert.ok(sent, 'the page sent no /v1/chat/completions request');
    assert.equal(sent.stream, true, 'the page streams');
    assert.equal(sent.messages.at(-1).role, 'user');
    assert.equal(sent.messages.at(-1).content, question);
    assert.equal(sent.kv?.method, 'snapkv');
    assert.equal(Number(sent.kv?.budget), 24);
    // The greedy API answer to the same request.
    const api = await postJson(`${server.url}/v1/chat/completions`, { ...sent, stream: false }, { timeoutMs: 120000 });
    assert.equal(api.status, 200, api.text);
    const want = api.json.choices[0].message.content;
    // Compared with whitespace collapsed: the page may render newlines as it likes.
    const norm = (s) => s.replace(/\s+/g, ' ').trim();
    await page.waitForFunction((w) => document.querySelector('#answer')?.textContent.replace(/\s+/g, ' ').trim() === w,
      norm(want), { timeout: 60000 }).catch(() => {});
    assert.equal(norm(await page.locator('#answer').textContent()), norm(want));
    await page.waitForSelector('#sequences .seq', { state: 'detached', timeout: 15000 });
    await page.screenshot({ path: SHOT.replace(/\.png$/, '-done.png'), fullPage: true });
    assert.deepEqual(foreign, [], 'the page loads nothing from elsewhere');
    assert.deepEqual(errors, [], 'page errors');
  });
});

// Runs the server tests (node --test, one file at a time: the machine has 2
// cores). Exit 77 (ctest's SKIP_RETURN_CODE) with a message when the binary
// has no `serve` subcommand; a missing npm install or browser is a failure.
//   node tests/server/run.mjs [FILE.test.mjs ...]      (CKV_BINARY=path to compresskv)
import { spawnSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, ROOT } from './lib.mjs';

const here = path.join(ROOT, 'tests/server');
if (!existsSync(BIN)) {
  console.log(`SKIP: server tests: ${BIN} was not built (set CKV_BINARY to the compresskv binary)`);
  process.exit(77);
}
const help = spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8', timeout: 20000 });
if (help.status !== 0) {
  console.log(`SKIP: server tests: ${BIN} has no serve subcommand (\`compresskv serve --help\` exited ${help.status}: ` +
              `${(help.stderr || '').trim().split('\n')[0]})`);
  process.exit(77);
}
for (const pkg of ['openai', 'playwright-core']) {
  if (!existsSync(path.join(here, 'node_modules', pkg))) {
    console.error(`FAIL: tests/server/node_modules/${pkg} is missing: run scripts/install_deps.sh server-tests`);
    process.exit(1);
  }
}
const files = process.argv.slice(2).length
  ? process.argv.slice(2).map((f) => path.resolve(f))
  : readdirSync(here).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => path.join(here, f));
const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=180000', ...files],
  { stdio: 'inherit', cwd: ROOT, env: { ...process.env, CKV_BINARY: BIN } });
const killer = setTimeout(() => { console.error('FAIL: server tests ran past 10 minutes'); child.kill('SIGKILL'); }, 600000);
child.on('exit', (code, signal) => {
  clearTimeout(killer);
  process.exit(code ?? (signal ? 1 : 0));
});

// Starts the cloudhis binary on the demo tenant (embedded default: SQLite, in-process bus), on a
// free port with its own data directory, and stops it afterwards.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.unref();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/// `historyMonths`: the demo's months of history (`serve --demo --history-months`); the journeys
/// count from an empty community, so none unless asked.
export async function startServer({ historyMonths = 0 } = {}) {
  const bin = process.env.CLOUDHIS_BIN ?? join(root, 'target', 'debug', 'cloudhis');
  const dir = mkdtempSync(join(tmpdir(), 'cloudhis-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ['serve', '--demo', '--history-months', String(historyMonths)], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      CLOUDHIS_BIND: `127.0.0.1:${port}`,
      CLOUDHIS_DATA_DIR: join(dir, 'data'),
      CLOUDHIS_SECRET: 'e2e-secret-e2e-secret-e2e-secret-0123456789',
      CLOUDHIS_LOG_FORMAT: 'json',
      RUST_LOG: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`cloudhis exited ${child.exitCode}: ${stderr}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`cloudhis did not get ready: ${stderr}`);
    await new Promise((ok) => setTimeout(ok, 250));
  }
  return {
    base,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((ok) => (child.exitCode !== null ? ok() : child.on('exit', ok)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

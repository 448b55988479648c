// The main pages' weight and time to usable on a slow link (about 256 kbit/s, 100 ms latency),
// for docs/benchmarks.md. Run: cargo build && (cd e2e && node bench/weight.mjs)
import { baseline, kpisWhen, knownResident, login, call, upReferral } from '../lib/api.mjs';
import { launch, newPage } from '../lib/browser.mjs';
import { startServer } from '../lib/server.mjs';
import { measure } from '../lib/weight.mjs';

const server = await startServer();
const browser = await launch();
try {
  await baseline(server.base, 6);
  await knownResident(server.base);
  await kpisWhen(server.base, (k) => k.visits.value === 6);
  const open = await upReferral(server.base, 60, '测量用转诊');
  const doc = await login(server.base, 'village.doctor');
  const enc = await call(server.base, doc, 'POST', '/api/v1/encounters', {
    person_id: open.person_id, chief_complaint: '复诊', kind: 'outpatient',
  });

  const pages = {
    'village.doctor': ['/app/clinic', `/app/visits/${enc.id}`, '/app/followups', '/app/referrals?box=sent'],
    coordinator: ['/app/referrals', `/app/referrals/${open.id}`],
    bureau: ['/app/bureau'],
  };
  const rows = [];
  for (const [user, paths] of Object.entries(pages)) {
    const page = await newPage(browser);
    const login = await measure(page, `${server.base}/app/login`, { kbitPerSecond: 256, latencyMs: 100 });
    if (user === 'village.doctor') rows.push(['/app/login', login]);
    await page.getByLabel('用户名').fill(user);
    await page.getByLabel('密码').fill('Demo@2026');
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: '登录' }).click()]);
    for (const path of paths) {
      const cold = await measure(page, `${server.base}${path}`, { kbitPerSecond: 256, latencyMs: 100 });
      rows.push([path.replace(/[0-9a-f-]{36}/, '{id}'), cold]);
    }
    await page.context().close();
  }
  console.log('| page | transferred | time to usable at 256 kbit/s |');
  console.log('|---|---|---|');
  for (const [path, m] of rows) {
    console.log(`| \`${path}\` | ${(m.bytes / 1024).toFixed(1)} KB | ${(m.usableMs / 1000).toFixed(2)} s |`);
  }
} finally {
  await browser.close();
  await server.stop();
}

// The demo as a newcomer meets it (`serve --demo`, a year of history): the bureau's first view
// has a figure in every community-level tile and real charts, the clinic has overdue follow-ups,
// the county has referrals waiting; and every main page of each user is screenshot in both
// languages into e2e/artifacts/ (demo-<page>-<lang>.png).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { logIn, newPage, screenshot } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const world = setup(null, { historyMonths: 12 });

/// Screenshots of the page at `path` in Chinese and in English, back in Chinese after.
async function both(page, name, path) {
  for (const lang of ['zh-CN', 'en']) {
    await page.goto(`${world.server.base}/app/lang/${lang}?next=${encodeURIComponent(path)}`);
    assert.equal(await page.getAttribute('html', 'lang'), lang, `${name} in ${lang}`);
    await screenshot(page, `demo-${name}-${lang === 'en' ? 'en' : 'zh'}`);
  }
  await page.goto(`${world.server.base}/app/lang/zh-CN?next=${encodeURIComponent(path)}`);
}

test('the demo dashboard has a year behind it: no community-level tile is "<5"', async () => {
  const page = await newPage(world.browser);
  await logIn(page, world.server.base, 'bureau', /\/app\/bureau$/);
  const values = await page.locator('.tile .tile-value').allTextContents();
  assert.equal(values.length, 17);
  assert.deepEqual(values.filter((v) => v.trim() === '<5' || v.trim() === '-'), [], `tiles: ${values}`);
  assert.ok(Number(await page.locator('[data-kpi="visits"] .tile-value').textContent()) > 300);
  // A year of months on the visits chart, none suppressed in its data.
  const cells = await page.locator('#chart-visits table tbody td').allTextContents();
  assert.ok(cells.length >= 11 && cells.every((c) => Number(c) >= 5), `visits by month: ${cells}`);
  // The first level: the hospital on its own and the three townships, each with figures.
  assert.equal(await page.locator('#children tbody tr').count(), 4);
  await both(page, 'bureau', '/app/bureau');
});

test('every main page of the clinic and the county, in both languages', async () => {
  const doctor = await newPage(world.browser);
  await logIn(doctor, world.server.base, 'village.doctor', /\/app\/clinic$/);
  await both(doctor, 'clinic', '/app/clinic');
  await doctor.goto(`${world.server.base}/app/followups`);
  const overdue = Number(await doctor.locator('#count-overdue strong').first().textContent());
  assert.ok(overdue >= 1, 'the follow-up worklist has overdue patients');
  await both(doctor, 'followups', '/app/followups');
  await doctor.locator('#worklist tbody a').first().click();
  await doctor.waitForURL(/\/app\/followups\/[0-9a-f-]+$/);
  await both(doctor, 'enrollment', new URL(doctor.url()).pathname);
  await doctor.locator('#enrollment-patient').click();
  await doctor.waitForURL(/\/app\/clinic\/patients\//);
  await both(doctor, 'patient', new URL(doctor.url()).pathname);
  await doctor.locator('a[href^="/app/visits/"]').first().click();
  await doctor.waitForURL(/\/app\/visits\//);
  const visit = new URL(doctor.url()).pathname;
  await both(doctor, 'visit', visit);
  await both(doctor, 'print-prescription', `${visit}/print/prescription`);
  await both(doctor, 'print-receipt', `${visit}/print/receipt`);

  const coordinator = await newPage(world.browser);
  await logIn(coordinator, world.server.base, 'coordinator', /\/app\/referrals$/);
  // Referrals wait in the inbox, the urgent one first.
  const first = coordinator.locator('#referral-rows tr').first();
  assert.match(await first.textContent(), /紧急/);
  await both(coordinator, 'inbox', '/app/referrals');
  await first.locator('a').click();
  await coordinator.waitForURL(/\/app\/referrals\/[0-9a-f-]+$/);
  const referral = new URL(coordinator.url()).pathname;
  // The urgent referral carries its clinical snapshot.
  assert.match(await coordinator.locator('#case-who').textContent(), /[男女] · \d+ 岁/);
  assert.doesNotMatch(await coordinator.locator('#case-diagnoses').textContent(), /无记录/);
  await both(coordinator, 'referral', referral);
  await both(coordinator, 'print-referral', `${referral}/print`);
});

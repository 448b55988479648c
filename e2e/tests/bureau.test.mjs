// The bureau official's journey: log in with the keyboard, read the KPI tiles and charts, drill
// down county -> township, export CSV, switch to English, log out.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { statisticsCaughtUp, villageVisits } from '../lib/api.mjs';
import { fitsWidth, newPage, screenshot, unlabelled } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const world = setup(async (base) => {
  await villageVisits(base, 6);
  await statisticsCaughtUp(base, 6);
});

test('a bureau official reads the dashboard, drills down, exports and switches language', async () => {
  const page = await newPage(world.browser);
  await page.goto(`${world.server.base}/app/`);
  assert.match(page.url(), /\/app\/login$/);
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), '登录');

  // Keyboard only: the username field has focus, Tab reaches the password, Enter submits.
  await page.keyboard.type('bureau');
  await page.keyboard.press('Tab');
  await page.keyboard.type('Demo@2026');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/app\/bureau$/);
  await screenshot(page, 'bureau-dashboard-zh');

  await assert.doesNotReject(page.getByRole('heading', { name: /医共体统计看板/ }).waitFor());
  const visits = page.locator('[data-kpi="visits"] .tile-value');
  assert.equal(await visits.textContent(), '6');
  assert.equal(await page.locator('.tile').count(), 17);
  // Four charts drawn as SVG, each named for assistive technology.
  for (const id of ['visits', 'referrals', 'grassroots', 'management']) {
    const fig = page.locator(`#chart-${id}`);
    assert.equal(await fig.locator('svg').count(), 1, `chart ${id} is drawn`);
    assert.ok(await fig.locator('[role="img"]').getAttribute('aria-label'));
  }
  assert.ok(await fitsWidth(page), 'the dashboard fits 1366 px');
  assert.deepEqual(await unlabelled(page), [], 'every field of the dashboard has a label');

  // Charts: counts tick at whole numbers, legends are HTML (never drawn over each other), and the
  // chart text uses the page's sans-serif stack.
  const ticks = await page.locator('#chart-visits svg text').allTextContents();
  const numeric = ticks.filter((t) => /^[\d.]+$/.test(t.trim()));
  assert.ok(numeric.length > 1 && numeric.every((t) => Number.isInteger(Number(t))), `whole-number ticks: ${numeric}`);
  assert.deepEqual(await page.locator('#chart-referrals .legend li').allTextContents(), ['上转', '下转']);
  const font = await page.locator('#chart-visits svg text').first().evaluate((el) => getComputedStyle(el).fontFamily);
  assert.match(font, /sans-serif$/);

  // The first level lists the county hospital on its own and every township; a township's
  // villages are one click down, and "up" comes back to the first level.
  assert.ok(await page.locator('#children').getByText('示范县人民医院（本级）').isVisible());
  assert.equal(await page.locator('#children a').count(), 3, 'three townships to drill into');
  await page.getByRole('link', { name: '东关镇卫生院' }).click();
  await page.waitForURL(/institution=/);
  assert.equal(await page.locator('#node-name').textContent(), '东关镇卫生院');
  assert.ok(await page.locator('#children').getByText('东关村卫生室').isVisible());
  assert.equal(await page.locator('[data-kpi="visits"] .tile-value').textContent(), '6');
  await page.locator('#up').click();
  await page.waitForURL((u) => !u.search.includes('institution='));
  assert.equal(await page.locator('#node-name').textContent(), '全医共体');

  // Export: a CSV for Excel, BOM first, Chinese headers.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#export-csv').click()]);
  const csv = readFileSync(await download.path());
  assert.deepEqual([...csv.subarray(0, 3)], [0xef, 0xbb, 0xbf]);
  assert.match(csv.toString('utf8'), /县域内就诊率/);

  // English, remembered across pages; back to Chinese.
  await page.getByRole('link', { name: 'English' }).click();
  await page.getByRole('heading', { name: /Community statistics/ }).waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  assert.equal(await page.locator('#node-name').textContent(), 'Whole community');
  // The export follows the page's language.
  const [english] = await Promise.all([page.waitForEvent('download'), page.locator('#export-csv').click()]);
  assert.match(readFileSync(await english.path()).toString('utf8'), /^\uFEFFInstitution,Period,/);
  await screenshot(page, 'bureau-dashboard-en');
  await page.goto(`${world.server.base}/app/bureau`);
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await page.getByRole('link', { name: '中文' }).click();
  await page.getByRole('heading', { name: /医共体统计看板/ }).waitFor();

  // Log out: back to the login page, and the dashboard is closed.
  await page.getByRole('button', { name: '退出登录' }).click();
  await page.waitForURL(/\/app\/login$/);
  await page.goto(`${world.server.base}/app/bureau`);
  assert.match(page.url(), /\/app\/login$/);
});

test('a wrong password is refused with a message, and the page is labelled throughout', async () => {
  const page = await newPage(world.browser);
  await page.goto(`${world.server.base}/app/login`);
  await page.getByLabel('用户名').fill('bureau');
  await page.getByLabel('密码').fill('wrong-password');
  await page.getByRole('button', { name: '登录' }).click();
  assert.match(await page.getByRole('alert').textContent(), /用户名或密码不正确/);
  // Every input a reader can reach has a label.
  assert.deepEqual(await unlabelled(page), []);
});

// The referral coordinator's journey: the inbox shows a new referral without a reload (server-
// sent events), then accept, arrival, completion with a summary and a referral back down, each a
// plain form; a second referral is rejected with a reason. The village doctor then finds the
// down-referral in their inbox.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { upReferral } from '../lib/api.mjs';
import { fitsWidth, logIn, newPage, printed, screenshot, unlabelled } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const world = setup();

test('a new referral appears live, and the coordinator takes it from accept to back down', async () => {
  const page = await newPage(world.browser);
  await logIn(page, world.server.base, 'coordinator');
  await page.waitForURL(/\/app\/referrals$/);
  await page.getByRole('heading', { name: '转入转诊' }).waitFor();
  assert.ok(await page.getByText('暂无转诊').isVisible());
  // The page is listening before anything is sent.
  await page.locator('body[data-live="on"]').waitFor({ timeout: 10_000 });

  const up = await upReferral(world.server.base, 1, '血压控制不佳，请上级医院调整用药');
  const row = page.locator(`tr[data-referral="${up.id}"]`);
  await row.waitFor({ timeout: 10_000 });
  assert.match(await row.textContent(), /转诊演示/);
  // Urgent: two hours to decide in the demo community (routine: 24).
  assert.match(await row.locator('.sla').textContent(), /剩余 1 小时 5\d 分/);
  assert.match(await page.locator('#live-status').textContent(), /列表已更新/);
  assert.ok(await fitsWidth(page), 'the inbox fits 1366 px');
  await screenshot(page, 'coordinator-inbox');

  await row.getByRole('link', { name: '转诊演示' }).click();
  assert.deepEqual(await unlabelled(page), [], 'every field of the referral page has a label');
  // The case comes with the referral: who, and what the visit recorded.
  assert.ok(await page.locator('#case').isVisible());
  assert.match(await page.locator('#case-who').textContent(), /[男女] · \d+ 岁/);
  // The referral slip prints on A4 with the case and a tear-off receipt to return.
  await page.getByRole('link', { name: '打印转诊单' }).click();
  await page.getByRole('heading', { name: /双向转诊单/ }).waitFor();
  assert.equal(await page.locator('.sheet-patient').textContent(), '转诊演示');
  assert.ok(await page.locator('.sheet-tear-off').isVisible());
  await screenshot(page, 'print-referral-zh');
  const paper = await printed(page);
  assert.ok(paper.toolbarHidden, 'the toolbar does not print');
  assert.deepEqual([paper.width, paper.height], [210, 297], 'the referral slip is A4');
  await page.getByRole('link', { name: '返回' }).click();
  await page.getByRole('button', { name: '接收' }).click();
  assert.equal(await page.locator('#status').getAttribute('data-status'), 'accepted');
  await page.getByRole('button', { name: '登记患者到达' }).click();
  assert.equal(await page.locator('#status').getAttribute('data-status'), 'arrived');
  await page.getByLabel('诊疗小结').fill('调整降压方案后血压平稳');
  await page.getByRole('button', { name: '完成转诊' }).click();
  assert.equal(await page.locator('#status').getAttribute('data-status'), 'completed');
  await page.getByLabel('出院小结').fill('出院，血压平稳');
  await page.getByLabel('康复计划').fill('每周随访血压，低盐饮食');
  await page.getByRole('button', { name: '下转回基层' }).click();
  assert.match(await page.locator('.facts').textContent(), /下转/);
  await screenshot(page, 'coordinator-referred-down');

  // A second referral, rejected with a reason; an empty reason is refused first.
  const second = await upReferral(world.server.base, 2, '复查');
  await page.goto(`${world.server.base}/app/referrals/${second.id}`);
  await page.getByLabel('拒绝理由').fill('本院该专科暂停接诊，请转市医院');
  await page.getByRole('button', { name: '拒绝' }).click();
  assert.equal(await page.locator('#status').getAttribute('data-status'), 'rejected');
  assert.match(await page.locator('.facts').textContent(), /本院该专科暂停接诊/);

  // The village doctor sees the down-referral come back.
  const village = await newPage(world.browser);
  await logIn(village, world.server.base, 'village.doctor');
  await village.waitForURL(/\/app\/clinic$/);
  await village.getByRole('link', { name: '转诊', exact: true }).click();
  await village.waitForURL(/\/app\/referrals$/);
  const back = village.locator('#referral-rows tr', { hasText: '下转' });
  assert.equal(await back.count(), 1);
  await village.getByRole('link', { name: '转出转诊' }).click();
  assert.equal(await village.locator('#referral-rows tr[data-status="completed"]').count(), 1);
  assert.equal(await village.locator('#referral-rows tr[data-status="rejected"]').count(), 1);
});

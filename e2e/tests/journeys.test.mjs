// The three users' journeys of issue 9, one after the other on one server, each seeing what the
// one before did:
//   1. a village doctor registers a resident (and is shown the community's probable duplicate),
//      runs a visit with a prescription, takes payment and refers the patient up;
//   2. the county coordinator, whose inbox was open all along, sees that referral arrive without
//      a reload, accepts it, records arrival, completes it and refers the patient back down; the
//      village doctor sees it come back;
//   3. the bureau official sees the KPIs move by exactly that and downloads the CSV.
// Every main page is screenshot into e2e/artifacts/.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { baseline, kpisWhen, knownResident } from '../lib/api.mjs';
import { fitsWidth, logIn, newPage, screenshot } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const BASE_N = 6;
const world = setup(async (base) => {
  await baseline(base, BASE_N);
  await knownResident(base);
  await kpisWhen(base, (k) => k.visits.value === BASE_N && k.referrals_down.value === BASE_N);
});

const tile = (page, code) => page.locator(`[data-kpi="${code}"] .tile-value`).textContent();

test('the three journeys: village visit and referral, the coordinator live, the bureau figures', async () => {
  const bureau = await newPage(world.browser);
  await logIn(bureau, world.server.base, 'bureau', /\/app\/bureau$/);
  assert.equal(await tile(bureau, 'visits'), String(BASE_N));
  assert.equal(await tile(bureau, 'referrals_up'), String(BASE_N));
  assert.equal(await tile(bureau, 'referrals_down'), String(BASE_N));

  // The coordinator's inbox is open and listening before anything is sent.
  const coordinator = await newPage(world.browser);
  await logIn(coordinator, world.server.base, 'coordinator', /\/app\/referrals$/);
  await coordinator.locator('body[data-live="on"]').waitFor({ timeout: 10_000 });
  const before = await coordinator.locator('#referral-rows tr[data-referral]').count();

  // Journey 1: the village doctor.
  const doctor = await newPage(world.browser);
  await logIn(doctor, world.server.base, 'village.doctor', /\/app\/clinic$/);
  await screenshot(doctor, 'page-clinic');
  const form = doctor.locator('form', { has: doctor.locator('#reg-name') });
  await form.getByLabel('姓名').fill('王秀英');
  await form.getByLabel('性别').selectOption('female');
  await form.getByLabel('出生日期').fill('1948-06-10');
  await form.getByRole('button', { name: '登记' }).click();
  // The community already has a probable match: shown, and the doctor links to it.
  const candidates = doctor.locator('#candidates');
  await candidates.waitFor();
  assert.match(await candidates.textContent(), /王秀英/);
  await screenshot(doctor, 'page-register-candidates');
  await candidates.getByRole('button', { name: '是同一人，关联' }).first().click();
  await doctor.waitForURL(/\/app\/clinic\/patients\//);
  await screenshot(doctor, 'page-patient');

  await doctor.getByLabel('主诉').fill('头晕乏力一周');
  await doctor.getByRole('button', { name: '开始就诊' }).click();
  await doctor.waitForURL(/\/app\/visits\/[0-9a-f-]+$/);
  const visitUrl = doctor.url();
  await doctor.getByLabel('收缩压（mmHg）').fill('176');
  await doctor.getByLabel('舒张压（mmHg）').fill('106');
  await doctor.getByRole('button', { name: '保存生命体征' }).click();
  await doctor.getByLabel('诊断（ICD-10编码或名称）').fill('I10');
  await doctor.getByRole('button', { name: '添加诊断' }).click();
  const drug = doctor.getByLabel('药品（本机构库存）');
  await drug.selectOption(await drug.locator('option').nth(1).getAttribute('value'));
  await doctor.getByLabel('单次剂量').fill('1');
  await doctor.getByLabel('剂量单位').fill('片');
  await doctor.getByLabel('用药频次').selectOption('qd');
  await doctor.getByLabel('天数').fill('7');
  await doctor.locator('#qty').fill('7');
  await doctor.getByRole('button', { name: '开具处方' }).click();
  await doctor.getByRole('button', { name: '计费' }).click();
  await doctor.getByRole('button', { name: '收款' }).click();
  assert.equal((await doctor.locator('#bill-owed').textContent()).trim(), '¥0.00');
  await screenshot(doctor, 'page-visit');
  await doctor.getByLabel('转入机构').selectOption({ label: '示范县人民医院' });
  await doctor.getByLabel('转诊原因').fill('血压控制不佳，请上级医院调整用药');
  await doctor.getByRole('button', { name: '提交上转' }).click();
  await doctor.waitForURL(/\/app\/referrals\/[0-9a-f-]+$/);
  const referralId = doctor.url().split('/').pop();
  assert.equal(await doctor.locator('#status').getAttribute('data-status'), 'requested');
  await doctor.goto(visitUrl);
  await doctor.getByRole('button', { name: '结束就诊' }).click();
  assert.equal(await doctor.locator('#visit-status').getAttribute('data-open'), 'false');

  // Journey 2: the coordinator's inbox shows it without a reload.
  const row = coordinator.locator(`tr[data-referral="${referralId}"]`);
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await coordinator.locator('#referral-rows tr[data-referral]').count(), before + 1);
  assert.match(await row.textContent(), /王秀英/);
  await screenshot(coordinator, 'page-referral-inbox');
  await row.getByRole('link', { name: '王秀英' }).click();
  await screenshot(coordinator, 'page-referral');
  await coordinator.getByRole('button', { name: '接收' }).click();
  await coordinator.getByRole('button', { name: '登记患者到达' }).click();
  await coordinator.getByLabel('诊疗小结').fill('调整降压方案后血压平稳');
  await coordinator.getByRole('button', { name: '完成转诊' }).click();
  await coordinator.getByLabel('出院小结').fill('出院，血压平稳');
  await coordinator.getByLabel('康复计划').fill('每周随访血压，低盐饮食');
  await coordinator.getByRole('button', { name: '下转回基层' }).click();
  assert.equal(await coordinator.locator('#status').getAttribute('data-status'), 'requested');
  const downId = coordinator.url().split('/').pop();

  // The village doctor sees it come back, and their referral completed.
  await doctor.getByRole('link', { name: '转诊', exact: true }).click();
  await doctor.locator(`tr[data-referral="${downId}"]`).waitFor();
  await doctor.getByRole('link', { name: '转出转诊' }).click();
  assert.equal(await doctor.locator(`tr[data-referral="${referralId}"]`).getAttribute('data-status'), 'completed');
  await doctor.getByRole('link', { name: '慢病随访' }).click();
  await screenshot(doctor, 'page-followups');

  // Journey 3: the bureau's figures move by exactly one visit, one up and one down.
  await kpisWhen(world.server.base, (k) => k.visits.value === BASE_N + 1 && k.referrals_down.value === BASE_N + 1);
  await bureau.reload();
  assert.equal(await tile(bureau, 'visits'), String(BASE_N + 1));
  assert.equal(await tile(bureau, 'referrals_up'), String(BASE_N + 1));
  assert.equal(await tile(bureau, 'referrals_down'), String(BASE_N + 1));
  assert.ok(await fitsWidth(bureau));
  await screenshot(bureau, 'page-bureau');
  const [download] = await Promise.all([bureau.waitForEvent('download'), bureau.locator('#export-csv').click()]);
  const csv = readFileSync(await download.path()).toString('utf8');
  assert.ok(csv.startsWith('\ufeff'), 'a BOM for Excel');
  const [header, community] = csv.trim().split(/\r?\n/);
  const at = (name) => community.split(',')[header.split(',').indexOf(name)];
  assert.equal(at('诊疗人次'), String(BASE_N + 1));
  assert.equal(at('上转人次'), String(BASE_N + 1));
  assert.equal(at('下转人次'), String(BASE_N + 1));
});

test('every main page transfers under 200 KB, stylesheet and scripts included', async () => {
  const { measure } = await import('../lib/weight.mjs');
  const page = await newPage(world.browser);
  const first = await measure(page, `${world.server.base}/app/login`);
  assert.ok(first.bytes < 200 * 1024, `login: ${first.bytes} bytes`);
  for (const [user, landing, paths] of [
    ['village.doctor', /\/app\/clinic$/, ['/app/clinic', '/app/followups', '/app/referrals?box=sent']],
    ['coordinator', /\/app\/referrals$/, ['/app/referrals']],
    ['bureau', /\/app\/bureau$/, ['/app/bureau']],
  ]) {
    const p = await newPage(world.browser);
    await logIn(p, world.server.base, user, landing);
    for (const path of paths) {
      const m = await measure(p, `${world.server.base}${path}`);
      assert.ok(m.bytes < 200 * 1024, `${path}: ${m.bytes} bytes`);
    }
    // A visit or a referral page: the heaviest forms.
    if (user === 'village.doctor') {
      await p.goto(`${world.server.base}/app/referrals?box=sent`);
      const href = await p.locator('#referral-rows a').first().getAttribute('href');
      const m = await measure(p, `${world.server.base}${href}`);
      assert.ok(m.bytes < 200 * 1024, `${href}: ${m.bytes} bytes`);
    }
    await p.context().close();
  }
});

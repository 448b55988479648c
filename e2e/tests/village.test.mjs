// The village doctor's journey: register a patient, run the visit (vitals, an ICD-10 diagnosis
// found as you type, a prescription from the clinic's stock, the charge and the payment), close
// it, and find the patient in today's list. Then a follow-up with a danger value: flagged, and the
// proposed up-referral sent from its draft.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hypertensionEnrollment, residentId } from '../lib/api.mjs';
import { fitsWidth, logIn, newPage, printed, screenshot, unlabelled } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const world = setup();

test('a village doctor registers a patient and runs a whole visit in the browser', async () => {
  const page = await newPage(world.browser);
  await logIn(page, world.server.base, 'village.doctor', /\/app\/clinic$/);
  assert.ok(await page.getByText('今天还没有就诊记录。').isVisible());
  assert.deepEqual(await unlabelled(page), []);

  const form = page.locator('form', { has: page.locator('#reg-name') });
  await form.getByLabel('姓名').fill('浏览器甲');
  await form.getByLabel('身份证号').fill(residentId('130997', '19620815', 7));
  await form.getByLabel('手机号').fill('13912345678');
  await form.getByRole('button', { name: '登记' }).click();
  await page.waitForURL(/\/app\/clinic\/patients\//);
  assert.ok(!page.url().includes('13912345678'), 'no identifier in the URL');
  assert.equal(await page.locator('#patient-name').textContent(), '浏览器甲');

  await page.getByLabel('主诉').fill('头晕两天');
  await page.getByRole('button', { name: '开始就诊' }).click();
  await page.waitForURL(/\/app\/visits\/[0-9a-f-]+$/);
  assert.ok(await fitsWidth(page), 'the visit form fits 1366 px');
  assert.deepEqual(await unlabelled(page), [], 'every field of the visit form has a label');

  // A wrong value: the same page again, with what was typed and the bad field named.
  await page.getByLabel('收缩压（mmHg）').fill('400');
  await page.getByLabel('舒张压（mmHg）').fill('90');
  await page.getByRole('button', { name: '保存生命体征' }).click();
  await page.locator('#err-vitals').waitFor();
  assert.match(await page.locator('#err-vitals').textContent(), /收缩压（mmHg）：/);
  assert.equal(await page.getByLabel('收缩压（mmHg）').inputValue(), '400');
  assert.equal(await page.getByLabel('舒张压（mmHg）').inputValue(), '90');
  assert.equal(await page.getByLabel('收缩压（mmHg）').getAttribute('aria-invalid'), 'true');
  await screenshot(page, 'visit-refused-vitals');
  await page.getByLabel('收缩压（mmHg）').fill('172');
  await page.getByLabel('舒张压（mmHg）').fill('104');
  await page.getByRole('button', { name: '保存生命体征' }).click();
  assert.match(await page.locator('#vitals').textContent(), /172\/104 mmHg/);

  // Search as you type: initials find the code.
  const icd = page.getByLabel('诊断（ICD-10编码或名称）');
  await icd.pressSequentially('gxy');
  await page.locator('#icd[data-results]').waitFor({ state: 'attached' });
  assert.ok(Number(await icd.getAttribute('data-results')) > 0);
  assert.match(await page.locator('#icd-options').innerHTML(), /I10/);
  await icd.fill('I10');
  await page.getByRole('button', { name: '添加诊断' }).click();
  assert.match(await page.locator('#diagnoses').textContent(), /I10/);

  const drug = page.getByLabel('药品（本机构库存）');
  const firstDrug = await drug.locator('option').nth(1).getAttribute('value');
  await drug.selectOption(firstDrug);
  // The dose unit follows the drug (its dispensing unit), and the quantity is worked out.
  assert.equal(await page.getByLabel('剂量单位').inputValue(), '片');
  await page.getByLabel('单次剂量').fill('1');
  await page.getByLabel('用药频次').selectOption('bid');
  await page.getByLabel('天数').fill('7');
  assert.equal(await page.locator('#qty').inputValue(), '14', '1 片 twice a day for 7 days');
  await page.getByLabel('用药频次').selectOption('qd');
  assert.equal(await page.locator('#qty').inputValue(), '7');
  await page.getByRole('button', { name: '开具处方' }).click();
  assert.equal(await page.locator('#prescriptions li').count(), 1);

  await page.getByRole('button', { name: '计费' }).click();
  const owed = (await page.locator('#bill-owed').textContent()).trim();
  assert.notEqual(owed, '¥0.00');
  await page.getByLabel('支付方式').selectOption('mobile');
  await page.getByRole('button', { name: '收款' }).click();
  assert.equal((await page.locator('#bill-owed').textContent()).trim(), '¥0.00');
  await screenshot(page, 'village-visit');

  // The prescription prints on A5 with the clinic's name, the patient and the usage in words.
  const clinic = (await page.locator('.who').first().textContent()).trim();
  await page.getByRole('link', { name: '打印处方笺' }).click();
  await page.getByRole('heading', { name: /处方笺/ }).first().waitFor();
  assert.ok(clinic.includes((await page.locator('.sheet-institution').first().textContent()).trim()));
  assert.equal(await page.locator('.sheet-patient').first().textContent(), '浏览器甲');
  assert.match(await page.locator('.sheet-dx').first().textContent(), /I10/);
  assert.match(await page.locator('.rx-usage').first().textContent(), /每次 1 片，每日一次，共 7 天/);
  await screenshot(page, 'print-prescription-zh');
  let paper = await printed(page);
  assert.ok(paper.toolbarHidden, 'the toolbar does not print');
  assert.deepEqual([paper.width, paper.height], [148, 210], 'the prescription is A5');
  await page.getByRole('link', { name: '返回' }).click();

  // The receipt, with the payment's receipt number.
  await page.getByRole('link', { name: '打印收费票据' }).click();
  await page.getByRole('heading', { name: '门诊收费票据' }).waitFor();
  assert.equal((await page.locator('#receipt-paid').textContent()).trim(), owed);
  assert.equal(await page.locator('#receipt-payments tbody tr').count(), 1);
  assert.match(await page.locator('#receipt-payments').textContent(), /移动支付/);
  await screenshot(page, 'print-receipt-zh');
  paper = await printed(page);
  assert.deepEqual([paper.width, paper.height], [148, 210], 'the receipt is A5');
  await page.getByRole('link', { name: '返回' }).click();

  await page.getByRole('button', { name: '结束就诊' }).click();
  assert.equal(await page.locator('#visit-status').getAttribute('data-open'), 'false');
  await page.getByRole('link', { name: '返回门诊工作台' }).click();
  assert.match(await page.locator('#today').textContent(), /浏览器甲/);
});

test('a village doctor enrols a newly registered patient in hypertension follow-up from the patient page', async () => {
  const page = await newPage(world.browser);
  await logIn(page, world.server.base, 'village.doctor', /\/app\/clinic$/);
  const form = page.locator('form', { has: page.locator('#reg-name') });
  await form.getByLabel('姓名').fill('浏览器丙');
  await form.getByLabel('性别').selectOption('female');
  await form.getByLabel('出生日期').fill('1958-04-02');
  await form.getByRole('button', { name: '登记' }).click();
  await page.waitForURL(/\/app\/clinic\/patients\//);
  const patient = page.url();
  assert.match(await page.locator('#enrollments').textContent(), /尚未纳入/);
  assert.deepEqual(await unlabelled(page), [], 'the enrolment form has its labels');

  await page.getByLabel('病种').selectOption('hypertension');
  await page.getByLabel('确诊日期').fill('2025-03-01');
  await page.getByRole('button', { name: '纳入随访管理' }).click();
  await page.waitForURL(/\/app\/followups\/[0-9a-f-]+$/);
  assert.match(await page.locator('h1').textContent(), /浏览器丙/);

  await page.goto(patient);
  assert.match(await page.locator('#enrollments').textContent(), /高血压/);
});

test('a danger value at a follow-up flags the patient and the drafted referral is sent', async () => {
  const enrollment = await hypertensionEnrollment(world.server.base, 1);
  const page = await newPage(world.browser);
  await logIn(page, world.server.base, 'village.doctor', /\/app\/clinic$/);
  await page.getByRole('link', { name: '慢病随访' }).click();
  const row = page.locator(`#worklist tr[data-enrollment="${enrollment.id}"]`);
  assert.equal(await row.getAttribute('data-category'), 'never_followed_up');
  await row.getByRole('link', { name: '随访演示' }).click();
  assert.deepEqual(await unlabelled(page), [], 'every field of the follow-up form has a label');

  await page.getByLabel('收缩压（mmHg）').fill('186');
  await page.getByLabel('舒张压（mmHg）').fill('112');
  await page.getByLabel('症状（用逗号分隔）').fill('头痛，头晕');
  await page.getByLabel('服药依从性').selectOption('intermittent');
  await page.getByRole('button', { name: '记录随访' }).click();
  assert.match(await page.locator('#flag').textContent(), /危急值/);
  assert.match(await page.locator('#followup-history').textContent(), /186\/112 mmHg/);

  await page.locator('#proposed-referral').click();
  assert.equal(await page.locator('#status').getAttribute('data-status'), 'draft');
  await page.getByRole('button', { name: '提交转诊' }).click();
  assert.equal(await page.locator('#status').getAttribute('data-status'), 'requested');
  await page.goto(`${world.server.base}/app/followups`);
  assert.equal(await page.locator(`#to-refer li[data-enrollment="${enrollment.id}"]`).count(), 1);
});

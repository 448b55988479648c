// Real users type wrong values (issue 23): every form of the village doctor's day, refused on the
// server, comes back with everything typed and the bad field marked and named, with the menu;
// patients are found by surname, a community hit is registered here, and a patient is enrolled
// from the visit page and appears on the worklist with counts that agree with the rows.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { call, login, residentId } from '../lib/api.mjs';
import { logIn, newPage, screenshot } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const world = setup();

/// The field is marked invalid, described by a message on the page that says `words`, and the
/// menu is still there.
async function refused(page, field, words) {
  const el = page.locator(field);
  if ((await el.getAttribute('aria-invalid')) !== 'true') await screenshot(page, `forms-failed-${field.slice(1)}`);
  assert.equal(await el.getAttribute('aria-invalid'), 'true', `${field} is marked`);
  const described = (await el.getAttribute('aria-describedby')).split(' ').filter((id) => id.startsWith('err') || id === 'clinic-message');
  const message = await page.locator(`#${described[0]}`).textContent();
  assert.match(message, words, `${field}: ${message}`);
  assert.ok(await page.getByRole('navigation').first().isVisible(), 'the menu stays');
}

test('a village doctor finds patients by surname, registers a community hit here, and every refused form keeps its values', async () => {
  const base = world.server.base;
  // Someone registered at another clinic of the community.
  const other = await login(base, 'village.doctor2');
  await call(base, other, 'POST', '/api/v1/patients', {
    name: '李社区', resident_id: residentId('130997', '19570312', 21), phone: '13955500021',
  });

  const page = await newPage(world.browser);
  await logIn(page, base, 'village.doctor', /\/app\/clinic$/);
  const form = page.locator('form', { has: page.locator('#reg-name') });

  // Registration: a resident ID with a wrong check character is refused; everything stays.
  await form.locator('#reg-name').fill('张表单');
  await form.locator('#reg-sex').selectOption('male');
  const rid = residentId('130997', '19600101', 33);
  const wrong = rid.slice(0, 17) + (rid[17] === '1' ? '2' : '1');
  await form.locator('#reg-rid').fill(wrong);
  await form.locator('#reg-phone').fill('13955500033');
  await form.getByRole('button', { name: '登记' }).click();
  await refused(page, '#reg-rid', /身份证号/);
  assert.equal(await page.locator('#reg-name').inputValue(), '张表单');
  assert.equal(await page.locator('#reg-sex').inputValue(), 'male');
  assert.equal(await page.locator('#reg-rid').inputValue(), wrong);
  assert.equal(await page.locator('#reg-phone').inputValue(), '13955500033');
  await screenshot(page, 'forms-refused-registration');
  await page.locator('#reg-rid').fill(rid);
  await page.locator('form', { has: page.locator('#reg-name') }).getByRole('button', { name: '登记' }).click();
  await page.waitForURL(/\/app\/clinic\/patients\//);
  const patient = page.url();

  // Surname search finds them; a name found elsewhere in the community is registered here.
  await page.goto(`${base}/app/clinic`);
  await page.locator('#find-name').fill('张');
  await page.locator('#find').click();
  assert.match(await page.locator('#found').textContent(), /张表单/);
  await page.locator('#find-name').fill('李社区');
  await page.locator('#find').click();
  const hit = page.locator('#found li', { hasText: '李社区' });
  await hit.getByRole('button', { name: '在本机构登记' }).click();
  await page.waitForURL(/\/app\/clinic\/patients\//);
  assert.equal(await page.locator('#patient-name').textContent(), '李社区');

  // The visit's forms, each refused once.
  await page.goto(patient);
  await page.getByLabel('主诉').fill('头晕');
  await page.getByRole('button', { name: '开始就诊' }).click();
  await page.waitForURL(/\/app\/visits\//);
  const visit = page.url();

  await page.locator('#icd').fill('X99.99');
  await page.locator('#add-diagnosis').click();
  await refused(page, '#icd', /未找到该诊断/);
  assert.equal(await page.locator('#icd').inputValue(), 'X99.99');
  await page.locator('#icd').fill('I10');
  await page.locator('#add-diagnosis').click();
  assert.match(await page.locator('#diagnoses').textContent(), /I10/);

  const drug = await page.locator('#drug option').nth(1).getAttribute('value');
  await page.locator('#drug').selectOption(drug);
  await page.locator('#dose').fill('1');
  await page.locator('#freq').selectOption('bid');
  await page.locator('#days').fill('7');
  await page.locator('#qty').fill('5000');
  await page.locator('#prescribe').click();
  await refused(page, '#qty', /库存不足/);
  assert.equal(await page.locator('#drug').inputValue(), drug);
  assert.equal(await page.locator('#dose').inputValue(), '1');
  assert.equal(await page.locator('#freq').inputValue(), 'bid');
  assert.equal(await page.locator('#days').inputValue(), '7');
  assert.equal(await page.locator('#qty').inputValue(), '5000');
  await screenshot(page, 'forms-refused-prescription');
  await page.locator('#qty').fill('14');
  await page.locator('#prescribe').click();
  assert.equal(await page.locator('#prescriptions li').count(), 1);

  await page.locator('#fee').selectOption('consultation');
  await page.locator('#fee-qty').fill('0');
  await page.locator('#charge').click();
  await refused(page, '#fee-qty', /数量/);
  assert.equal(await page.locator('#fee').inputValue(), 'consultation');
  assert.equal(await page.locator('#fee-qty').inputValue(), '0');
  await page.locator('#fee-qty').fill('1');
  await page.locator('#charge').click();

  await page.locator('#method').selectOption('card');
  await page.locator('#amount').fill('99999');
  await page.locator('#pay').click();
  await refused(page, '#amount', /超过应付金额/);
  assert.equal(await page.locator('#method').inputValue(), 'card');
  assert.equal(await page.locator('#amount').inputValue(), '99999');

  await page.locator('#refer-reason').fill('   ');
  await page.locator('#refer-urgent').check();
  await page.locator('#refer-up').click();
  await refused(page, '#refer-reason', /必填/);
  assert.ok(await page.locator('#refer-urgent').isChecked(), 'the urgent box stays ticked');

  // Enrol from the visit page: the I10 diagnosis suggests it.
  await page.goto(visit);
  await page.locator('#enroll-hypertension').click();
  await page.waitForURL(/\/app\/followups\/[0-9a-f-]+$/);
  const enrollment = page.url().split('/').pop();
  await page.locator('#fu-sbp').fill('400');
  await page.locator('#fu-dbp').fill('90');
  await page.locator('#record-followup').click();
  await refused(page, '#fu-sbp', /收缩压/);
  assert.equal(await page.locator('#fu-sbp').inputValue(), '400');
  assert.equal(await page.locator('#fu-dbp').inputValue(), '90');

  await page.goto(`${base}/app/followups`);
  const row = page.locator(`#worklist tr[data-enrollment="${enrollment}"]`);
  assert.match(await row.textContent(), /张表单/);
  for (const category of ['overdue', 'never_followed_up']) {
    const shown = Number(await page.locator(`#count-${category} strong`).first().textContent());
    const rows = await page.locator(`#worklist tr[data-category="${category}"]`).count();
    assert.equal(shown, rows, `${category}: the count and the rows agree`);
  }
  // The visit no longer offers it.
  await page.goto(visit);
  assert.equal(await page.locator('#enroll-hypertension').count(), 0);
});

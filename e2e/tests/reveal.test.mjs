// A cashier sees a patient's identifiers masked and reveals one with a purpose and a reason. A
// reason of blanks is refused on the same page, with the field and purpose as chosen and the
// reason field named; then a real reason shows the full number.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { call, login, residentId } from '../lib/api.mjs';
import { logIn, newPage, screenshot } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const rid = residentId('130999', '19640521', 311);
let person;
const world = setup(async (base) => {
  const doctor = await login(base, 'county.doctor');
  const r = await call(base, doctor, 'POST', '/api/v1/patients', {
    name: '揭示测试', resident_id: rid, phone: '13966667777',
  });
  person = r.person.id;
});

test('a cashier reveals an identifier with a purpose and a reason, and a refused form keeps its values', async () => {
  const page = await newPage(world.browser);
  await logIn(page, world.server.base, 'county.cashier', '**/app/institution');
  await page.goto(`${world.server.base}/app/clinic/patients/${person}`);
  assert.ok(!(await page.content()).includes(rid), 'masked for the cashier');
  await page.locator('#reveal summary').click();
  await page.selectOption('#reveal-field', 'resident_id');
  await page.selectOption('#reveal-purpose', 'insurance_claim');
  await page.fill('#reveal-reason', '   ');
  await page.click('#reveal-submit');
  await page.locator('#reveal-message').waitFor();
  await screenshot(page, 'reveal-refused');
  assert.match(await page.locator('#reveal-message').innerText(), /理由/);
  assert.equal(await page.locator('#reveal-field').inputValue(), 'resident_id');
  assert.equal(await page.locator('#reveal-purpose').inputValue(), 'insurance_claim');
  assert.equal(await page.locator('#reveal-reason').getAttribute('aria-invalid'), 'true');
  await page.fill('#reveal-reason', '医保结算核对身份');
  await page.click('#reveal-submit');
  await page.locator('#revealed').waitFor();
  assert.ok((await page.locator('#revealed').innerText()).includes(rid));
});

// The API reference page under its content security policy: Swagger UI draws every operation
// with only its own hashed inline scripts allowed, and the browser reports no blocked script.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { newPage } from '../lib/browser.mjs';
import { setup } from '../lib/setup.mjs';

const world = setup();

test('the API docs render under a policy that allows only their own scripts and no framing', async () => {
  const page = await newPage(world.browser);
  const blocked = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) blocked.push(m.text());
  });
  const response = await page.goto(`${world.server.base}/api/docs/`);
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /script-src[^;]*'unsafe-inline'/);
  assert.equal(response.headers()['x-frame-options'], 'DENY');
  await page.locator('.opblock').first().waitFor({ timeout: 15_000 });
  assert.ok((await page.locator('.opblock').count()) > 50, 'every operation is drawn');
  assert.ok(await page.getByText('/api/v1/auth/login').first().isVisible());
  assert.deepEqual(blocked, [], 'nothing was refused by the policy');
});

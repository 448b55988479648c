// One server on the demo tenant and one headless Chromium per test file, stopped afterwards.
import { after, before } from 'node:test';

import { launch } from './browser.mjs';
import { startServer } from './server.mjs';

/// `prepare(base)`, when given, sets up the world through the API before the tests run (one
/// hook: Node 20 starts top-level hooks as they are declared, so a second one would not wait).
/// `options` go to `startServer` (for example `{ historyMonths: 12 }`).
export function setup(prepare, options = {}) {
  const world = { server: null, browser: null };
  before(async () => {
    world.server = await startServer(options);
    world.browser = await launch();
    if (prepare) await prepare(world.server.base);
  });
  after(async () => {
    await world.browser?.close();
    await world.server?.stop();
  });
  return world;
}

// Debian's Chromium, headless, driven by playwright-core. The flags keep it off the network
// (this machine's network is closed) and out of any profile.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const artifacts = resolve(import.meta.dirname, '..', 'artifacts');

export async function launch() {
  mkdirSync(artifacts, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/// A fresh context at the size of a common clinic screen.
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true });
  return context.newPage();
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/// The page fits 1366 px: nothing scrolls sideways.
export async function fitsWidth(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
}

/// The names of inputs a reader can reach that have no label.
export async function unlabelled(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label')).map((el) => el.name || el.id));
}

/// Logs in through the form as a demo user (password Demo@2026) and waits for `landing`.
export async function logIn(page, base, username, landing) {
  await page.goto(`${base}/app/login`);
  await page.getByLabel('用户名').fill(username);
  await page.getByLabel('密码').fill('Demo@2026');
  await page.getByRole('button', { name: '登录' }).click();
  if (landing) await page.waitForURL(landing);
}

/// Prints the page as Chromium would to paper (print media, the stylesheet's `@page` size) and
/// returns the first page's size in millimetres, and whether the screen-only toolbar was hidden.
export async function printed(page) {
  await page.emulateMedia({ media: 'print' });
  const toolbarHidden = await page.evaluate(() =>
    [...document.querySelectorAll('.print-tools, .bar')].every((el) => getComputedStyle(el).display === 'none'));
  const pdf = await page.pdf({ preferCSSPageSize: true, printBackground: false });
  await page.emulateMedia({ media: 'screen' });
  const box = /\/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]/.exec(pdf.toString('latin1'));
  const mm = (pt) => Math.round((Number(pt) * 25.4) / 72);
  return { toolbarHidden, width: box ? mm(box[1]) : 0, height: box ? mm(box[2]) : 0, bytes: pdf.length };
}

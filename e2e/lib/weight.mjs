// What a page costs on the wire: bytes transferred for the document and everything it loads, and
// the time until it is usable (the load event), optionally on a throttled connection.
export async function measure(page, url, { kbitPerSecond = null, latencyMs = 0 } = {}) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  if (kbitPerSecond) {
    const bytesPerSecond = (kbitPerSecond * 1000) / 8;
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: latencyMs, downloadThroughput: bytesPerSecond, uploadThroughput: bytesPerSecond,
    });
  }
  let bytes = 0;
  const done = (e) => { bytes += e.encodedDataLength; };
  cdp.on('Network.loadingFinished', done);
  const started = Date.now();
  await page.goto(url, { waitUntil: 'load' });
  const usableMs = Date.now() - started;
  cdp.off('Network.loadingFinished', done);
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  await cdp.detach();
  return { bytes, usableMs };
}

#!/usr/bin/env node
// Drives the web demo in headless Chromium through puppeteer-core (no browser download: pass the distribution's
// Chromium). Used by tests/test_web.py and by `make web-screenshot`.
//
//   node drive.mjs JOB.json
//
// JOB.json: {"url": page URL, "chromium": executable, "out": folder, "screenshot": PNG path or null,
//            "calls": [{"name": str, "fn": "sample" | "complete", "args": {...}}]}
// args are window.pixelcnn.sample / .complete options; uniforms_b64 (float32 bytes), known_b64 (uint8 bytes)
// and knownMask_b64 (one byte 0/1 per sub-pixel) carry the arrays. For each call the page's images (base64
// uint8 [N, C, H, W]) or its error message, the time of the run and a PNG of the canvas it drew (out/NAME.png) go
// to out/result.json, with the page's info and console. Exit status 0 unless the browser or the page broke.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const consoleLines = [];
const browser = await puppeteer.launch({
  executablePath: job.chromium,
  headless: true,
  // root in a container: no user namespace for Chromium's sandbox; no GPU here
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  timeout: 120000,
});
let status = 0;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(job.timeout_ms || 300000);
  await page.setViewport({ width: job.width || 1100, height: job.height || 900 });
  page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
  await page.goto(job.url, { waitUntil: 'load' });
  const info = await page.evaluate(async () => {
    while (!window.pixelcnn) await new Promise((r) => setTimeout(r, 20));
    const i = await window.pixelcnn.ready;
    return { ...i, crossOriginIsolated: self.crossOriginIsolated };
  });
  const results = [];
  for (const call of job.calls || []) {
    const r = await page.evaluate(async (fn, args) => {
      const decode = (s) => Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));
      const encode = (bytes) => {
        let s = '';
        for (let k = 0; k < bytes.length; k += 8192) s += String.fromCharCode(...bytes.subarray(k, k + 8192));
        return btoa(s);
      };
      const options = { ...args };
      if ('uniforms_b64' in args) options.uniforms = new Float32Array(decode(args.uniforms_b64).buffer);
      if ('known_b64' in args) options.known = decode(args.known_b64);
      if ('knownMask_b64' in args) options.knownMask = decode(args.knownMask_b64);
      for (const key of ['uniforms_b64', 'known_b64', 'knownMask_b64']) delete options[key];
      try {
        const out = await window.pixelcnn[fn](options);
        const canvas = document.getElementById(fn === 'sample' ? 'grid' : 'completions');
        const layout = window.pixelcnn.layout[fn === 'sample' ? 'grid' : 'completions'];
        return { ok: true, images_b64: encode(out.images), shape: out.shape, ms: out.ms, layout,
          canvas_png: canvas.toDataURL('image/png') };
      } catch (err) {
        return { ok: false, error: String(err && err.message ? err.message : err),
          status: document.getElementById('status').textContent };
      }
    }, call.fn, call.args);
    if (r.canvas_png) {
      writeFileSync(join(job.out, `${call.name}.png`), Buffer.from(r.canvas_png.split(',')[1], 'base64'));
      delete r.canvas_png;
    }
    results.push({ name: call.name, ...r });
  }
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
  writeFileSync(join(job.out, 'result.json'), JSON.stringify({ info, calls: results, console: consoleLines }));
} catch (err) {
  process.stderr.write(`error: ${err.message}\n${consoleLines.join('\n')}\n`);
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);

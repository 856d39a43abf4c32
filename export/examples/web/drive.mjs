#!/usr/bin/env node
// Drives the web demo in headless Chromium through puppeteer-core (no browser download: it uses the
// distribution's Chromium). Used by tests/test_web.py and by `make web-screenshot`.
//
//   node drive.mjs JOB.json
//   node drive.mjs --model FILE --screenshot OUT.png [--chromium PATH]   (the page as a person uses it)
//
// It starts serve.js on a free port for the job's model and stops it at the end.
// JOB.json: {"model": sampler model file, "chromium": executable (default: $CHROMIUM, else chromium,
//            chromium-browser or google-chrome on PATH), "out": folder, "screenshot": PNG path or null,
//            "query": URL query (default "sample=0"), "ui": run the buttons (sample, take first sample, complete),
//            "label": the class to pick first (-1: every class in turn),
//            "calls": [{"name": str, "fn": "sample" | "complete", "args": {...}}]}
// args are window.pixelcnn.sample / .complete options; uniforms_b64 (float32 bytes), known_b64 (uint8 bytes)
// and knownMask_b64 (one byte 0/1 per sub-pixel) carry the arrays. For each call the page's images (base64
// uint8 [N, C, H, W]) or its error message, the time of the run and a PNG of the canvas it drew (out/NAME.png) go
// to out/result.json, with the page's info, status line and console. Exit status 0 unless the server, the browser
// or the page broke.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const HERE = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function readJob(argv) {
  if (argv.length === 1) return JSON.parse(readFileSync(argv[0], 'utf8'));
  const job = { query: 'sample=0', ui: true, label: -1, calls: [] }; // label -1: every class in turn
  for (let k = 0; k < argv.length; k += 2) {
    const key = argv[k];
    if (!['--model', '--screenshot', '--chromium'].includes(key) || argv[k + 1] === undefined) {
      fail('usage: node drive.mjs JOB.json | --model FILE --screenshot OUT.png [--chromium PATH]');
    }
    job[key.slice(2)] = argv[k + 1];
  }
  if (!job.model || !job.screenshot) fail('--model and --screenshot are required');
  job.out = mkdtempSync(join(tmpdir(), 'pixelcnn-web-'));
  return job;
}

function findChromium(given) {
  const candidates = given ? [given] : process.env.CHROMIUM ? [process.env.CHROMIUM] : [];
  if (!candidates.length) {
    for (const dir of (process.env.PATH || '').split(delimiter)) {
      for (const name of ['chromium', 'chromium-browser', 'google-chrome']) candidates.push(join(dir, name));
    }
  }
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // next
    }
  }
  return fail(`no Chromium found (${given || process.env.CHROMIUM || 'chromium on PATH'}): apt-get install ` +
    'chromium, or set CHROMIUM=/path/to/chrome');
}

// serve.js on a free port; resolves to [URL, child] once it prints its URL
function startServer(model) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(HERE, 'serve.js'), '--model', model, '--port', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/http:\/\/\S+\//);
      if (m) resolve([m[0], child]);
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code) => reject(new Error(`serve.js exited (${code}): ${err}`)));
  });
}

const job = readJob(process.argv.slice(2));
const chromium = findChromium(job.chromium);
const [baseUrl, server] = await startServer(job.model);
const consoleLines = [];
const browser = await puppeteer.launch({
  executablePath: chromium,
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
  const query = job.query ?? 'sample=0';
  await page.goto(`${baseUrl}?${query}`, { waitUntil: 'load' });
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
  if (job.ui) {
    // as a person would: the first grid (drawn at load), take its first image, complete it
    const statusIs = async (prefix) => {
      await page.waitForFunction((p) => {
        const text = document.getElementById('status').textContent;
        return text.startsWith('Error') || text.startsWith(p);
      }, {}, prefix);
      const text = await page.$eval('#status', (e) => e.textContent);
      if (!text.startsWith(prefix)) throw new Error(`the page says: ${text}`);
    };
    if (job.label != null && info.numClasses > 0) await page.select('#label', String(job.label));
    if (query.includes('sample=0')) await page.click('#sample');
    await statusIs('Sampled');
    await page.click('#take-sample');
    await page.click('#complete');
    await statusIs('Completed');
  }
  const statusLine = await page.$eval('#status', (e) => e.textContent);
  if (job.screenshot) {
    const tmp = `${job.screenshot}.tmp.png`; // no partial file under the final name
    await page.screenshot({ path: tmp, fullPage: true });
    renameSync(tmp, job.screenshot);
  }
  writeFileSync(join(job.out, 'result.json'),
    JSON.stringify({ info, calls: results, status: statusLine, console: consoleLines }));
  process.stdout.write(`${statusLine}\n`);
} catch (err) {
  process.stderr.write(`error: ${err.message}\n${consoleLines.join('\n')}\n`);
  status = 1;
} finally {
  await browser.close();
  server.kill();
}
process.exit(status);

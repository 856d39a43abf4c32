#!/usr/bin/env node
// A tiny static server for the PixelCNN web demo: serves this folder (the page, its module and onnxruntime-web's
// wasm files from node_modules) and the sampler model, from the checkout only: nothing is fetched from elsewhere.
//
//   node serve.js [--model runs/pixelcnn/best.sampler.onnx] [--port 8000] [--host 127.0.0.1]
//
// The model is served as /model.onnx (default: model.onnx in this folder). Every response carries the
// cross-origin isolation headers (COOP/COEP), so the page may run onnxruntime-web with several wasm threads
// (SharedArrayBuffer); without them (python -m http.server) the page still works, on one thread.
// --port 0 picks a free port. The URL is printed once the server listens.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(fileURLToPath(import.meta.url));
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { port: '8000', host: '127.0.0.1', model: join(ROOT, 'model.onnx') };
  for (let k = 0; k < argv.length; k += 2) {
    const key = argv[k];
    const value = argv[k + 1];
    if (!key.startsWith('--') || value === undefined) fail(`expected --option value pairs, got: ${argv.join(' ')}`);
    const name = key.slice(2);
    if (!(name in args)) fail(`unknown option ${key}; options: --model FILE, --port N, --host ADDRESS`);
    args[name] = value;
  }
  const port = Number(args.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port must be an integer 0..65535, got ${args.port}`);
  return { ...args, port, model: resolve(args.model) };
}

// The file a URL path names, or null when it lies outside this folder (or is not a file).
function fileFor(urlPath, model) {
  let path;
  try {
    path = decodeURIComponent(urlPath.split('?')[0]);
  } catch {
    return null;
  }
  if (path === '/model.onnx') return model;
  if (path.endsWith('/')) path += 'index.html';
  const file = resolve(join(ROOT, path));
  if (file !== ROOT && !file.startsWith(ROOT + sep)) return null;
  return file;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  try {
    if (!statSync(args.model).isFile()) throw new Error('not a file');
  } catch {
    process.stderr.write(`warning: no model at ${args.model}: the page will say so. Export one with ` +
      '`python -m export onnx --checkpoint CK --sampler --out FILE` and pass --model FILE (or run `make web-demo`)\n');
  }
  const server = createServer((req, res) => {
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-cache',
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
      return;
    }
    const file = fileFor(req.url, args.model);
    let stat = null;
    try {
      stat = file && statSync(file);
    } catch {
      stat = null;
    }
    if (!stat || !stat.isFile()) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end(`not found: ${req.url}\n`);
      return;
    }
    res.writeHead(200, {
      ...headers,
      'Content-Type': TYPES[extname(file).toLowerCase()] || 'application/octet-stream',
      'Content-Length': stat.size,
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  server.on('error', (err) => fail(`cannot listen on ${args.host}:${args.port}: ${err.message}`));
  server.listen(args.port, args.host, () => {
    const { port } = server.address();
    const host = args.host.includes(':') ? `[${args.host}]` : args.host;
    process.stdout.write(`PixelCNN web demo: http://${host}:${port}/  (model: ${args.model}; Ctrl-C stops)\n`);
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
}

main();

#!/usr/bin/env node
// Samples images with a PixelCNN step model through onnxruntime-node: no Python, no PyTorch.
//
//   node sample.js --model best.step.onnx --labels 0,1,2 [--uniforms u.npy | --seed 0] [--height 8]
//                  [--temperature 1] --out samples.pgm
//
// The step model (python -m export onnx --step) predicts one sub-pixel from its ring-buffer caches; this program
// runs it once per sub-pixel in raster order, colour innermost, and draws each value by inverse CDF: the smallest
// v whose cumulative softmax(logits / T) exceeds the uniform U[n, c, i, j] (accumulated in float32, as the Python
// samplers do). Given the same uniforms (a float32 [N, C, H, W] .npy file), it draws the same images as
// pixelcnn.sampling.sample(method="cached") and export/ort_sampler.py. Output: binary PGM (grey) or PPM (colour),
// the N images stacked vertically.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const LEVELS = 256;

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { temperature: 1.0, seed: 0 };
  for (let k = 0; k < argv.length; k += 2) {
    const key = argv[k];
    const value = argv[k + 1];
    if (!key.startsWith('--') || value === undefined) fail(`expected --option value pairs, got ${argv.join(' ')}`);
    args[key.slice(2)] = value;
  }
  for (const required of ['model', 'out']) if (!args[required]) fail(`--${required} is required`);
  return args;
}

// .npy reader for float32 little-endian C-order arrays (format versions 1-3).
function readNpyFloat32(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') fail(`${file} is not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  if (!/'descr':\s*'<f4'/.test(header)) fail(`${file} must hold float32 ('<f4'), header: ${header.trim()}`);
  if (/'fortran_order':\s*True/.test(header)) fail(`${file} must be C-ordered`);
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const data = new Float32Array(count);
  for (let k = 0; k < count; k++) data[k] = buf.readFloatLE(offset + 4 * k);
  return { shape, data };
}

// Uniforms when no file is given: a small xorshift generator (reproducible, not numpy's stream).
function drawUniforms(n, c, h, w, seed) {
  let s = (BigInt(seed) ^ 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
  const data = new Float32Array(n * c * h * w);
  for (let k = 0; k < data.length; k++) {
    s ^= (s << 13n) & 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= (s << 17n) & 0xffffffffffffffffn;
    data[k] = Number(s >> 40n) / 2 ** 24;
  }
  return { shape: [n, c, h, w], data };
}

// Inverse-CDF draw from logits[off .. off+256) in float32 arithmetic (Math.fround after every operation).
function pick(logits, off, u, temperature) {
  const t = Math.fround(temperature);
  let max = -Infinity;
  const z = new Float32Array(LEVELS);
  for (let v = 0; v < LEVELS; v++) {
    z[v] = Math.fround(logits[off + v] / t);
    if (z[v] > max) max = z[v];
  }
  let sum = 0;
  for (let v = 0; v < LEVELS; v++) {
    z[v] = Math.fround(Math.exp(Math.fround(z[v] - max)));
    sum = Math.fround(sum + z[v]);
  }
  let cdf = 0;
  let value = 0;
  for (let v = 0; v < LEVELS; v++) {
    cdf = Math.fround(cdf + Math.fround(z[v] / sum));
    if (cdf <= u) value++;
  }
  return Math.min(value, LEVELS - 1);
}

function writePnm(file, image, n, c, h, w) {
  const header = Buffer.from(`${c === 1 ? 'P5' : 'P6'}\n${w} ${n * h}\n255\n`, 'latin1');
  const pixels = Buffer.alloc(n * h * w * c);
  for (let b = 0; b < n; b++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++)
        for (let k = 0; k < c; k++) pixels[((b * h + i) * w + j) * c + k] = image[((b * c + k) * h + i) * w + j];
  // write next to the target and rename, so a reader never sees a partial file
  const tmp = path.join(path.dirname(path.resolve(file)), `.tmp-${process.pid}-${path.basename(file)}`);
  fs.writeFileSync(tmp, Buffer.concat([header, pixels]));
  fs.renameSync(tmp, file);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(args.model)) fail(`model ${args.model} does not exist (export one: python -m export onnx --step)`);
  const session = await ort.InferenceSession.create(args.model, { executionProviders: ['cpu'] });
  const meta = Object.fromEntries(session.inputMetadata.map((m) => [m.name, m]));
  if (!meta.position || !meta.cache_0) fail(`${args.model} is not a step model (export it with --step)`);
  const cacheNames = session.inputNames.filter((name) => name.startsWith('cache_'));
  const firstShape = meta.cache_0.shape; // [rows, W + 2 (rows - 1), C, batch]
  const channels = firstShape[2];
  const width = firstShape[1] - 2 * (firstShape[0] - 1);
  const conditional = session.inputNames.includes('label');

  const labels = args.labels ? args.labels.split(',').map(Number) : null;
  let uniforms;
  if (args.uniforms) {
    uniforms = readNpyFloat32(args.uniforms);
  } else {
    const n = labels ? labels.length : Number(args.n);
    if (!args.height || !n) fail('without --uniforms pass --height and --labels (or --n for an unconditional model)');
    uniforms = drawUniforms(n, channels, Number(args.height), width, Number(args.seed));
  }
  const [n, c, h, w] = uniforms.shape;
  if (uniforms.shape.length !== 4 || c !== channels || w !== width)
    fail(`uniforms must be float32 [N, ${channels}, H, ${width}] for this model, got [${uniforms.shape}]`);
  if (conditional && (!labels || labels.length !== n || labels.some((l) => !Number.isInteger(l) || l < 0)))
    fail(`--labels must be ${n} comma-separated class indices (one per image)`);
  const temperature = Number(args.temperature);
  if (!(temperature > 0)) fail(`--temperature must be > 0, got ${args.temperature}`);

  const feeds = { last: new ort.Tensor('uint8', new Uint8Array(n), [n]) };
  if (conditional) feeds.label = new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [n]);
  for (const name of cacheNames) {
    const shape = meta[name].shape.map((d) => (typeof d === 'number' ? d : n)); // the batch dim is symbolic
    feeds[name] = new ort.Tensor('float32', new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  }
  const image = new Uint8Array(n * c * h * w);
  const start = process.hrtime.bigint();
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      for (let k = 0; k < c; k++) {
        feeds.position = new ort.Tensor('int64', BigInt64Array.from([BigInt(i), BigInt(j), BigInt(k)]), [3]);
        const out = await session.run(feeds);
        const logits = out.logits.data;
        const last = new Uint8Array(n);
        for (let b = 0; b < n; b++) {
          const at = ((b * c + k) * h + i) * w + j;
          last[b] = pick(logits, b * LEVELS, uniforms.data[at], temperature);
          image[at] = last[b];
        }
        feeds.last = new ort.Tensor('uint8', last, [n]);
        for (const name of cacheNames) feeds[name] = out[`${name}_next`];
      }
    }
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  writePnm(args.out, image, n, c, h, w);
  console.log(`wrote ${args.out}: ${n} images ${c}x${h}x${w} in ${seconds.toFixed(2)} s ` +
              `(${(n / seconds).toFixed(2)} images/s, onnxruntime-node ${ort.env.versions.node})`);
}

main().catch((e) => fail(e.message));

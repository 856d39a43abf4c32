#!/usr/bin/env node
// Samples images with a PixelCNN sampler model through onnxruntime-node, in one run: no Python, no PyTorch.
//
//   node sample.js --model best.sampler.onnx --labels 0,1,2 [--uniforms u.npy | --seed 0] [--temperature 1]
//                  [--complete given.npy --keep-rows R] --out samples.pgm
//
// The sampler model (python -m export onnx --sampler; interface in export/sampler.py) takes
//   label int64 [N] (class-conditional models only), uniforms float32 [N, C, H, W] in [0, 1),
//   temperature float32 [], known uint8 [N, C, H, W], known_mask bool [N, C, H, W]
// and returns image uint8 [N, C, H, W]: the whole sampling loop (nested ONNX Scans over rows and pixels, with the
// draw rule of docs/DESIGN.md §5) runs inside ONNX Runtime. Given the same uniforms (a float32 [N, C, H, W] .npy file) it
// draws the same images as pixelcnn.sampling.sample(method="cached"). --complete keeps the top --keep-rows rows of
// the given uint8 [N, C, H, W] .npy images and samples the rest. The graph cannot raise errors, so this program
// checks every input first. Output: binary PGM (grey) or PPM (colour), the N images stacked vertically.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { temperature: '1', seed: '0' };
  for (let k = 0; k < argv.length; k += 2) {
    const key = argv[k];
    const value = argv[k + 1];
    if (!key.startsWith('--') || value === undefined) fail(`expected --option value pairs, got ${argv.join(' ')}`);
    args[key.slice(2)] = value;
  }
  for (const required of ['model', 'out']) if (!args[required]) fail(`--${required} is required`);
  return args;
}

// The model's metadata props (ONNX ModelProto.metadata_props: StringStringEntryProto {1: key, 2: value}), read
// from the file's bytes: onnxruntime-node does not expose them.
function readMetadata(bytes, keys) {
  const varint = (at) => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[at++];
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) return [value, at];
    }
  };
  const found = {};
  for (const key of keys) {
    const needle = Buffer.concat([Buffer.from([0x0a, key.length]), Buffer.from(key, 'latin1'), Buffer.from([0x12])]);
    const at = bytes.indexOf(needle);
    if (at < 0) continue;
    const [length, start] = varint(at + needle.length);
    found[key] = bytes.toString('utf8', start, start + length);
  }
  return found;
}

// .npy reader for little-endian C-order arrays (format versions 1-3) of the given dtype ('<f4' or '|u1').
function readNpy(file, descr) {
  if (!fs.existsSync(file)) fail(`${file} does not exist`);
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') fail(`${file} is not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  const got = (header.match(/'descr':\s*'([^']*)'/) || [])[1];
  if (got !== descr) return { descr: got, shape: [], data: null };
  if (/'fortran_order':\s*True/.test(header)) fail(`${file} must be C-ordered`);
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = buf.subarray(start + headerLen, start + headerLen + count * (descr === '<f4' ? 4 : 1));
  const data = descr === '<f4' ? new Float32Array(count) : new Uint8Array(count);
  if (descr === '<f4') for (let k = 0; k < count; k++) data[k] = bytes.readFloatLE(4 * k);
  else data.set(bytes);
  return { descr, shape, data };
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
  return { descr: '<f4', shape: [n, c, h, w], data };
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
  if (!/\.(pgm|ppm|pnm)$/.test(args.out)) fail(`--out must end in .pgm, .ppm or .pnm, got ${args.out}`);
  if (!fs.existsSync(args.model))
    fail(`model ${args.model} does not exist (export one: python -m export onnx --sampler)`);
  const meta = readMetadata(fs.readFileSync(args.model), ['pixelcnn.graph', 'pixelcnn.channels',
    'pixelcnn.image_size', 'pixelcnn.num_classes']);
  if (meta['pixelcnn.graph'] !== 'sampler')
    fail(`${args.model} is not a pixelcnn sampler model (export it with python -m export onnx --sampler)`);
  const channels = Number(meta['pixelcnn.channels']);
  const [height, width] = JSON.parse(meta['pixelcnn.image_size']);
  const classes = Number(meta['pixelcnn.num_classes']);

  const labels = args.labels ? args.labels.split(',').map(Number) : null;
  let uniforms;
  if (args.uniforms) {
    uniforms = readNpy(args.uniforms, '<f4');
  } else {
    const n = labels ? labels.length : Number(args.n);
    if (!(n >= 1)) fail('without --uniforms pass --labels (or --n for an unconditional model)');
    uniforms = drawUniforms(n, channels, height, width, Number(args.seed));
  }
  const [n, c, h, w] = uniforms.shape;
  if (uniforms.descr !== '<f4' || uniforms.shape.length !== 4 || c !== channels || h !== height || w !== width)
    fail(`uniforms must be float32 [N, ${channels}, ${height}, ${width}] for this model, got ` +
         `${uniforms.descr} [${uniforms.shape}]`);
  if (!uniforms.data.every((u) => u >= 0 && u < 1)) fail('uniforms must lie in [0, 1)');
  if (classes) {
    if (!labels || labels.length !== n || labels.some((l) => !Number.isInteger(l)))
      fail(`--labels must be ${n} comma-separated class indices (one per image)`);
    if (labels.some((l) => l < 0 || l >= classes)) fail(`labels must lie in 0..${classes - 1}, got ${labels}`);
  } else if (labels) {
    fail('this model is unconditional: pass --n (or --uniforms), not --labels');
  }
  const temperature = Number(args.temperature);
  if (!(temperature > 0 && Number.isFinite(temperature))) fail(`--temperature must be > 0, got ${args.temperature}`);

  const size = n * c * h * w;
  const known = new Uint8Array(size);
  const mask = new Uint8Array(size); // bool tensor data: 0 / 1 bytes
  if (args.complete) {
    const given = readNpy(args.complete, '|u1');
    if (given.descr !== '|u1' || given.shape.join() !== uniforms.shape.join())
      fail(`--complete must hold uint8 [${uniforms.shape}] (the uniforms' shape), got ${given.descr} [${given.shape}]`);
    const rows = Number(args['keep-rows']);
    if (!(Number.isInteger(rows) && rows >= 0 && rows <= h)) fail(`--keep-rows must lie in 0..${h}`);
    known.set(given.data);
    for (let k = 0; k < size; k++) mask[k] = Math.floor(k / w) % h < rows ? 1 : 0;
  }
  const dims = [n, c, h, w];
  const feeds = {
    uniforms: new ort.Tensor('float32', uniforms.data, dims),
    temperature: new ort.Tensor('float32', Float32Array.from([temperature]), []),
    known: new ort.Tensor('uint8', known, dims),
    known_mask: new ort.Tensor('bool', mask, dims),
  };
  if (classes) feeds.label = new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [n]);

  const session = await ort.InferenceSession.create(args.model, { executionProviders: ['cpu'] });
  const start = process.hrtime.bigint();
  const { image } = await session.run(feeds);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  writePnm(args.out, image.data, n, c, h, w);
  console.log(`wrote ${args.out}: ${n} images ${c}x${h}x${w} in ${seconds.toFixed(2)} s ` +
              `(${(n / seconds).toFixed(2)} images/s, one run, onnxruntime-node ${ort.env.versions.node})`);
}

main().catch((e) => fail(e.message));

// PixelCNN web demo: samples and completes images with a sampler model (python -m export onnx --sampler) in one
// onnxruntime-web (wasm) run per batch. Everything is served from the checkout (serve.js); nothing is fetched from a
// CDN. URL parameters: model=URL (default model.onnx), threads=N (default: up to 4 when the page is cross-origin
// isolated, else 1), sample=0 (no grid at load).
//
// The sampler model's contract (the sampling contract of docs/DESIGN.md): inputs label int64 [N] (class-conditional
// models only), uniforms float32 [N, C, H, W] in [0, 1), temperature float32 scalar, known uint8 [N, C, H, W] and
// known_mask bool [N, C, H, W] (a known sub-pixel is copied, not drawn; all false = plain sampling); output image
// uint8 [N, C, H, W]. The same uniforms give the same images as pixelcnn.sampling.sample in Python, so the page
// takes uniforms from its caller too: window.pixelcnn.sample / .complete (the test hook, used by tests/test_web.py).
import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') || 'model.onnx';
const GAP = 2; // pixels between grid cells
const BACKGROUND = [40, 40, 40];
const DROPPED = 128; // how the given column shows a sub-pixel that is not kept
const MAX_BATCH = 256;

const $ = (id) => document.getElementById(id);
const statusLine = $('status');

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle('error', isError);
}

// ---------------------------------------------------------------------------------------------------------------
// The model: metadata props (read from the ONNX protobuf: onnxruntime-web does not expose them) and the session.

// ModelProto.metadata_props (field 14) as {key: value}; the rest of the file is skipped, not decoded.
function readMetadataProps(bytes) {
  const props = {};
  const text = new TextDecoder();
  let pos = 0;
  const varint = (end) => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (pos >= end) throw new Error('truncated protobuf');
      const b = bytes[pos++];
      value += (b & 0x7f) * scale;
      if (!(b & 0x80)) return value;
      scale *= 128;
    }
  };
  const skip = (wire, end) => {
    if (wire === 0) varint(end);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint(end); // read before pos: the varint moves it
      pos += len;
    }
    else throw new Error(`protobuf wire type ${wire}`);
  };
  while (pos < bytes.length) {
    const key = varint(bytes.length);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 14 && wire === 2) {
      const len = varint(bytes.length);
      const end = pos + len;
      let name = '';
      let value = '';
      while (pos < end) {
        const k = varint(end);
        if (k === 10 || k === 18) {
          const len = varint(end);
          const s = text.decode(bytes.subarray(pos, pos + len));
          pos += len;
          if (k === 10) name = s;
          else value = s;
        } else skip(k % 8, end);
      }
      props[name] = value;
    } else skip(wire, bytes.length);
    if (pos > bytes.length) throw new Error('truncated protobuf');
  }
  return props;
}

async function loadModel(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`no sampler model at ${url} (HTTP ${response.status}). Export one with \`python -m export onnx ` +
      '--checkpoint CK --sampler --out FILE\` and serve it with `node serve.js --model FILE` (or `make web-demo`)');
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  let meta;
  try {
    meta = readMetadataProps(bytes);
  } catch (err) {
    throw new Error(`${url} is not an ONNX model (${err.message})`);
  }
  const threads = Number(params.get('threads')) ||
    (self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1);
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;
  const graph = meta['pixelcnn.graph'];
  if (graph && graph !== 'sampler') {
    throw new Error(`${url} is a PixelCNN ${graph} model, not a sampler model: export one with ` +
      '`python -m export onnx --checkpoint CK --sampler`');
  }
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  const inputs = session.inputNames;
  for (const name of ['uniforms', 'temperature', 'known', 'known_mask']) {
    if (!inputs.includes(name)) {
      throw new Error(`${url} is not a PixelCNN sampler model (inputs ${inputs.join(', ')}; missing ${name}): ` +
        'export it with `python -m export onnx --checkpoint CK --sampler`');
    }
  }
  if (!session.outputNames.includes('image')) {
    throw new Error(`${url} is not a PixelCNN sampler model (outputs ${session.outputNames.join(', ')})`);
  }
  const channels = Number(meta['pixelcnn.channels']);
  const [height, width] = JSON.parse(meta['pixelcnn.image_size'] || '[]');
  const numClasses = Number(meta['pixelcnn.num_classes'] || 0);
  if (!(channels > 0 && height > 0 && width > 0)) {
    throw new Error(`${url} lacks the pixelcnn.channels / pixelcnn.image_size metadata: re-export it with ` +
      '`python -m export onnx --checkpoint CK --sampler`');
  }
  if ((numClasses > 0) !== inputs.includes('label')) {
    throw new Error(`${url}: metadata says ${numClasses} classes but the label input is ` +
      `${inputs.includes('label') ? 'present' : 'absent'}`);
  }
  let classNames = null;
  try {
    classNames = JSON.parse(meta['pixelcnn.class_names'] || 'null');
  } catch {
    classNames = null;
  }
  if (!Array.isArray(classNames) || classNames.length !== numClasses) {
    classNames = Array.from({ length: numClasses }, (_, k) => `class ${k}`);
  }
  return { session, channels, height, width, numClasses, classNames: classNames.map(String), threads, meta };
}

// ---------------------------------------------------------------------------------------------------------------
// One run: checks every input (a clear error naming the problem and the fix), then one session.run.

function shapeText(n, m) {
  return `[${n}, ${m.channels}, ${m.height}, ${m.width}]`;
}

function checkLabels(m, labels, n) {
  if (m.numClasses === 0) {
    if (labels != null) {
      throw new Error('this model is unconditional: pass no labels, and n (the number of images)');
    }
    if (!Number.isInteger(n) || n < 1 || n > MAX_BATCH) {
      throw new Error(`n (number of images) must be an integer in 1..${MAX_BATCH}, got ${n}`);
    }
    return n;
  }
  if (labels == null || typeof labels.length !== 'number') {
    throw new Error(`labels are required for this class-conditional model: one integer in 0..${m.numClasses - 1} ` +
      'per image');
  }
  if (labels.length < 1 || labels.length > MAX_BATCH) {
    throw new Error(`give 1..${MAX_BATCH} labels (one per image), got ${labels.length}`);
  }
  for (let k = 0; k < labels.length; k++) {
    const v = labels[k];
    if (!Number.isInteger(v) || v < 0 || v >= m.numClasses) {
      throw new Error(`label ${v} (image ${k}) is out of range: this model has ${m.numClasses} classes, ` +
        `labels 0..${m.numClasses - 1}`);
    }
  }
  if (n != null && n !== labels.length) throw new Error(`n = ${n} but ${labels.length} labels were given`);
  return labels.length;
}

function checkArray(name, array, n, m, what) {
  const size = n * m.channels * m.height * m.width;
  if (array == null || typeof array.length !== 'number') {
    throw new Error(`${name} must be ${what} of shape ${shapeText(n, m)} (${size} values, C-order), got ${array}`);
  }
  if (array.length !== size) {
    throw new Error(`${name} must have shape ${shapeText(n, m)} = ${size} values (C-order), got ${array.length} ` +
      `values`);
  }
}

function makeFeeds(m, { labels = null, n = null, temperature = 1, uniforms, known = null, knownMask = null }) {
  n = checkLabels(m, labels, n);
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    throw new Error(`temperature must be a number > 0, got ${temperature}`);
  }
  checkArray('uniforms', uniforms, n, m, 'float32 values in [0, 1)');
  const u = Float32Array.from(uniforms);
  for (let k = 0; k < u.length; k++) {
    if (!(u[k] >= 0 && u[k] < 1)) {
      throw new Error(`uniforms must lie in [0, 1) (as float32), got ${uniforms[k]} at index ${k}`);
    }
  }
  const size = u.length;
  const shape = [n, m.channels, m.height, m.width];
  const knownBytes = new Uint8Array(size);
  const maskBytes = new Uint8Array(size);
  if ((known == null) !== (knownMask == null)) {
    throw new Error('completion needs both known (uint8 values) and knownMask (true where a sub-pixel is kept)');
  }
  if (known != null) {
    checkArray('known', known, n, m, 'uint8 values');
    checkArray('knownMask', knownMask, n, m, 'booleans');
    for (let k = 0; k < size; k++) {
      const v = known[k];
      if (!Number.isInteger(v) || v < 0 || v > 255) throw new Error(`known must hold integers 0..255, got ${v}`);
      const keep = knownMask[k];
      if (keep !== true && keep !== false && keep !== 0 && keep !== 1) {
        throw new Error(`knownMask must hold booleans (or 0/1), got ${keep} at index ${k}`);
      }
      knownBytes[k] = v;
      maskBytes[k] = keep ? 1 : 0;
    }
  }
  const feeds = {
    uniforms: new ort.Tensor('float32', u, shape),
    temperature: new ort.Tensor('float32', Float32Array.of(temperature), []),
    known: new ort.Tensor('uint8', knownBytes, shape),
    known_mask: new ort.Tensor('bool', maskBytes, shape),
  };
  if (m.numClasses > 0) feeds.label = new ort.Tensor('int64', BigInt64Array.from(labels, (v) => BigInt(v)), [n]);
  return { feeds, n, shape, knownBytes, maskBytes };
}

let queue = Promise.resolve(); // one run at a time: a wasm session is not re-entrant

function generate(m, options) {
  const job = queue.then(async () => {
    const { feeds, n, shape, knownBytes, maskBytes } = makeFeeds(m, options);
    const start = performance.now();
    const out = await m.session.run(feeds);
    const ms = performance.now() - start;
    const images = out.image.data;
    if (!(images instanceof Uint8Array) || images.length !== feeds.uniforms.data.length) {
      throw new Error(`the model returned ${out.image.type} ${JSON.stringify(out.image.dims)}, expected uint8 ` +
        `${JSON.stringify(shape)}`);
    }
    return { images, n, shape, ms, knownBytes, maskBytes };
  });
  queue = job.catch(() => {});
  return job;
}

// ---------------------------------------------------------------------------------------------------------------
// Drawing: images [N, C, H, W] as a grid of cells, each pixel a scale x scale block, GAP pixels of BACKGROUND
// between cells. C = 1 is grey, C = 3 RGB (other C: the first channel, grey).

function cellScale(m) {
  return Math.max(1, Math.round(96 / Math.max(m.height, m.width)));
}

function drawGrid(canvas, m, images, count, cols, scale) {
  const { channels: c, height: h, width: w } = m;
  const rows = Math.ceil(count / cols);
  const width = cols * (w * scale + GAP) + GAP;
  const height = rows * (h * scale + GAP) + GAP;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const pixels = ctx.createImageData(width, height);
  const d = pixels.data;
  for (let p = 0; p < width * height; p++) {
    d.set(BACKGROUND, 4 * p);
    d[4 * p + 3] = 255;
  }
  const plane = h * w;
  for (let idx = 0; idx < count; idx++) {
    const x0 = GAP + (idx % cols) * (w * scale + GAP);
    const y0 = GAP + Math.floor(idx / cols) * (h * scale + GAP);
    const base = idx * c * plane;
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const r = images[base + i * w + j];
        const g = c === 3 ? images[base + plane + i * w + j] : r;
        const b = c === 3 ? images[base + 2 * plane + i * w + j] : r;
        for (let dy = 0; dy < scale; dy++) {
          let o = 4 * ((y0 + i * scale + dy) * width + x0 + j * scale);
          for (let dx = 0; dx < scale; dx++, o += 4) {
            d[o] = r;
            d[o + 1] = g;
            d[o + 2] = b;
          }
        }
      }
    }
  }
  ctx.putImageData(pixels, 0, 0);
  return { cols, rows, scale, gap: GAP, background: BACKGROUND, count };
}

// ---------------------------------------------------------------------------------------------------------------
// The page.

function randomUniforms(size) {
  // float32 values in [0, 1): 24 random bits / 2^24 (Math.random rounded to float32 could give 1.0)
  const bits = new Uint32Array(size);
  for (let k = 0; k < size; k += 16384) crypto.getRandomValues(bits.subarray(k, Math.min(size, k + 16384)));
  const u = new Float32Array(size);
  for (let k = 0; k < size; k++) u[k] = (bits[k] >>> 8) / 16777216;
  return u;
}

function rate(n, ms) {
  return `${n} image${n === 1 ? '' : 's'} in ${ms.toFixed(0)} ms (${(n / (ms / 1000)).toFixed(1)} images/s, wasm, ` +
    `${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads === 1 ? '' : 's'})`;
}

function main() {
  const api = { layout: {}, last: null };
  window.pixelcnn = api;
  // resolves to api.info once the page is set up; rejects with the reason when the model cannot be used
  api.ready = loadModel(MODEL_URL).then((m) => setUp(m, api));
  api.ready.catch((err) => setStatus(`Error: ${err.message}`, true));
}

function setUp(m, api) {
  const { channels: c, height: h, width: w } = m;
  const plane = c * h * w;
  const kind = c === 1 ? 'grey' : c === 3 ? 'RGB' : `${c}-channel`;
  $('model-info').textContent = `Model: ${w}×${h} ${kind}, ` +
    `${m.numClasses ? `${m.numClasses} classes` : 'unconditional'}.`;
  const select = $('label');
  if (m.numClasses === 0) {
    select.add(new Option('(unconditional)', '-2'));
    select.disabled = true;
  } else {
    select.add(new Option('all, in turn', '-1'));
    m.classNames.forEach((name, k) => select.add(new Option(`${k}: ${name}`, String(k))));
    select.value = '0';
  }
  const keepRows = $('keep-rows');
  keepRows.max = String(h);
  keepRows.min = '0';
  keepRows.value = String(Math.floor(h / 2));
  const pad = new Uint8Array(plane); // the image being drawn for completion, [C, H, W]
  const padScale = Math.max(4, Math.round(192 / Math.max(h, w)));

  function drawPad() {
    const canvas = $('pad');
    drawGrid(canvas, m, pad, 1, 1, padScale);
    const ctx = canvas.getContext('2d');
    const rows = Math.min(h, Math.max(0, Number(keepRows.value) || 0));
    ctx.strokeStyle = '#e53935';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(0, GAP + rows * padScale);
    ctx.lineTo(canvas.width, GAP + rows * padScale);
    ctx.stroke();
  }
  drawPad();

  // Inputs read from the controls, as the buttons use them.
  function controls() {
    const count = Number($('count').value);
    if (!Number.isInteger(count) || count < 1 || count > MAX_BATCH) {
      throw new Error(`Count must be an integer in 1..${MAX_BATCH}, got ${$('count').value}`);
    }
    const temperature = Number($('temperature').value);
    const choice = Number(select.value);
    const labels = m.numClasses === 0 ? null :
      Array.from({ length: count }, (_, k) => (choice < 0 ? k % m.numClasses : choice));
    return { count, temperature, labels, n: count };
  }

  async function sample(options) {
    setStatus('Sampling…');
    const r = await generate(m, options);
    api.layout.grid = drawGrid($('grid'), m, r.images, r.n, Math.min(r.n, 8), cellScale(m));
    api.last = r;
    $('take-sample').disabled = false;
    setStatus(`Sampled ${rate(r.n, r.ms)}`);
    return { images: r.images, shape: r.shape, ms: r.ms };
  }

  async function complete(options) {
    if (options.known == null || options.knownMask == null) {
      throw new Error('complete needs known (uint8 [N, C, H, W]) and knownMask (bool [N, C, H, W])');
    }
    setStatus('Completing…');
    const r = await generate(m, options);
    // first cell: what was given (dropped sub-pixels grey, from the first image), then the completions
    const cells = new Uint8Array((r.n + 1) * plane);
    for (let k = 0; k < plane; k++) cells[k] = r.maskBytes[k] ? r.knownBytes[k] : DROPPED;
    cells.set(r.images, plane);
    api.layout.completions = drawGrid($('completions'), m, cells, r.n + 1, Math.min(r.n + 1, 9), cellScale(m));
    setStatus(`Completed ${rate(r.n, r.ms)}`);
    return { images: r.images, shape: r.shape, ms: r.ms };
  }

  const report = (err) => setStatus(`Error: ${err.message}`, true);
  const reported = (fn) => (options) => fn(options).catch((err) => {
    report(err);
    throw err;
  });
  // the test hook: the same paths as the buttons, with the caller's uniforms
  api.sample = reported(sample);
  api.complete = reported(complete);
  api.info = { channels: c, height: h, width: w, numClasses: m.numClasses, classNames: m.classNames,
    threads: ort.env.wasm.numThreads, dropped: DROPPED };

  $('sample').addEventListener('click', () => {
    try {
      const o = controls();
      sample({ ...o, uniforms: randomUniforms(o.count * plane) }).catch(report);
    } catch (err) {
      report(err);
    }
  });
  $('complete').addEventListener('click', () => {
    try {
      const o = controls();
      const rows = Number(keepRows.value);
      if (!Number.isInteger(rows) || rows < 0 || rows > h) throw new Error(`Keep rows must be 0..${h}`);
      const known = new Uint8Array(o.count * plane);
      const knownMask = new Uint8Array(o.count * plane);
      for (let idx = 0; idx < o.count; idx++) {
        known.set(pad, idx * plane);
        for (let k = 0; k < c; k++) knownMask.fill(1, idx * plane + k * h * w, idx * plane + k * h * w + rows * w);
      }
      complete({ ...o, uniforms: randomUniforms(o.count * plane), known, knownMask }).catch(report);
    } catch (err) {
      report(err);
    }
  });
  keepRows.addEventListener('input', drawPad);
  $('clear').addEventListener('click', () => {
    pad.fill(0);
    drawPad();
  });
  $('take-sample').addEventListener('click', () => {
    if (api.last) pad.set(api.last.images.subarray(0, plane));
    drawPad();
  });

  // drawing on the pad with the brush colour (grey models: its luminance)
  const padCanvas = $('pad');
  function paint(event) {
    if (!(event.buttons & 1)) return;
    const box = padCanvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) * padCanvas.width) / box.width - GAP;
    const y = ((event.clientY - box.top) * padCanvas.height) / box.height - GAP;
    const i = Math.floor(y / padScale);
    const j = Math.floor(x / padScale);
    if (i < 0 || j < 0 || i >= h || j >= w) return;
    const hex = $('brush').value;
    const rgb = [1, 3, 5].map((o) => parseInt(hex.slice(o, o + 2), 16));
    const values = c === 3 ? rgb : Array(c).fill(Math.round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]));
    for (let k = 0; k < c; k++) pad[k * h * w + i * w + j] = values[k];
    drawPad();
  }
  padCanvas.addEventListener('pointerdown', (e) => {
    padCanvas.setPointerCapture(e.pointerId);
    paint(e);
  });
  padCanvas.addEventListener('pointermove', paint);

  // uploading: resized to the model's size; grey models take the luminance
  $('upload').addEventListener('change', async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file);
      const canvas = new OffscreenCanvas(w, h);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0, w, h);
      const d = ctx.getImageData(0, 0, w, h).data;
      for (let p = 0; p < h * w; p++) {
        if (c === 3) for (let k = 0; k < 3; k++) pad[k * h * w + p] = d[4 * p + k];
        else {
          const grey = Math.round(0.299 * d[4 * p] + 0.587 * d[4 * p + 1] + 0.114 * d[4 * p + 2]);
          for (let k = 0; k < c; k++) pad[k * h * w + p] = grey;
        }
      }
      drawPad();
      setStatus(`Loaded ${file.name} (resized to ${w}×${h}); press Complete`);
    } catch (err) {
      report(new Error(`cannot read ${file.name} as an image: ${err.message}`));
    }
  });

  for (const id of ['sample', 'complete']) $(id).disabled = false;
  setStatus(`Model loaded (onnxruntime-web ${ort.env.versions?.web ?? ''}, wasm, ${ort.env.wasm.numThreads} ` +
    `thread${ort.env.wasm.numThreads === 1 ? '' : 's'}). Pick a class and press Sample.`);
  if (params.get('sample') !== '0') $('sample').click(); // a first grid at once (sample=0: none, for tests)
  return api.info;
}

main();

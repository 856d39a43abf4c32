"""The sampler model: whole images in one ONNX ``run`` (docs/DESIGN.md §5).

Interface (names are the contract; N is dynamic):

  inputs   ``label``       int64 [N]            class per image (class-conditional models only; absent otherwise)
           ``uniforms``    float32 [N, C, H, W]  the sampling contract's U, in [0, 1)
           ``temperature`` float32 []            softmax temperature, > 0 (the graph divides by it in float64)
           ``known``       uint8 [N, C, H, W]    completion: values to keep (anything where known_mask is false)
           ``known_mask``  bool [N, C, H, W]     true = copy ``known``, false = draw; all false = plain sampling
  output   ``image``       uint8 [N, C, H, W]

Metadata props: those of every export (``pixelcnn.image_size``, ``pixelcnn.channels``, ``pixelcnn.num_classes``,
``pixelcnn.levels``, ``pixelcnn.normalisation``, ``pixelcnn.config``, ...) plus ``pixelcnn.graph = "sampler"``
and ``pixelcnn.precision`` (the network's float type; the draw is always float64).

Inside (standard ai.onnx operators only): two nested ``Scan``s, rows outside, the pixels of a row inside, the
colours of a pixel unrolled in the inner body. The graph is written here node by node from the weights of the one
cached step (``pixelcnn.step.cached_step``), not traced: tracing gave a body of ~300 nodes per sub-pixel, almost
all index arithmetic, where ONNX Runtime spends ~0.7 us of dispatch per node. Every k x k layer is split the way
the gated step already splits its two stacks:

- the taps on rows above the centre (every layer's, and the whole gated vertical stack) depend only on finished
  rows, so the outer body computes them once per row for all W positions (one MatMul per layer over the rows it
  keeps as Scan state) and hands them to the inner Scan as scan inputs, bias and class vector included;
- the centre row's taps left of the centre read the finished inputs of the last few positions, which the inner
  Scan carries as state (a shift register: renamed, never copied or indexed), one Gemm per layer per pixel;
- the centre tap reads the current position's own input, one Gemm per layer per colour.

So the inner body is index-free: no position arithmetic, no scatter into caches, no gathers of windows; its scan
outputs (each sub-pixel's value and each layer's final input at the position) become the rows the next row reads.
The draw rule (``pixelcnn.draw.draw_rule``) is written out in float64 operation for operation (exp_rn's Horner
steps, the chunked CDF with ONNX's exclusive CumSum for the chunk offsets).

The same uniforms give the same image as ``pixelcnn.sampling.sample(..., temperature=T32)`` with
``T32 = float(numpy.float32(T))`` (exactly in float64, where the split sums differ from the cached step's only in
the last bits of the logits; in float32 up to draws at a CDF boundary). The graph cannot raise errors: front-ends
check the inputs (``export/ort_sampler.py`` for Python, ``export/examples/node/sample.js``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from pixelcnn.draw import _HORNER, CHUNK, CHUNKS, EXP_MIN, LN2_HI, LN2_LO, LOG2E
from pixelcnn.pixels import LEVELS, to_unit
from pixelcnn.step import CachedStep, GatedCachedStep, SpatialLayer, cached_step

# exp_rn's 2^k by a Gather with the (non-positive) k as a negative index: _POW2_NEG[0] = 1, _POW2_NEG[-n] = 2^-n
# for n <= 1021, and 0 for larger n. Positions below EXP_MIN are moved to _FLUSH, whose k indexes a 0: exp_rn's
# "0 below EXP_MIN" with one Where instead of two and a mask
_FLUSH = -800.0
IR_VERSION = 10  # what the dynamo exporter writes for these opsets; runtimes as old as the examples' read it
_POW2_LEN = 1160
_POW2_NEG = np.zeros(_POW2_LEN)
_POW2_NEG[0] = 1.0
_POW2_NEG[_POW2_LEN - np.arange(1, 1022)] = 2.0 ** -np.arange(1, 1022, dtype=np.float64)
assert int(np.floor(_FLUSH * LOG2E + 0.5)) > -_POW2_LEN and int(np.floor(_FLUSH * LOG2E + 0.5)) < -1021


class _Graph:
    """Nodes and constants of one (sub)graph. Each body holds the constants it uses as its own initializers
    (equal ones once): ONNX Runtime passes every outer-scope value a body reads as an extra feed at every
    iteration, which cost more than the body's nodes when the weights lived in the main graph."""

    def __init__(self, name: str, counter: list):
        self.name, self.nodes, self.consts, self.counter, self.seen = name, [], {}, counter, {}

    def fresh(self, hint: str = "t") -> str:
        self.counter[0] += 1
        return f"{hint}_{self.counter[0]}"

    def const(self, value, dtype=None, hint: str = "c") -> str:
        array = np.array(value, dtype=dtype)  # a copy, C-contiguous, 0-d stays 0-d
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.seen:
            self.seen[key] = self.fresh(hint)
            self.consts[self.seen[key]] = array
        return self.seen[key]

    def initializers(self) -> list:
        from onnx import numpy_helper

        return [numpy_helper.from_array(v, k) for k, v in self.consts.items()]

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: Optional[str] = None, **attrs):
        from onnx import helper

        outs = [name] if name is not None else [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else outs


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().copy()


class _Split:
    """A ``SpatialLayer``'s cropped weight split by where its taps read: rows above the centre (``above``
    ``[rows, cols, C_in, C_out]``, row offsets ``dy..``), the centre row's taps left of the centre (``left``
    ``[P * C_in, C_out]``, oldest position first) and its centre tap (``self_`` ``[C_in, C_out]`` or None where the
    mask keeps none of it)."""

    def __init__(self, layer: SpatialLayer):
        w = _np(layer.weight).reshape(layer.live_rows, layer.live_cols, layer.in_channels, layer.out_channels)
        self.layer, self.p, self.dy, self.dx = layer, layer.p, layer.dy, layer.dx
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        above = min(-layer.dy, layer.live_rows)  # rectangle rows strictly above the centre
        self.above = w[:above]
        centre = w[above] if layer.live_rows > above else np.zeros((0,) + w.shape[1:], w.dtype)
        self.left_taps = max(0, -layer.dx) if len(centre) else 0
        self.left = centre[: self.left_taps].reshape(-1, layer.out_channels)
        self.self_ = centre[self.left_taps] if len(centre) > self.left_taps else None
        if len(centre) > self.left_taps + 1 and np.any(centre[self.left_taps + 1 :]):
            raise ValueError("a cached layer reads right of its centre on the centre row")
        self.bias = _np(layer.bias)


def _row_conv(g: _Graph, rows: list[str], weight: np.ndarray, dx: int, p: int, width: int) -> str:
    """The taps of ``weight`` ``[len(rows), cols, C_in, C_out]`` at all W positions of a row: ``rows`` are the
    input rows (each ``[W + 2p, N, C_in]``, zero padded, oldest first) -> ``[W, N, C_out]`` (no bias)."""
    n_rows, cols, c_in, c_out = weight.shape
    at = g.const(np.arange(width)[:, None] + p + dx + np.arange(cols)[None, :], np.int64, "cols")
    windows = [g.op("Gather", r, at, axis=0) for r in rows]  # [W, cols, N, C_in] each
    patch = windows[0] if n_rows == 1 else g.op("Concat", *windows, axis=1)
    patch = g.op("Transpose", patch, perm=[0, 2, 1, 3])  # [W, N, rows * cols, C_in]: the weight's row order
    patch = g.op("Reshape", patch, g.const([width, -1, n_rows * cols * c_in], np.int64, "shape"))
    return g.op("MatMul", patch, g.const(weight.reshape(-1, c_out), hint="w"))


def _gemm(g: _Graph, weight: np.ndarray, x: str, c: str) -> str:
    """``x @ weight + c``: x ``[N, K]``, weight ``[K, C_out]`` (a constant B, which ONNX Runtime prepacks; batch
    first, so the product is N x K x C_out and not C_out x K x N, whose N = 1 wastes MLAS's vector width)."""
    return g.op("Gemm", x, g.const(weight, hint="w"), c)


def _column(g: _Graph, bias: np.ndarray) -> str:
    return g.const(bias.reshape(-1), hint="b")


def _gate(g: _Graph, z: str, axis: int) -> str:
    """``tanh(a) * sigmoid(b)`` of the halves ``z = [a | b]`` on ``axis`` (``pixelcnn.step.gate``)."""
    a, b = g.op("Split", z, axis=axis, num_outputs=2, outputs=2)
    return g.op("Mul", g.op("Tanh", a), g.op("Sigmoid", b))


def _draw(g: _Graph, logits: str, u: str, temperature: str, cast: bool) -> str:
    """``pixelcnn.draw.draw_rule`` on logits ``[N, 256]``, u float64 ``[N, 1, 1]`` -> int64 ``[N]``."""
    from onnx import TensorProto

    f64 = lambda v: g.const(v, np.float64)  # noqa: E731
    s = g.op("Cast", logits, to=TensorProto.DOUBLE) if cast else logits
    s = g.op("Div", s, temperature)
    x = g.op("Sub", s, g.op("ReduceMax", s, g.const([1], np.int64), keepdims=1))
    x = g.op("Where", g.op("GreaterOrEqual", x, f64(EXP_MIN)), x, f64(_FLUSH))
    k = g.op("Floor", g.op("Add", g.op("Mul", x, f64(LOG2E)), f64(0.5)))
    r = g.op("Sub", g.op("Sub", x, g.op("Mul", k, f64(LN2_HI))), g.op("Mul", k, f64(LN2_LO)))
    p = f64(_HORNER[0])
    for c in _HORNER[1:]:
        p = g.op("Add", g.op("Mul", p, r), f64(c))
    two_k = g.op("Gather", g.const(_POW2_NEG, np.float64, "pow2"), g.op("Cast", k, to=TensorProto.INT64))
    e = g.op("Mul", p, two_k)
    local = g.op("CumSum", g.op("Reshape", e, g.const([-1, CHUNKS, CHUNK], np.int64)), g.const(2, np.int64))
    last = g.op("Gather", local, g.const([CHUNK - 1], np.int64), axis=2)  # chunk totals [N, 32, 1]
    offset = g.op("CumSum", last, g.const(1, np.int64), exclusive=1)  # (..(0 + t_0) + ..) + t_(c-1)
    total = g.op("Gather", g.op("Add", offset, last), g.const([CHUNKS - 1], np.int64), axis=1)  # [N, 1, 1]
    below = g.op("LessOrEqual", g.op("Add", offset, local), g.op("Mul", u, total))
    # at most 255 levels count: cdf[255] = total > u * total for u < 1 (front-ends check u), so no clamp
    return g.op("ReduceSum", g.op("Cast", below, to=TensorProto.INT64), g.const([1, 2], np.int64), keepdims=0)


def _subpixel_tail(g, step, x, colour, u, known, mask, temperature, cast, norm_row):
    """Head, draw and completion at one colour: hidden ``x`` -> (int64 value ``[N]``, normalised value ``[N, 1]``)."""
    head = step.head_hidden
    y = g.op("Relu", _gemm(g, _np(head.weight), g.op("Relu", x), _column(g, _np(head.bias))))
    w_o, b_o = _np(step.w_o)[:, :, colour], _np(step.b_o)[:, colour]
    logits = _gemm(g, w_o, y, _column(g, b_o))
    value = g.op("Where", mask, known, _draw(g, logits, u, temperature, cast))
    return value, g.op("Gather", norm_row, value, axis=0)


def _own_outputs(g: _Graph, outputs: list[str], inputs: list[str]) -> list[str]:
    """``outputs`` with an Identity where one is a body input passed straight through or repeats an earlier one:
    ONNX Runtime's Scan gave wrong states for such outputs (each output needs a node of its own)."""
    seen, own = set(inputs), []
    for n in outputs:
        own.append(g.op("Identity", n) if n in seen else n)
        seen.add(own[-1])
    return own


class _Builder:
    """The sampler graph of one cached step (``CachedStep`` or ``GatedCachedStep``): ``build() -> GraphProto``."""

    def __init__(self, step, conditional: bool):
        from onnx import helper

        self.step, self.conditional = step, conditional
        self.counter = [0]
        self.main = self.graph("sampler")
        self.np_dtype = _np(step.w_o).dtype
        self.float = helper.np_dtype_to_tensor_dtype(self.np_dtype)
        self.cast = step.dtype != torch.float64

    def graph(self, name: str) -> _Graph:
        return _Graph(name, self.counter)

    # outside the loops -------------------------------------------------------------------------------------
    def bias_embed(self, bias: np.ndarray, embed: Optional[torch.Tensor]) -> str:
        """``bias + embed[label]`` as ``[N, C_out]`` (``[C_out]`` without classes), computed once."""
        g = self.main
        col = _column(g, bias)
        if embed is None or not self.conditional:
            return col
        return g.op("Add", col, g.op("Gather", g.const(_np(embed), hint="embed"), "label", axis=0))

    def zeros(self, shape: tuple[int, ...]) -> str:
        """Zeros of ``shape`` with ``"N"`` standing for the batch size, in the network's dtype."""
        from onnx import helper

        g = self.main
        parts = [self.batch if d == "N" else g.const([d], np.int64) for d in shape]
        dims = g.op("Concat", *parts, axis=0)
        return g.op("ConstantOfShape", dims, value=helper.make_tensor("zero", self.float, [1], [0.0]))

    def build(self):
        from onnx import TensorProto, helper

        step, g = self.step, self.main
        c, h, w = step.channels, step.height, step.width
        self.batch = g.op("Shape", "uniforms", start=0, end=1)
        self.temperature = g.op("Cast", "temperature", to=TensorProto.DOUBLE)
        # per colour: [H, W, N] (rows, then positions), so the Scans slice them for free; u as [H, W, N, 1, 1],
        # the shape the draw broadcasts
        self.per_colour = []
        for name, to in (("uniforms", TensorProto.DOUBLE), ("known", TensorProto.INT64), ("known_mask", None)):
            x = g.op("Cast", name, to=to) if to is not None else name
            x = g.op("Transpose", x, perm=[1, 2, 3, 0])
            if name == "uniforms":
                x = g.op("Unsqueeze", x, g.const([4, 5], np.int64))
            self.per_colour.append([g.op("Gather", x, g.const(k, np.int64), axis=0) for k in range(c)])
        self.levels = _np(to_unit(torch.arange(LEVELS), step.dtype)).reshape(-1, 1)  # value -> network input
        values = self.gated_rows() if isinstance(step, GatedCachedStep) else self.pixelcnn_rows()
        stacked = [g.op("Unsqueeze", v, g.const([0], np.int64)) for v in values]
        image = stacked[0] if c == 1 else g.op("Concat", *stacked, axis=0)  # [C, H, W, N]
        g.op("Cast", g.op("Transpose", image, perm=[3, 0, 1, 2]), to=TensorProto.UINT8, name="image")

        dims = ["N", c, h, w]
        inputs = [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])] if self.conditional else []
        inputs += [
            helper.make_tensor_value_info("uniforms", TensorProto.FLOAT, dims),
            helper.make_tensor_value_info("temperature", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("known", TensorProto.UINT8, dims),
            helper.make_tensor_value_info("known_mask", TensorProto.BOOL, dims),
        ]
        outputs = [helper.make_tensor_value_info("image", TensorProto.UINT8, dims)]
        return helper.make_graph(g.nodes, g.name, inputs, outputs, initializer=g.initializers())

    def body(self, g: _Graph, inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]):
        """A Scan body: ``inputs``/``outputs`` are (name, element type) pairs (subgraph values need a type)."""
        from onnx import helper

        io = lambda pairs: [helper.make_tensor_value_info(n, t, None) for n, t in pairs]  # noqa: E731
        return helper.make_graph(g.nodes, g.name, io(inputs), io(outputs), initializer=g.initializers())

    def typed(self, names, elem) -> list[tuple[str, int]]:
        return [(n, elem) for n in names]

    def sample_row(self, rb: _Graph, above: list[str], left: list[tuple[np.ndarray, int, int]], pixel):
        """The inner Scan over the W positions of a row.

        ``above[l]``: layer l's ``[W, N, C_out]`` contribution of everything final before the row (its rows above,
        bias, class vector, gated link). ``left[l] = (weight [P * C_in, C_out], P, C_in)``: its centre-row taps
        left of the centre, fed from a shift register of the last P positions' inputs (``[N, P * C_in]``, oldest
        first, zeros at the row start: the padding). ``pixel(pb, partial, u, known, mask) -> (values, finals,
        emits)`` writes one pixel's colours from each layer's output over its final taps (``partial``):
        ``finals[l]`` is layer l's input at the pixel once all colours are drawn (shifted into the register),
        ``emits`` what the row body needs of the pixel (stacked by the Scan). Returns (values ``[W, N]`` per
        colour, stacked emits)."""
        from onnx import TensorProto

        c = self.step.channels
        pb = self.graph("pixel")
        regs = [pb.fresh("left") if taps else None for _, taps, _ in left]
        a_j = [pb.fresh("above") for _ in above]
        u, known, mask = ([pb.fresh(f"{kind}{k}") for k in range(c)] for kind in ("u", "known", "mask"))
        partial = [
            _gemm(pb, w, reg, a) if reg is not None else a for (w, _, _), reg, a in zip(left, regs, a_j, strict=True)
        ]
        values, finals, emits = pixel(pb, partial, u, known, mask)
        new_regs = []
        for (_, taps, width), reg, f in zip(left, regs, finals, strict=True):
            if reg is None:
                continue
            if taps > 1:  # drop the oldest position, append this one
                kept = pb.op(
                    "Slice",
                    reg,
                    pb.const([width], np.int64),
                    pb.const([taps * width], np.int64),
                    pb.const([1], np.int64),
                )
                f = pb.op("Concat", kept, f, axis=1)
            new_regs.append(f)
        old_regs = [r for r in regs if r is not None]
        outs = _own_outputs(pb, new_regs + values + emits, old_regs)
        body = self.body(
            pb,
            self.typed(old_regs + a_j, self.float)
            + self.typed(u, TensorProto.DOUBLE)
            + self.typed(known, TensorProto.INT64)
            + self.typed(mask, TensorProto.BOOL),
            self.typed(outs[: len(new_regs)], self.float)
            + self.typed(outs[len(new_regs) : len(new_regs) + c], TensorProto.INT64)
            + self.typed(outs[len(new_regs) + c :], self.float),
        )
        states = [self.zeros(("N", taps * width)) for _, taps, width in left if taps]
        outs = rb.op(
            "Scan",
            *states,
            *above,
            *self.row_u,
            *self.row_known,
            *self.row_mask,
            outputs=len(states) + c + len(emits),
            body=body,
            num_scan_inputs=len(above) + 3 * c,
        )
        outs = outs if isinstance(outs, list) else [outs]
        return outs[len(states) : len(states) + c], outs[len(states) + c :]

    def image_row(self, rb: _Graph, values: list[str], p: int) -> str:
        """The row just drawn (int64 ``[W, N]`` per colour) as the first layer's input row ``[W + 2p, N, C]``."""
        norm = [rb.op("Gather", rb.const(self.levels, hint="levels"), v, axis=0) for v in values]  # [W, N, 1] each
        row = norm[0] if len(norm) == 1 else rb.op("Concat", *norm, axis=2)
        return self.pad_row(rb, row, p)

    def scan_rows(self, row_state_shapes: list[tuple[int, ...]], row):
        """The outer Scan over the H rows: state = rows of layer inputs (``row_state_shapes``, zeros at the
        start), ``row(rb, states) -> new states`` builds the row body. Returns the value ``[H, W, N]`` per
        colour."""
        from onnx import TensorProto

        c, g = self.step.channels, self.main
        rb = self.graph("row")
        states = [rb.fresh("rows") for _ in row_state_shapes]
        self.row_u, self.row_known, self.row_mask = (
            [rb.fresh(f"{kind}{k}") for k in range(c)] for kind in ("u", "known", "mask")
        )
        new_states, values = row(rb, states)
        new_states = _own_outputs(rb, new_states, states)
        body = self.body(
            rb,
            self.typed(states, self.float)
            + self.typed(self.row_u, TensorProto.DOUBLE)
            + self.typed(self.row_known, TensorProto.INT64)
            + self.typed(self.row_mask, TensorProto.BOOL),
            self.typed(new_states, self.float) + self.typed(values, TensorProto.INT64),
        )
        init = [self.zeros((w, "N", ch)) for w, ch in row_state_shapes]
        outs = g.op(
            "Scan",
            *init,
            *(x for xs in self.per_colour for x in xs),
            outputs=len(init) + c,
            body=body,
            num_scan_inputs=3 * c,
        )
        outs = outs if isinstance(outs, list) else [outs]
        return outs[len(init) :]

    def pad_row(self, rb: _Graph, row: str, p: int) -> str:
        """``[W, N, C]`` -> ``[W + 2p, N, C]`` with zero columns (the convolutions' padding)."""
        return rb.op("Pad", row, rb.const([p, 0, 0, p, 0, 0], np.int64)) if p else row

    def tail(self, pb, x, colour, u, known, mask):
        levels = pb.const(self.levels, hint="levels")
        return _subpixel_tail(pb, self.step, x, colour, u, known, mask, self.temperature, self.cast, levels)

    # PixelCNN -------------------------------------------------------------------------------------------------
    def pixelcnn_rows(self) -> list[str]:
        step: CachedStep = self.step
        c, width = step.channels, step.width
        spatial = [_Split(step.first)] + [_Split(b.mid) for b in step.blocks]
        embeds = [step.embed] + [b.embed for b in step.blocks]
        bias = [self.bias_embed(s.bias, e) for s, e in zip(spatial, embeds, strict=True)]
        shapes = [(width + 2 * s.p, s.in_channels) for s in spatial for _ in range(len(s.above))]

        def pixel(pb, partial, u, known, mask):
            values, norms, finals, emits = [], [], [None] * len(spatial), [None] * len(step.blocks)
            first = spatial[0]
            x0 = partial[0]
            for colour in range(c):
                if colour > 0 and first.self_ is not None and np.any(first.self_[colour - 1]):
                    x0 = _gemm(pb, first.self_[colour - 1 : colour], norms[-1], x0)  # colour - 1 at the centre tap
                x = x0
                for b, (blk, s) in enumerate(zip(step.blocks, spatial[1:], strict=True), start=1):
                    pre = _gemm(pb, _np(blk.conv_in.weight), pb.op("Relu", x), _column(pb, _np(blk.conv_in.bias)))
                    t = pb.op("Relu", pre)
                    y = _gemm(pb, s.self_, t, partial[b]) if s.self_ is not None else partial[b]
                    out = _gemm(pb, _np(blk.conv_out.weight), pb.op("Relu", y), _column(pb, _np(blk.conv_out.bias)))
                    x = pb.op("Add", out, x)
                    finals[b], emits[b - 1] = t, pre  # the row body applies the ReLU once per row
                value, norm = self.tail(pb, x, colour, u[colour], known[colour], mask[colour])
                values.append(value)
                norms.append(norm)
            finals[0] = norms[0] if c == 1 else pb.op("Concat", *norms, axis=1)  # the pixel [N, C]
            return values, finals, emits

        def row(rb, states):
            at, above, rows = 0, [], []
            for s, b in zip(spatial, bias, strict=True):
                rs = states[at : at + len(s.above)]
                at += len(s.above)
                rows.append(rs)
                if rs:
                    above.append(rb.op("Add", _row_conv(rb, rs, s.above, s.dx, s.p, width), b))
                else:  # no rows above: the bias alone, for every position
                    above.append(rb.op("Expand", b, rb.const([width, 1, 1], np.int64)))
            left = [(s.left, s.left_taps, s.in_channels) for s in spatial]
            values, emits = self.sample_row(rb, above, left, pixel)
            inputs = [self.image_row(rb, values, spatial[0].p)]
            inputs += [self.pad_row(rb, rb.op("Relu", e), s.p) for e, s in zip(emits, spatial[1:], strict=True)]
            new = []
            for rs, x in zip(rows, inputs, strict=True):
                new += (rs + [x])[1:] if rs else []  # the rows this layer reads at the next row
            return new, values

        return self.scan_rows(shapes, row)

    # gated -------------------------------------------------------------------------------------------------
    def gated_rows(self) -> list[str]:
        step: GatedCachedStep = self.step
        c, width = step.channels, step.width
        layers = step.layers
        # vertical stack: all of it is row work; a layer reads rows dy.. of its input (the image for layer 0, the
        # previous layer's gated output, this row's included, for the others): the rows above are Scan state
        vertical = []
        for layer in layers:
            v = layer.v
            w = _np(v.weight).reshape(v.live_rows, v.live_cols, v.in_channels, v.out_channels)
            vertical.append((v, w, max(0, -v.dy)))
        horizontal = [_Split(layer.h) for layer in layers]
        if any(len(s.above) for s in horizontal):
            raise ValueError("a gated horizontal conv reads rows above its centre")
        v_bias = [self.bias_embed(_np(layer.v.bias), layer.embed_v) for layer in layers]
        # the horizontal conv's bias and class vector join the link term: both are final before the row
        link_bias = [self.bias_embed(_np(layer.link.bias) + _np(layer.h.bias), layer.embed_h) for layer in layers]
        shapes = [(width + 2 * v.p, v.in_channels) for v, _, n in vertical for _ in range(n)]

        def pixel(pb, partial, u, known, mask):
            values, norms, finals = [], [], [None] * len(layers)
            first = horizontal[0]
            z0 = partial[0]
            for colour in range(c):
                if colour > 0 and first.self_ is not None and np.any(first.self_[colour - 1]):
                    z0 = _gemm(pb, first.self_[colour - 1 : colour], norms[-1], z0)  # colour - 1 at the centre
                proj = layers[0].proj
                x = _gemm(pb, _np(proj.weight), _gate(pb, z0, 1), _column(pb, _np(proj.bias)))
                for b, (layer, s) in enumerate(zip(layers[1:], horizontal[1:], strict=True), start=1):
                    z = _gemm(pb, s.self_, x, partial[b]) if s.self_ is not None else partial[b]
                    out = _gemm(pb, _np(layer.proj.weight), _gate(pb, z, 1), _column(pb, _np(layer.proj.bias)))
                    finals[b] = x
                    x = pb.op("Add", out, x)
                value, norm = self.tail(pb, x, colour, u[colour], known[colour], mask[colour])
                values.append(value)
                norms.append(norm)
            finals[0] = norms[0] if c == 1 else pb.op("Concat", *norms, axis=1)  # the pixel [N, C]
            return values, finals, []

        def row(rb, states):
            at, held = 0, []
            for _, _, n in vertical:
                held.append(states[at : at + n])
                at += n
            links, inputs = [], [None]  # inputs[b]: layer b's input row [W + 2p, C_in, N] of this row
            for b, ((v, w, _), layer) in enumerate(zip(vertical, layers, strict=True)):
                rows = (held[b] + inputs[b : b + 1] if b else held[b])[: v.live_rows]
                pre = rb.op("Add", _row_conv(rb, rows, w, v.dx, v.p, width), v_bias[b])  # [W, N, 2h]
                link = rb.op("MatMul", pre, rb.const(_np(layer.link.weight), hint="w"))
                links.append(rb.op("Add", link, link_bias[b]))
                if b + 1 < len(layers):
                    inputs.append(self.pad_row(rb, _gate(rb, pre, 2), vertical[b + 1][0].p))
            left = [(s.left, s.left_taps, s.in_channels) for s in horizontal]
            values, _ = self.sample_row(rb, links, left, pixel)
            inputs[0] = self.image_row(rb, values, vertical[0][0].p)
            new = []
            for rs, x in zip(held, inputs, strict=True):
                new += (rs + [x])[1:] if rs else []  # the rows each layer reads at the next row
            return new, values

        return self.scan_rows(shapes, row)


def sampler_proto(model, dtype: torch.dtype = torch.float32, opset: int = 18):
    """The sampler model of ``model`` (either architecture) as an ``onnx.ModelProto``, its network in ``dtype``."""
    from onnx import helper

    step = cached_step(model).to(dtype).eval()
    graph = _Builder(step, model.num_classes > 0).build()
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="pixelcnn export.sampler",
        ir_version=IR_VERSION,
    )

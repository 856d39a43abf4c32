"""Compile the Triton masked-conv kernels for a named GPU (no GPU needed) and read what the SASS says.

    python -m benchmarks.triton_sass [--arch 90 80] [--dtype bf16 fp16 tf32] [--configs picked|all]
                                     [--dump DIR] [--json F] [--markdown F]

Every kernel (forward, grad_input, grad_weight) x dtype (bf16, fp16, fp32-tf32, fp32-ieee on request) x the seed's
layer shapes (7x7 mask A C=1 and C=3 -> 2h, 3x3 mask B h=64 and h=256; 32x32, batch 64) and the gated ones (the
vertical and horizontal stacks' first layers on C=1 and 3x3 layers h -> 2h at h=40, the matched-size MNIST model, and
h=128; the horizontal one with the link's residual in its epilogue) is compiled with Triton's
ahead-of-time path for sm_90 / sm_80, specialised the way the runtime would specialise it for those tensors
(integer 1 -> constant, multiples of 16 -> divisibility hints). One row per compiled kernel: registers, spilled
bytes, shared memory, tensor-core instructions (HGMMA on sm_90, HMMA), scalar 16-bit / vector global loads, FLOPs over
live taps. ``--dump DIR`` writes each cubin as ``<kernel>-<shape>-<dtype>-sm<arch>.cubin``. The roofline column is an
estimate from FLOPs and bytes only (H100: ~800 bf16/fp16 TFLOP/s, ~400 TF32, ~3 TB/s), never a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import triton
from triton.backends.compiler import GPUTarget

from pixelcnn.atomic import atomic_write_text
from pixelcnn.masks import LiveTaps, conv_mask, live_taps
from pixelcnn.ops import triton_masked_conv as tmc

BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
SMEM_LIMIT = {90: 227 * 1024, 80: 163 * 1024}  # opt-in shared memory per block
PEAK_TFLOPS = {"bf16": 800.0, "fp16": 800.0, "tf32": 400.0, "ieee": 60.0}  # H100 SXM dense, rounded
PEAK_TBPS = 3.0
ELEMENT = {"bf16": ("bf16", 2), "fp16": ("fp16", 2), "tf32": ("fp32", 4), "ieee": ("fp32", 4)}


@dataclass(frozen=True)
class Layer:
    name: str
    cin: int
    cout: int
    k: int
    bias: bool
    cond: bool
    relu: bool
    n: int = 64
    h: int = 32
    w: int = 32
    mask: str = "B"
    residual: bool = False

    @property
    def live(self) -> LiveTaps:
        """The seed's layers count mask B's taps (mask A on one colour: one all-zero tap more, as the kernel runs it
        on colours); the gated ones their mask's."""
        if self.mask in ("A", "B"):
            return tmc.seed_live_taps(self.k)
        return live_taps(conv_mask(self.cout, self.cin, self.k, self.mask, 3, gated_out=True))

    @property
    def taps(self) -> int:
        return self.live.count

    @property
    def pixels(self) -> int:
        return self.n * self.h * self.w

    def flops(self) -> int:
        """2 * pixels * Cin * Cout * live taps (the same count for forward, grad_input and grad_weight)."""
        return 2 * self.pixels * self.cin * self.cout * self.taps


SEED_LAYERS = [
    Layer("7x7A-C1", 1, 512, 7, True, True, False),
    Layer("7x7A-C3", 3, 512, 7, True, True, False),
    Layer("3x3B-h64", 64, 64, 3, True, True, True),
    Layer("3x3B-h256", 256, 256, 3, True, True, True),
]
GATED_LAYERS = [
    Layer("7x7vA-C1", 1, 80, 7, True, True, False, mask="vA"),
    Layer("7x7hA-C1", 1, 80, 7, True, True, False, mask="hA", residual=True),
    Layer("3x3vB-h40", 40, 80, 3, True, True, False, mask="vB"),
    Layer("3x3hB-h40", 40, 80, 3, True, True, False, mask="hB", residual=True),
    Layer("3x3vB-h128", 128, 256, 3, True, True, False, mask="vB"),
    Layer("3x3hB-h128", 128, 256, 3, True, True, False, mask="hB", residual=True),
]
ALL_LAYERS = SEED_LAYERS + GATED_LAYERS
KERNELS = ("forward", "grad_input", "grad_weight")


def _channels_last_strides(n, c, h, w):
    return (h * w * c, 1, w * c, c)


def kernel_geometry(layer: Layer, kernel: str) -> tuple[int, LiveTaps, int, int]:
    """(kernel size, live taps, reduction channels, output channels) the launcher gives the kernel: the first layer
    runs as a 1x1 GEMM over its live taps folded into channels (padded to a multiple of 16)."""
    if kernel == "grad_input":
        return layer.k, layer.live, layer.cout, layer.cin
    if tmc.folds_taps(layer.cin, layer.k):
        return 1, tmc.ONE_TAP, triton.cdiv(layer.taps * layer.cin, 16) * 16, layer.cout
    return layer.k, layer.live, layer.cin, layer.cout


def kernel_call(kernel: str, layer: Layer, dtype: str, config: dict):
    """(jit function, {arg: value}, constexprs) as the launcher would call it for ``layer``; values are ints, or the
    element type string for pointers."""
    elt = ELEMENT[dtype][0]
    precision = "tf32" if dtype == "tf32" else "ieee"  # as dot_precision: 16-bit operands ignore it
    n, h, w = layer.n, layer.h, layer.w
    ksize, live, cin, cout = kernel_geometry(layer, kernel)
    taps = live.count
    blocks = {key: config[key] for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K")}
    rect = dict(R0=live.row0, C0=live.col0, RW=live.cols)
    if kernel == "grad_weight":
        per = tmc.wgrad_splits(layer.pixels, taps, cin, cout, H100_SMS)[1]
        args = dict(
            x_ptr=elt,
            g_ptr=elt,
            part_ptr="fp32",
            M=layer.pixels,
            H=h,
            W=w,
            CIN=cin,
            COUT=cout,
            TAPS=taps,
            M_PER_SPLIT=per,
        )
        for name, s in zip(("sxn", "sxc", "sxh", "sxw"), _channels_last_strides(n, cin, h, w), strict=True):
            args[name] = s
        for name, s in zip(("sgn", "sgc", "sgh", "sgw"), _channels_last_strides(n, cout, h, w), strict=True):
            args[name] = s
        const = dict(KSIZE=ksize, **rect, PRECISION=precision, UPCAST=False, I64=False, **blocks)
        return tmc._wgrad_kernel, args, const
    flip = kernel == "grad_input"
    epi = not flip
    args = dict(
        x_ptr=elt,
        w_ptr=elt,
        bias_ptr=elt,
        cond_ptr=elt,
        res_ptr=elt,
        out_ptr=elt,
        M=layer.pixels,
        H=h,
        W=w,
        CIN=cin,
        COUT=cout,
        TAPS=taps,
    )
    for name, s in zip(("sxn", "sxc", "sxh", "sxw"), _channels_last_strides(n, cin, h, w), strict=True):
        args[name] = s
    for name, s in zip(("son", "soc", "soh", "sow"), _channels_last_strides(n, cout, h, w), strict=True):
        args[name] = s
    res = epi and layer.residual
    for name, s in zip(("srn", "src", "srh", "srw"), _channels_last_strides(n, cout, h, w), strict=True):
        args[name] = s if res else 0
    args.update(scn=cout if epi and layer.cond else 0, scc=1 if epi and layer.cond else 0)
    const = dict(
        KSIZE=ksize,
        **rect,
        FLIP=flip,
        HAS_BIAS=epi and layer.bias,
        HAS_COND=epi and layer.cond,
        HAS_RES=res,
        RELU=epi and layer.relu,
        PRECISION=precision,
        UPCAST=False,
        I64=False,
        **blocks,
    )
    return tmc._conv_kernel, args, const


H100_SMS = 132


_JIT: dict = {}


def jit_function(fn):
    """The kernel as a JITFunction: under TRITON_INTERPRET=1 (the CPU test setting) ``triton.jit`` hands out
    interpreter wrappers, which cannot be compiled; the wrapped Python function can."""
    from triton.runtime.jit import JITFunction

    if isinstance(fn, JITFunction):
        return fn
    if fn.fn not in _JIT:
        _JIT[fn.fn] = JITFunction(fn.fn)
    return _JIT[fn.fn]


def compile_kernel(kernel: str, layer: Layer, dtype: str, arch: int, config: triton.Config):
    """Compile one kernel for ``sm_<arch>`` with Triton's AOT path; returns the CompiledKernel."""
    fn, args, const = kernel_call(kernel, layer, dtype, {**config.kwargs})
    fn = jit_function(fn)
    signature, constexprs, attrs = {}, dict(const), {}
    for i, name in enumerate(fn.arg_names):
        if name in const:
            signature[name] = "constexpr"
            continue
        v = args[name]
        if isinstance(v, str):
            signature[name] = "*" + v
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif v == 1:
            signature[name] = "constexpr"
            constexprs[name] = 1
        else:
            signature[name] = "i32"
            if v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    src = triton.compiler.ASTSource(fn, signature, constexprs, attrs)
    target = GPUTarget("cuda", arch, 64)
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    return triton.compile(src, target=target, options=options)


def _run(tool: str, *args: str) -> str:
    return subprocess.run([os.path.join(BIN, tool), *args], check=True, capture_output=True, text=True).stdout


def sass_stats(cubin: bytes) -> dict:
    """Registers, stack/local bytes and instruction counts from ``cuobjdump`` of one cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        res = _run("cuobjdump", "-res-usage", f.name)
        sass = _run("cuobjdump", "-sass", f.name)
    reg = re.search(r"REG:(\d+)", res)
    stack = re.search(r"STACK:(\d+)", res)
    local = re.search(r"LOCAL:(\d+)", res)
    code = [
        (int(m.group(1), 16), m.group(2), m.group(3))
        for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);", sass)
    ]
    ops = [op for _, op, _ in code]
    count = lambda pred, seq=ops: sum(1 for op in seq if pred(op))
    mma_at = [addr for addr, op, _ in code if op.startswith(("HGMMA", "HMMA"))]
    loop = []  # the main loop: the widest backward branch whose body holds an MMA
    for addr, op, args in code:
        target = re.search(r"0x([0-9a-f]+)", args) if op.startswith("BRA") else None
        if target and int(target.group(1), 16) < addr:
            lo = int(target.group(1), 16)
            body = [o for a, o, _ in code if lo <= a <= addr]
            if any(lo <= a <= addr for a in mma_at) and len(body) > len(loop):
                loop = body
    scalar16 = lambda op: op.startswith("LDG") and (".U16" in op or ".S16" in op)
    return dict(
        registers=int(reg.group(1)) if reg else -1,
        spill_bytes=(int(stack.group(1)) if stack else 0) + (int(local.group(1)) if local else 0),
        local_ops=count(lambda op: op.startswith(("STL", "LDL"))),
        hgmma=count(lambda op: op.startswith("HGMMA")),
        hmma=count(lambda op: op.startswith("HMMA")),
        ffma=count(lambda op: op.startswith("FFMA")),
        scalar16_loads=count(scalar16),
        loop_scalar16_loads=count(scalar16, loop),
        vector_loads=count(lambda op: op.startswith(("LDG", "LDGSTS")) and (".128" in op or ".64" in op)),
        loop_vector_loads=count(lambda op: op.startswith(("LDG", "LDGSTS")) and (".128" in op or ".64" in op), loop),
        instructions=len(ops),
    )


def roofline_us(kernel: str, layer: Layer, dtype: str) -> float:
    """Lower bound in microseconds: max(FLOPs / peak, bytes / bandwidth), activations read/written once."""
    elt = ELEMENT[dtype][1]
    act = layer.pixels * (layer.cin + layer.cout) * elt
    weights = layer.taps * layer.cin * layer.cout * elt
    return max(layer.flops() / (PEAK_TFLOPS[dtype] * 1e12), (act + weights) / (PEAK_TBPS * 1e12)) * 1e6


def picked_configs(kernel: str, layer: Layer, dtype: str) -> list:
    """The configs the autotuner would try for this kernel and shape (after pruning)."""
    _, live, cin, cout = kernel_geometry(layer, kernel)
    m = tmc.wgrad_splits(layer.pixels, live.count, cin, cout, H100_SMS)[1] if kernel == "grad_weight" else layer.pixels
    wgrad = kernel == "grad_weight"
    residual = kernel == "forward" and layer.residual
    configs = tmc.WGRAD_CONFIGS if wgrad else tmc.CONFIGS
    return tmc.prune_configs(configs, m, cin, cout, ELEMENT[dtype][1], wgrad, residual)


def config_name(c: triton.Config) -> str:
    kw = c.kwargs
    return f"{kw['BLOCK_M']}x{kw['BLOCK_N']}x{kw['BLOCK_K']}w{c.num_warps}s{c.num_stages}"


def rows(kernels, layers, dtypes, arches, configs="first", dump=None, log=sys.stderr):
    out = []
    for arch in arches:
        for layer in layers:
            for kernel in kernels:
                if kernel == "grad_input" and tmc.folds_taps(layer.cin, layer.k):
                    continue  # the image needs no gradient: grad_input never runs on the first layer
                for dtype in dtypes:
                    cands = picked_configs(kernel, layer, dtype)
                    for cfg in cands if configs == "all" else cands[:1]:
                        t0 = time.perf_counter()
                        ck = compile_kernel(kernel, layer, dtype, arch, cfg)
                        secs = time.perf_counter() - t0
                        cubin = ck.asm["cubin"]
                        if dump:
                            os.makedirs(dump, exist_ok=True)
                            name = f"{kernel}-{layer.name}-{dtype}-sm{arch}"
                            if configs == "all":
                                name += "-" + config_name(cfg)
                            with open(os.path.join(dump, name + ".cubin"), "wb") as f:
                                f.write(cubin)
                        row = dict(
                            kernel=kernel,
                            shape=layer.name,
                            dtype=dtype,
                            arch=arch,
                            config=config_name(cfg),
                            shared=ck.metadata.shared,
                            smem_limit=SMEM_LIMIT[arch],
                            compile_s=round(secs, 2),
                            gflop=round(layer.flops() / 1e9, 2),
                            roofline_us=round(roofline_us(kernel, layer, dtype), 1),
                            **sass_stats(cubin),
                        )
                        print(
                            f"{kernel:11s} {layer.name:9s} {dtype:4s} sm{arch} {row['config']:16s} "
                            f"reg {row['registers']:3d} spill {row['spill_bytes']} smem {row['shared']:6d} "
                            f"hgmma {row['hgmma']} hmma {row['hmma']} {secs:.1f}s",
                            file=log,
                            flush=True,
                        )
                        out.append(row)
    return out


COLUMNS = [
    "kernel",
    "shape",
    "dtype",
    "arch",
    "config",
    "registers",
    "spill_bytes",
    "shared",
    "hgmma",
    "hmma",
    "ffma",
    "loop_scalar16_loads",
    "loop_vector_loads",
    "scalar16_loads",
    "gflop",
    "roofline_us",
    "compile_s",
]


def markdown(table: list[dict]) -> str:
    lines = [
        "# Triton masked conv: SASS of the compiled kernels (no GPU; Triton AOT for the named arch)",
        "",
        f"triton {triton.__version__}. `shared` in bytes; `loop_scalar16_loads`/"
        "`loop_vector_loads`: 16-bit scalar and 64/128-bit global loads (LDG/LDGSTS) in the main loop (the backward "
        "branch around the MMAs); `compile_s`: 0.0 when Triton's cache held the kernel; `scalar16_loads`: the "
        "whole kernel (the epilogue's bias / class-vector loads); `roofline_us`: an ESTIMATE for an H100 "
        f"(bf16/fp16 {PEAK_TFLOPS['bf16']:.0f}, TF32 {PEAK_TFLOPS['tf32']:.0f} TFLOP/s, {PEAK_TBPS} TB/s), "
        "FLOPs over live taps only, not a measurement.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in table:
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, nargs="+", default=[90, 80], choices=sorted(SMEM_LIMIT))
    p.add_argument("--dtype", nargs="+", default=["bf16", "fp16", "tf32"], choices=sorted(ELEMENT))
    p.add_argument("--kernel", nargs="+", default=list(KERNELS), choices=KERNELS)
    p.add_argument(
        "--shape",
        nargs="+",
        default=[layer.name for layer in ALL_LAYERS],
        choices=[layer.name for layer in ALL_LAYERS],
    )
    p.add_argument(
        "--configs",
        choices=("first", "all"),
        default="first",
        help="first: the first config the pruned autotune list holds; all: every pruned config",
    )
    p.add_argument(
        "--case",
        nargs="+",
        metavar="KERNEL:SHAPE:DTYPE:ARCH",
        help="compile only these combinations (instead of the product of the lists above)",
    )
    p.add_argument("--dump", help="directory for the cubins")
    p.add_argument("--json", help="write the rows as JSON")
    p.add_argument("--markdown", help="write the table as markdown (e.g. benchmarks/results/triton-sass.md)")
    a = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":  # the CPU tests set it; it makes triton.language uncompilable
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        argv = sys.argv[1:] if argv is None else list(argv)
        return subprocess.run([sys.executable, "-m", "benchmarks.triton_sass", *argv], env=env).returncode
    layers = {layer.name: layer for layer in ALL_LAYERS}
    if a.case:
        table = []
        for case in a.case:
            kernel, shape, dtype, arch = case.split(":")
            if kernel not in KERNELS or shape not in layers or dtype not in ELEMENT or int(arch) not in SMEM_LIMIT:
                p.error(
                    f"--case {case}: expected KERNEL:SHAPE:DTYPE:ARCH from {KERNELS}, {sorted(layers)}, "
                    f"{sorted(ELEMENT)}, {sorted(SMEM_LIMIT)}"
                )
            table += rows([kernel], [layers[shape]], [dtype], [int(arch)], a.configs, a.dump)
    else:
        table = rows(a.kernel, [layers[s] for s in a.shape], a.dtype, a.arch, a.configs, a.dump)
    text = markdown(table)
    print(text)
    if a.json:
        atomic_write_text(a.json, json.dumps(table, indent=1))
    if a.markdown:
        atomic_write_text(a.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks.profile_train_step [--steps N] [--batch N]``: torch.profiler on the train_step benchmark's
model (28x28x1, h=64, 5 blocks, batch 32) for the textbook reference, the project's eager default and torch.compile:
the top ops, the share of time in convolutions, and the convolutions by layer shape (forward and backward).

What it showed (2-core machine, under contention, so shares rather than times):

- Convolutions are ~75 % of every path's step, and inductor calls the same oneDNN kernels for them as eager does;
  what compile fuses (ReLU, additions, mask products, log-softmax/NLL and their backward) is the other quarter. So
  compile vs eager stays near 1.1-1.2x on CPU, and the gain over the reference has to come from the convolutions:
  the cropped kernels (a third fewer FLOPs in the 3x3 layers) and channels-last activations.
- Fixed: the cropped conv first padded symmetrically and sliced the p extra output rows off. In eager, the slice's
  backward builds an NCHW gradient for a channels-last activation, and the 3x3 layers' convolution backward took
  ~1.0 s of a ~4.2 s single-thread step (batch 16); with top-only F.pad (channels-last both ways) the step was
  ~2.9 s. Under torch.compile the F.pad form went the other way: inductor recomputed pad + ReLU in the backward as one
  fused kernel taking ~13 % of the step (a 2-block model's compiled step: ~460-530 ms with F.pad, ~280-400 ms with
  the slice), so traced graphs take the slice form. Adam is ~1 % of the step (fused Adam would save ~2 ms).
- Fixed (later): oneDNN's joint backward of the cropped 3x3 conv took ~3x its forward (~38 ms per layer against
  ~10 ms at batch 32, a third of the step across 5 layers). The default path's CPU backward is now grad_input as a
  forward conv with the flipped kernel plus grad_weight as one GEMM per live tap (~23 ms per layer), as two ops the
  compiler calls as they are; and the loss reads the channels-last logits as [rows, 256] instead of copying them and
  their gradient (~45 ms of the step). Eager step 1.04x -> 1.23-1.30x the reference, compiled 1.07x -> 1.35-1.42x
  (interleaved runs, 2 cores).
- Left: convolutions are still ~2/3 of the compiled step, at ~75-130 GFLOP/s (1x1 backward ~100 ms, 3x3 forward
  ~50 ms, grad_input ~45 ms, grad_weight GEMMs ~50 ms per step); the first layer (7x7 mask A on one channel) keeps
  oneDNN's weight gradient (~20 ms), which ran faster than the GEMM form on one channel.
- Gated (``--arch gated``, h=40, 6 blocks, batch 32; the machine at load ~9 on 2 cores, so shares only): before the
  live-rectangle crop, convolutions were ~44 % of the eager step and the horizontal stack's convs were not the main
  cost: 12 k x k convs of 2 x 3 (vertical and horizontal alike, ~40 ms each), the 1x1 link and proj backward
  (~0.4 s each per step), the gate's tanh/sigmoid/products and their backward (~0.5 s), and layout copies. Found and
  fixed: on one colour, layer 0's convs answered NCHW (a 1-channel input is both layouts) and every later gated
  layer ran NCHW; the horizontal convs now run their 1 x 2 rectangle (min of 12 interleaved calls, h=40: forward
  24 -> 12 ms, grad_input 24 -> 4 ms per layer). Left: the 1x1 convs' oneDNN backward and the gate's elementwise
  work, which ``--compile`` fuses.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.reference import TextbookPixelCNN, textbook_loss
from pixelcnn.architectures import build_model
from pixelcnn.config import ModelConfig
from pixelcnn.cpu_allocator import keep_heap
from pixelcnn.likelihood import nll_nats
from pixelcnn.model import AutoregressiveModel

# the profiled models: the train_step benchmark's PixelCNN and the gated one at matched live parameter count
# (249k vs 243k, docs/DESIGN.md §3)
ARCH_SIZES = {"pixelcnn": dict(hidden=64, blocks=5), "gated": dict(hidden=40, blocks=6)}

CONV_OPS = ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::cudnn_convolution", "aten::_convolution")


def profile_path(base: AutoregressiveModel, image, labels, path: str, steps: int) -> dict:
    if path == "reference":
        model = TextbookPixelCNN.from_state_dict(base.state_dict())
        net, loss_of = model, textbook_loss
    else:
        model = copy.deepcopy(base)
        net, loss_of = (torch.compile(model) if path == "compile" else model), nll_nats
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_of(net(image, labels), image).backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - start) / steps * 1e3
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS)
    table = events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40)
    by_shape = sorted(
        (e for e in prof.key_averages(group_by_input_shape=True) if e.key in CONV_OPS),
        key=lambda e: -e.self_cpu_time_total,
    )
    shapes = [
        f"  {e.self_cpu_time_total / steps / 1e3:8.1f} ms/step  {e.key:28s} {str(e.input_shapes[:3])[:80]}"
        for e in by_shape[:8]
    ]
    return {
        "ms": ms,
        "conv_share": conv / total,
        "conv_ms": conv / steps / 1e3,
        "other_ms": (total - conv) / steps / 1e3,
        "table": table,
        "shapes": shapes,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_train_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--arch", choices=list(ARCH_SIZES), default="pixelcnn", help="gated: no textbook reference path")
    p.add_argument(
        "--paths", nargs="+", default=["reference", "eager", "compile"], choices=["reference", "eager", "compile"]
    )
    args = p.parse_args(argv)
    keep_heap()  # as the benchmarks do: otherwise the first path measured pays glibc's page faults
    torch.manual_seed(0)
    if args.arch != "pixelcnn" and "reference" in args.paths:
        p.error("the textbook reference is a PixelCNN: pass --paths eager compile with --arch gated")
    config = ModelConfig(arch=args.arch, channels=1, image_size=(28, 28), num_classes=10, **ARCH_SIZES[args.arch])
    base = build_model(config)
    image = torch.randint(0, 256, (args.batch, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(args.batch) % 10
    results = {}
    for name in args.paths:
        r = results[name] = profile_path(base, image, labels, name, args.steps)
        print(
            f"== {name}: {r['ms']:.1f} ms/step; profiled per step: convolutions {r['conv_ms']:.0f} ms "
            f"({r['conv_share']:.0%}), everything else {r['other_ms']:.0f} ms"
        )
        print(r["table"])
        print("convolutions by input shapes (input, weight / grad_output, input, weight):")
        print("\n".join(r["shapes"]))
    if "reference" in results:
        ref = results["reference"]
        for name, r in results.items():
            if name != "reference":
                print(
                    f"{name} vs reference: {ref['ms'] / r['ms']:.2f}x; convolutions {ref['conv_ms']:.0f} -> "
                    f"{r['conv_ms']:.0f} ms, everything else {ref['other_ms']:.0f} -> {r['other_ms']:.0f} ms"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

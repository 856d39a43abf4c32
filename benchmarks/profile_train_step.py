"""``python -m benchmarks.profile_train_step [--steps N]``: torch.profiler on the train_step benchmark's model (28x28x1,
h=64, 5 blocks, batch 32), eager and torch.compile, printing the top ops and the share of time in convolutions.

It answers why compile speeds the CPU train step up by only ~1.1-1.2x (2-core CI machine): inductor fuses the
elementwise work (ReLU, residual adds, mask products, log-softmax/NLL and their backward), but on CPU it calls the
same oneDNN kernels for the convolutions, and those take over 80% of the step.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.profiler import ProfilerActivity, profile

from pixelcnn.config import ModelConfig
from pixelcnn.cpu_allocator import keep_heap
from pixelcnn.likelihood import nll_nats
from pixelcnn.model import PixelCNN

CONV_OPS = ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::cudnn_convolution", "aten::_convolution")


def profile_path(base: PixelCNN, image, labels, compiled: bool, steps: int) -> dict:
    model = copy.deepcopy(base)
    net = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        nll_nats(net(image, labels), image).backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - start) / steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS)
    table = events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40)
    return {
        "ms": ms,
        "conv_share": conv / total,
        "conv_ms": conv / steps / 1e3,
        "other_ms": (total - conv) / steps / 1e3,
        "table": table,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_train_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    keep_heap()  # as the benchmarks do: otherwise the first path measured pays glibc's page faults
    torch.manual_seed(0)
    base = PixelCNN(ModelConfig(channels=1, image_size=(28, 28), num_classes=10, hidden=64, blocks=5))
    image = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(32) % 10
    results = {}
    for name, compiled in (("eager", False), ("compile", True)):
        r = results[name] = profile_path(base, image, labels, compiled, args.steps)
        print(
            f"== {name}: {r['ms']:.1f} ms/step; profiled per step: convolutions {r['conv_ms']:.0f} ms "
            f"({r['conv_share']:.0%}), everything else {r['other_ms']:.0f} ms"
        )
        print(r["table"])
    e, c = results["eager"], results["compile"]
    print(
        f"compile speedup {e['ms'] / c['ms']:.2f}x; convolutions eager {e['conv_ms']:.0f} ms vs compile "
        f"{c['conv_ms']:.0f} ms, everything else eager {e['other_ms']:.0f} ms vs compile {c['other_ms']:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

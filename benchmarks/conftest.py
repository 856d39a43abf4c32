"""Benchmark sizes: the real sizes when timing (`pytest --benchmark-only`), tiny ones when `pytest` / `make test`
runs each benchmark once as a correctness test; `--gpu-sizes` adds the seed's size (32x32x3, h=256, 15 blocks) to
the forward and train_step groups. The run's JSON names the CPU (model name, vector flags) and GPU."""

import os
import statistics
import threading
import time

import pytest
import torch

from pixelcnn.cpu_allocator import keep_heap, trim_heap


def pytest_configure(config):
    # every path is timed in the allocator's steady state, whatever ran before it in this process
    keep_heap()


def pytest_addoption(parser):
    parser.addoption(
        "--gpu-sizes",
        action="store_true",
        default=False,
        help="also benchmark the seed-sized model (32x32x3, h=256, 15 blocks); meant for a GPU",
    )


@pytest.fixture
def timing(benchmark):
    """True when the benchmark is really timed (not the one-shot correctness run of `make test`)."""
    return not benchmark.disabled


@pytest.fixture
def gpu_sizes(request):
    return request.config.getoption("--gpu-sizes")


def skip_unless_gpu_sizes(request, seed_size: bool) -> None:
    if seed_size and not request.config.getoption("--gpu-sizes"):
        pytest.skip("the seed's size (32x32x3, h=256, 15 blocks) runs with --gpu-sizes only")


def cpu_description() -> dict:
    """CPU model name (/proc/cpuinfo) and which of the vector extensions that matter here it has."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    import platform

    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return {
        "model": model or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "vector_flags": [f for f in wanted if f in flags],
    }


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["pixelcnn_cpu"] = cpu_description()
    if torch.cuda.is_available():
        machine_info["pixelcnn_gpu"] = torch.cuda.get_device_name()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mb(fn) -> float:
    """Peak extra memory of one call of ``fn``: CUDA max_memory_allocated on a GPU, else sampled RSS growth."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    trim_heap()  # so that RSS growth also sees memory reused from earlier runs
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return max(0, max(peak[0], _rss_bytes()) - base) / 2**20


def paired_ratio(fn, base, rounds: int) -> float:
    """Median over ``rounds`` of time(base) / time(fn), the two run alternately: on a shared machine whose speed
    drifts over minutes (measured here: the same train step 370 ms in one run, 540 ms in the next) the paths of a
    group, timed one after the other, can meet different machines; a pair meets the same one."""
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        base()
        mid = time.perf_counter()
        fn()
        ratios.append((mid - start) / (time.perf_counter() - mid))
    return statistics.median(ratios)


def record(
    benchmark,
    fn,
    items: int,
    unit: str,
    reference: bool = False,
    rounds: int = 10,
    warmup: int = 2,
    path: str = "",
    paired_with=None,
):
    """Time ``fn`` with pytest-benchmark and attach the path's name, throughput and peak memory for the report.
    ``paired_with``: the group's reference callable, timed alternately with ``fn`` (``paired_ratio``) after the
    main rounds; the report's targets use that ratio where it exists."""
    if not benchmark.disabled:
        benchmark.extra_info["peak_mem_mb"] = round(peak_memory_mb(fn), 1)
        if paired_with is not None:
            benchmark.extra_info["paired_speedup"] = round(paired_ratio(fn, paired_with, rounds), 4)
    if path:  # else the report takes the test's parameter id
        benchmark.extra_info["path"] = path
    benchmark.extra_info.update(
        items=items,
        unit=unit,
        reference=reference,
        device="cuda" if torch.cuda.is_available() else "cpu",
        torch=torch.__version__,
    )
    return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)

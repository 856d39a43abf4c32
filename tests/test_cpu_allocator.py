"""keep_heap(): after it, re-allocating a large CPU tensor reuses heap pages instead of page-faulting new ones."""

import resource

import torch

from pixelcnn.cpu_allocator import keep_heap


def minor_faults_of(fn) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_large_tensors_reuse_heap_pages_after_keep_heap():
    assert keep_heap(), "mallopt failed on this glibc"
    pages = 20 * 2**20 // 4096  # a 20 MiB activation

    def cycle():
        for _ in range(4):
            x = torch.ones(5 * 2**20)  # written, so every page is touched
            del x

    for _ in range(3):  # the first cycles may fault the pages in once
        cycle()
    faults = minor_faults_of(cycle)
    assert faults < pages, f"{faults} page faults for 4 re-allocations of 20 MiB: the heap is not reused"

"""Torch's intra-op thread count, pinned for the length of a job, so trained weights do not follow the machine.

A float sum split over more threads adds in another order and rounds differently; one training step's weights
then differ in the last bits, and an iterative pruner's validation accuracy, the rounds it selects and the final
compression follow. Same seeds give bit-identical results only at the same thread count (on the same torch build
and CPU), so the benchmarks pin it (default 1: their jobs run side by side on workers, one core each).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["JOB_THREADS", "pinned_threads"]

#: Torch threads in a benchmark job: reruns on any machine, with any number of workers, give the same results.
JOB_THREADS = 1


@contextmanager
def pinned_threads(threads: int | None = JOB_THREADS):
    """Run the body with ``threads`` torch threads (``None``: leave the count as it is), then restore it; also a
    decorator (``@pinned_threads(1)``: each call of the function)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)

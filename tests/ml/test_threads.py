"""Torch's thread count pinned for a job and restored after it (sw/ml/threads.py): the benchmarks that pin one
thread leave the caller's count as it was."""
from __future__ import annotations

import torch

from sparsegate.sw.ml.threads import pinned_threads


def test_pinned_threads_restores_the_count_as_block_and_as_decorator():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with pinned_threads(target) as inside:
        assert inside == target == torch.get_num_threads()
    assert torch.get_num_threads() == before

    @pinned_threads(target)
    def job():
        return torch.get_num_threads()

    assert job() == target and job() == target         # each call pins, and restores afterwards
    assert torch.get_num_threads() == before


def test_the_one_thread_benchmarks_restore_the_callers_count(monkeypatch, tmp_path):
    """The SNN and RNN benchmarks run on one thread and give the caller's count back, even when they fail (here:
    at their first data load, which records the count it ran with)."""
    import pytest

    import sparsegate.sw.ml.text_data as text_data
    from sparsegate.sw.bench import rnn, snn

    seen = []

    def first_load(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("stop here")

    monkeypatch.setattr(snn, "mnist_embedded", first_load)
    monkeypatch.setattr(text_data, "load_corpus", first_load)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for bench in (snn.run_snn_benchmark, rnn.run_rnn_benchmark):
            with pytest.raises(RuntimeError, match="stop here"):
                bench(tmp_path / bench.__name__)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1]

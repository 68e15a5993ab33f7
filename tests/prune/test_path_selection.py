"""The path's selection rule (fitted path: concave, non-increasing fit of the validation readings, the start
included): one high reading of the start no longer ends the path at the start, one low reading of a round no
longer ends it at that round, and the pruning loop picks with this rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.stats import concave_nonincreasing, isotonic
from sparsegate.sw.prune import iterative
from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, kept_fraction_schedule, select_fitted, \
    select_windowed
from sparsegate.sw.prune.magnitude import magnitude_prune

VAL = 417  # validation digits per fold in the 3-fold benchmark: one digit is 0.24 points, the budget 0.3
BUDGET = 0.003
COMPRESSIONS = [1 / (1 - s) for s in [0.0] + kept_fraction_schedule(0.0, 0.995, 0.3)][:15]  # 1x ... 147x
# correct validation digits along a path: a plateau of about 406.6 to round 10 (35x), then the fall
PLATEAU = [407, 406, 408, 407, 405, 408, 406, 407, 406, 405]
FALL = [403, 400, 396, 390]


def _acc(digits):
    return [d / VAL for d in digits]


def test_a_high_start_reading_no_longer_ends_the_path_at_the_start():
    readings = _acc([410] + PLATEAU + FALL)  # the dense model read 3.4 digits above the plateau
    assert select_windowed(readings, readings[0], BUDGET) == 0  # the previous rule: nothing pruned
    fit = -isotonic(-np.array(readings))  # an isotonic fit keeps the high start: it picks nothing either
    assert fit[0] == readings[0] and np.nonzero(fit[0] - fit <= BUDGET)[0].tolist() == [0]
    picked = select_fitted(readings, COMPRESSIONS, BUDGET)
    assert 4 <= picked <= 10  # within the plateau: the start counts as one reading of its trend


def test_a_low_round_reading_does_not_end_the_path_there():
    readings = _acc([409] * 6 + [403] + [409] * 4 + FALL)  # round 6 read 6 digits low
    assert select_fitted(readings, COMPRESSIONS, BUDGET) == 10  # the last round of the plateau
    assert select_windowed(readings, readings[0], BUDGET) == 9  # its window at round 10 reaches into the fall


def test_the_fit_and_the_rule_in_edge_cases():
    assert select_fitted([0.98], [1.0], BUDGET) == 0
    flat = [0.98] * 6
    assert select_fitted(flat, COMPRESSIONS[:6], BUDGET) == 5
    assert select_fitted(flat, COMPRESSIONS[:6], BUDGET, reference=0.99) == 0  # 1 point below the reference
    fit = concave_nonincreasing(np.log(COMPRESSIONS), _acc([410] + PLATEAU + FALL))
    slopes = np.diff(fit) / np.diff(np.log(COMPRESSIONS))
    assert np.all(slopes <= 1e-12) and np.all(np.diff(slopes) <= 1e-9)  # non-increasing, concave
    readings = _acc([410] + PLATEAU + FALL)
    assert [select_fitted(readings, COMPRESSIONS, b) for b in (0.0, 0.003, 0.01, 0.05)] == \
        sorted(select_fitted(readings, COMPRESSIONS, b) for b in (0.0, 0.003, 0.01, 0.05))  # more budget, not less
    with pytest.raises(ValueError, match="x strictly increasing"):
        concave_nonincreasing([0.0, 0.0], [1.0, 1.0])


def test_the_loop_selects_with_the_fitted_rule(monkeypatch, mnist5k):
    """The loop's choice is select_fitted's on its own readings (scripted: a high start, then a plateau)."""
    x, y = mnist5k[0].tensors
    fit_ds = val_ds = torch.utils.data.TensorDataset(x[:64], y[:64])
    readings = iter(_acc([410] + PLATEAU + FALL))
    monkeypatch.setattr(iterative, "accuracy", lambda model, ds: next(readings))
    torch.manual_seed(0)
    res = magnitude_prune(build_model("lenet300"), fit_ds, val_ds,
                          Schedule(max_accuracy_drop=BUDGET, target_sparsity=1 - 1 / COMPRESSIONS[-1] + 1e-9,
                                   step=0.3, max_rounds=14), "global", FineTuneConfig(epochs=0), progress=False)
    path = [0.0] + [r.sparsity for r in res.history]
    expected = select_fitted([res.start_val_accuracy] + [r.val_accuracy for r in res.history],
                             [1 / (1 - s) for s in path], BUDGET)
    assert len(res.history) == 14 and expected >= 4
    assert res.sparsity == pytest.approx(path[expected]) and sum(r.accepted for r in res.history) == expected

"""Magnitude baselines and the shared prune -> fine-tune loop."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.masks import PruneError, RatioError, global_magnitude_masks, verify_masks, weight_sparsity
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, kept_fraction_schedule, select_windowed, split_validation
from sparsegate.sw.prune.magnitude import magnitude_prune, torch_global_l1_masks


def test_torch_global_l1_equals_our_global_magnitude(trained_lenet5):
    model = copy.deepcopy(trained_lenet5)
    ours = global_magnitude_masks(model, 0.7)
    theirs = torch_global_l1_masks(model, 0.7)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # continuing from existing masks prunes only among the kept weights; the torch re-parametrisation is gone
    more = torch_global_l1_masks(model, 0.9, theirs)
    assert weight_sparsity(model, more) == pytest.approx(0.9, abs=1e-5)
    assert not bool((more["fc1.weight"] & ~theirs["fc1.weight"]).any())
    assert "weight" in dict(model.conv1.named_parameters()) and not hasattr(model.conv1, "weight_orig")


@pytest.fixture(scope="module")
def small_data(mnist5k):
    x, y = mnist5k[0].tensors
    return split_validation(TensorDataset(x[:600], y[:600]), 200)


@pytest.mark.parametrize("method", ["magnitude", "global", "torch-l1"])
def test_iterative_target_mode_reaches_target_and_keeps_masks(method, small_data):
    torch.manual_seed(0)
    model = build_model("lenet300")
    fit, val = small_data
    res = magnitude_prune(model, fit, val, Schedule(target_sparsity=0.8, step=0.5), method,
                          FineTuneConfig(epochs=1, lr=1e-3), progress=False)
    assert [round(r.target_sparsity, 4) for r in res.history] == [0.5, 0.75, 0.8]
    assert weight_sparsity(model, res.masks) == pytest.approx(0.8, abs=1e-5)
    verify_masks(model, res.masks)  # fine-tuning after every round left the pruned weights at zero
    if method == "magnitude":
        for layer in ("fc1", "fc2", "fc3"):
            assert float((~res.masks[f"{layer}.weight"]).float().mean()) == pytest.approx(0.8, abs=1e-3)


def test_drop_mode_rolls_back_failed_rounds(small_data):
    torch.manual_seed(0)
    model = build_model("lenet300")
    fit, val = small_data
    # an impossible budget: every round fails, the model must come back unpruned
    res = magnitude_prune(model, fit, val, Schedule(max_accuracy_drop=0.0, step=0.9, min_step=0.4,
                                                    recovery_rounds=0, selection="gate"),
                          "global", FineTuneConfig(epochs=0), progress=False)
    assert res.sparsity == 0.0 and all(not r.accepted for r in res.history)
    assert [round(r.step, 2) for r in res.history] == [0.9, 0.45]  # halved after the first failure, then stop
    assert all(bool(m.all()) for m in res.masks.values())
    assert weight_sparsity(model) == 0.0


def test_path_mode_picks_sparsest_round_within_budget(small_data):
    torch.manual_seed(0)
    model = build_model("lenet300")
    fit, val = small_data
    res = magnitude_prune(model, fit, val, Schedule(max_accuracy_drop=0.0, target_sparsity=0.99, step=0.9),
                          "global", FineTuneConfig(epochs=0), progress=False)
    # untrained model: every round is scored, the path runs to the target, one state is chosen
    assert len(res.history) == 2 and res.history[-1].sparsity == pytest.approx(0.99, abs=1e-5)
    chosen = [r for r in res.history if r.accepted]
    assert res.sparsity == (chosen[-1].sparsity if chosen else 0.0)
    assert weight_sparsity(model, res.masks) == pytest.approx(res.sparsity)
    verify_masks(model, res.masks)


def test_select_windowed_smooths_noise():
    #            start  r1    r2    r3    r4    r5
    accs = [0.98, 0.98, 0.97, 0.985, 0.96, 0.95]
    # r3 alone is within 0.5 points, but its window (0.97, 0.985, 0.96) averages 0.9717: r2 is the last pass
    assert select_windowed(accs, 0.98, 0.005) == 2
    assert select_windowed(accs, 0.98, 0.02) == 4
    assert select_windowed(accs, 0.98, 0.0) == 0


def test_schedule_and_argument_errors(small_data):
    assert kept_fraction_schedule(0.0, 0.8, 0.5) == [0.5, 0.75, 0.8]
    with pytest.raises(PruneError, match="give target_sparsity or max_accuracy_drop"):
        Schedule()
    with pytest.raises(RatioError, match=r"target_sparsity must be in \[0, 1\), got 1"):
        Schedule(target_sparsity=1)
    with pytest.raises(RatioError, match=r"max_accuracy_drop must be in \[0, 1\], got -0.1"):
        Schedule(max_accuracy_drop=-0.1)
    with pytest.raises(PruneError, match="unknown magnitude method 'l2'"):
        magnitude_prune(build_model("lenet300"), *small_data, Schedule(target_sparsity=0.5), "l2")
    with pytest.raises(PruneError, match="val_size must be between 1 and 599"):
        split_validation(TensorDataset(torch.zeros(600, 1), torch.zeros(600)), 600)


def test_distillation_in_the_loop_learns_from_the_start_model(small_data, monkeypatch):
    """With ``distill`` every round's fine-tune gets the model as it was before pruning as its teacher."""
    from sparsegate.sw.prune import iterative

    torch.manual_seed(0)
    model = build_model("lenet300")
    start = copy.deepcopy(model.state_dict())
    teachers = []
    real = iterative.train

    def spy(m, ds, cfg, masks=None, desc="", teacher=None):
        teachers.append((teacher, cfg.distill))
        return real(m, ds, cfg, masks=masks, desc=desc, teacher=teacher)

    monkeypatch.setattr(iterative, "train", spy)
    fit, val = small_data
    magnitude_prune(model, fit, val, Schedule(target_sparsity=0.75, step=0.5), "magnitude",
                    FineTuneConfig(epochs=1, distill=0.5), progress=False)
    assert len(teachers) == 2 and all(d == 0.5 and t is teachers[0][0] for t, d in teachers)
    assert all(torch.equal(v, start[k]) for k, v in teachers[0][0].state_dict().items())
    with pytest.raises(PruneError, match="distill"):
        FineTuneConfig(distill=1.5)

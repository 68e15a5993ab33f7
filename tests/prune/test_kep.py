"""KEP: per-plane element selection, shared patterns, the prior-mask penalty, allocation and index cost."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.kep import KEPConfig, allocate_keep, conv_sparsity, index_cost, kep_masks, kep_prune_iterative, \
    keep_for_sparsity, layer_element_mask, penalty_finetune
from sparsegate.sw.prune.masks import PruneError, apply_masks, verify_masks
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, accuracy
from sparsegate.sw.prune.shrink import UnsupportedLayerError
from sparsegate.sw.ml.train import TrainConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on the shared 2-core machine two threads mostly wait for each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _weight(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_free_mode_keeps_each_planes_largest_elements():
    w = _weight(4, 3, 3, 3)
    mask, structure = layer_element_mask(w, 2, "free")
    assert mask.shape == w.shape and structure.patterns is None
    assert (mask.flatten(2).sum(2) == 2).all()
    planes, kept = w.abs().flatten(2), mask.flatten(2)
    for o in range(4):
        for i in range(3):
            top2 = set(torch.topk(planes[o, i], 2).indices.tolist())
            assert set(torch.nonzero(kept[o, i]).flatten().tolist()) == top2


def test_pattern_mode_uses_only_the_allowed_patterns():
    w = _weight(16, 8, 3, 3, seed=1)
    mask, structure = layer_element_mask(w, 3, "pattern", patterns=3)
    pats = structure.patterns.flatten(1)
    assert 1 <= pats.shape[0] <= 3 and (pats.sum(1) == 3).all()
    # every plane's mask is exactly its assigned pattern, and that is its best pattern of the set
    planes = mask.flatten(2).reshape(-1, 9)
    assign = structure.assignment.flatten()
    assert torch.equal(planes, pats[assign])
    score = w.abs().reshape(-1, 9) @ pats.float().T
    assert torch.equal(score.max(1).values, score.gather(1, assign[:, None]).flatten())
    assert torch.unique(planes, dim=0).shape[0] <= 3
    # more patterns retain at least as much significance, free choice the most
    retained = [layer_element_mask(w, 3, "pattern", patterns=p)[1].retained for p in (1, 3, 16)]
    free = layer_element_mask(w, 3, "free")[1].retained
    assert retained[0] <= retained[1] + 1e-6 <= retained[2] + 2e-6 <= free + 3e-6
    assert retained[0] < free  # the random planes do not all share one top-3 set


def test_patterns_stay_exact_over_rounds():
    w = _weight(32, 16, 3, 3, seed=4)
    first, _ = layer_element_mask(w, 5, "pattern", patterns=4)
    second, structure = layer_element_mask(w, 2, "pattern", patterns=4, mask=first)
    pats = structure.patterns.flatten(1)
    assert pats.shape[0] <= 4 and structure.unmatched == 0
    assert torch.equal(second.reshape(-1, 9), pats[structure.assignment.flatten()])
    assert not (second & ~first).any()


def test_existing_masks_and_empty_planes_stay_pruned():
    w = _weight(3, 2, 5, 5, seed=2)
    old = torch.ones_like(w, dtype=torch.bool)
    old[0, 0] = False  # an empty plane
    old[1, 1, 2, 2] = False  # a pruned element, even if it is the largest
    with torch.no_grad():
        w[1, 1, 2, 2] = 100.0
    for mode in ("pattern", "free"):
        mask, structure = layer_element_mask(w, 4, mode, mask=old)
        assert not mask[0, 0].any() and not mask[1, 1, 2, 2]
        assert not (mask & ~old).any()
        assert (mask.flatten(2).sum(2) <= 4).all()
        if mode == "pattern":
            assert structure.assignment[0, 0] == -1


def test_kep_masks_on_lenet5_and_argument_errors():
    model = build_model("lenet5")
    sel = kep_masks(model, 5, KEPConfig(patterns=4))
    assert set(sel.masks) == {"conv1.weight", "conv2.weight"}  # fc layers are left alone
    for name in ("conv1", "conv2"):
        per_plane = sel.masks[f"{name}.weight"].flatten(2).sum(2)
        assert (per_plane == 5).all()
        assert sel.layers[name].patterns.shape[0] <= 4
    assert conv_sparsity(model, sel.masks) == pytest.approx(0.8)
    per_layer = kep_masks(model, {"conv2": 3}, KEPConfig(mode="free"))
    assert set(per_layer.masks) == {"conv2.weight"}
    with pytest.raises(PruneError, match=r"keep of layer 'conv1' must be an integer in \[1, 25\]"):
        kep_masks(model, 26)
    with pytest.raises(UnsupportedLayerError, match="'fc1' is a Linear"):
        kep_masks(model, 3, layers=["conv1", "fc1"])
    with pytest.raises(PruneError, match="mode: expected one of"):
        KEPConfig(mode="diagonal")
    with pytest.raises(PruneError, match="penalty must be a finite number >= 0"):
        KEPConfig(penalty=-1)


@pytest.mark.parametrize("conv,message", [
    (nn.Conv2d(2, 4, 3, groups=2), "grouped convolution"),
    (nn.Conv2d(1, 4, 3, dilation=2), "dilated convolution"),
])
def test_kep_refuses_grouped_and_dilated_convolutions(conv, message):
    model = nn.Sequential()
    model.add_module("conv1", conv)
    with pytest.raises(UnsupportedLayerError, match=message):
        kep_masks(model, 2)


def test_keep_allocation():
    assert keep_for_sparsity(25, 0.8) == 5 and keep_for_sparsity(9, 0.5) == 4 and keep_for_sparsity(9, 0.95) == 1
    torch.manual_seed(0)
    assert set(allocate_keep(build_model("vgg"), 0.6, KEPConfig(allocation="uniform")).values()) == {3}
    model = build_model("lenet5")
    with torch.no_grad():
        model.conv1.weight.mul_(10.0)  # scale alone must not decide: the allocation is scale-free per layer
    for target in (0.5, 0.8):
        keep = allocate_keep(model, target, KEPConfig(mode="free"))
        assert conv_sparsity(model, kep_masks(model, keep, KEPConfig(mode="free")).masks) >= target - 1e-9
        assert all(1 <= k <= 25 for k in keep.values()) and keep["conv2"] < 25
    # unreachable: every layer ends at one element per plane
    assert allocate_keep(model, 0.97, KEPConfig(mode="free")) == {"conv1": 1, "conv2": 1}


def test_index_cost_matches_hand_counts():
    model = build_model("lenet5")
    assert index_cost(model, {}).bits == 0  # dense: nothing to index
    sel = kep_masks(model, 5, KEPConfig(patterns=4))
    cost = {c.layer: c for c in index_cost(model, sel.masks).layers}
    c2 = cost["conv2"]
    p = c2.distinct_plane_patterns
    assert p <= 4 and c2.element_encoding == "patterns"
    assert c2.element_bits == p * 25 + 1000 * (p - 1).bit_length() and c2.plane_bits == 0
    assert c2.flat_bits == 5000 * (5 + 3 + 3)  # bits(20) + bits(5) + bits(5) per kept weight
    # whole planes removed: a bitmap per live filter, no element index
    masks = {"conv2.weight": torch.ones(50, 20, 5, 5, dtype=torch.bool)}
    masks["conv2.weight"][:, ::2] = False
    masks["conv2.weight"][:, 1] = False
    c2 = {c.layer: c for c in index_cost(model, masks).layers}["conv2"]
    # input channels never read (0, 1, 2, 4, ...) are not counted: 9 live inputs, plane 1 is also gone
    assert (c2.live_out, c2.live_in, c2.kept_planes) == (50, 9, 450)
    assert c2.plane_bits == 0 and c2.element_bits == 0 and c2.encoding == "none"


def test_penalty_pushes_scheduled_elements_toward_zero(trained_lenet5, mnist5k):
    x, y = mnist5k[0].tensors
    fit = TensorDataset(x[:1024], y[:1024])
    test = TensorDataset(*(t[:500] for t in mnist5k[1].tensors))
    plain = copy.deepcopy(trained_lenet5)
    pushed = copy.deepcopy(trained_lenet5)
    prior = kep_masks(pushed, 4, KEPConfig(mode="free")).masks
    cfg = TrainConfig(epochs=1, lr=5e-4, seed=0, progress=False)
    none = penalty_finetune(plain, fit, {}, prior, KEPConfig(penalty=0.0), cfg)
    assert none["scheduled_energy_after"] == none["scheduled_energy_before"] > 0.3
    info = penalty_finetune(pushed, fit, {}, prior, KEPConfig(penalty=4.0), cfg)
    assert info["steps"] == 16
    assert info["scheduled_energy_after"] < 0.1 * info["scheduled_energy_before"]
    # cutting the pushed model costs less accuracy than cutting the plain one
    apply_masks(plain, prior)
    apply_masks(pushed, prior)
    assert accuracy(pushed, test) > accuracy(plain, test) + 0.05


@pytest.mark.slow
def test_kep_in_the_shared_prune_loop(trained_lenet5, mnist5k):
    model = copy.deepcopy(trained_lenet5)
    x, y = mnist5k[0].tensors
    fit, val = TensorDataset(x[:512], y[:512]), TensorDataset(x[3500:], y[3500:])
    res = kep_prune_iterative(model, fit, val, Schedule(target_sparsity=0.8, step=0.5),
                              KEPConfig(patterns=4), FineTuneConfig(epochs=1), progress=False)
    verify_masks(model, res.masks)
    assert res.sparsity >= 0.8 - 1e-9 and 2 <= len(res.history) <= 3
    assert res.history[-1].info["penalty"]["scheduled_energy_after"] < res.history[-1].info["penalty"]["scheduled_energy_before"]
    for name in ("conv1", "conv2"):
        plane_masks = res.masks[f"{name}.weight"].reshape(-1, 25)
        assert torch.unique(plane_masks[plane_masks.any(1)], dim=0).shape[0] <= 4  # per layer: 4 shared patterns
    assert accuracy(model, val) > 0.85


def test_kep_cli_one_shot(lenet_checkpoint, tmp_path, capsys):
    import json

    from sparsegate.sw.cli.main import main
    from sparsegate.sw.ml.train import load_checkpoint
    out = tmp_path / "kep"
    rc = main(["prune", "--method", "kep", "--checkpoint", str(lenet_checkpoint), "--out", str(out), "--keep", "3",
               "--patterns", "4", "--penalty-epochs", "0", "--finetune-epochs", "0", "--val-size", "200",
               "--no-progress"])
    assert rc == 0
    assert "lenet5 kep: test accuracy" in capsys.readouterr().out
    model, masks, meta = load_checkpoint(out / "model.pt")
    verify_masks(model, masks)
    for name in ("conv1", "conv2"):
        per_plane = masks[f"{name}.weight"].flatten(2).sum(2)
        assert int(per_plane.max()) == 3
        assert torch.unique(masks[f"{name}.weight"].reshape(-1, 25), dim=0).shape[0] <= 4
    summary = json.loads((out / "prune.json").read_text())
    assert summary["conv_sparsity"] == pytest.approx(1 - 3 / 25, abs=1e-3)
    assert summary["index"]["bits_per_kept"] < 1.0 < summary["index"]["flat_bits_per_kept"]
    assert meta["method"] == "kep" and (out / "layers.md").is_file()


@pytest.mark.parametrize("args,message", [
    (["--method", "kep"], "needs --keep (elements per plane) or --target-sparsity/--max-drop"),
    (["--method", "kep", "--keep", "3", "--target-sparsity", "0.5"], "not both"),
    (["--method", "kep", "--keep", "30"], "must be an integer in [1, 25]"),
    (["--method", "kep", "--keep", "3", "--layers", "fc1"], "'fc1' is a Linear"),
    (["--method", "kep", "--keep", "3", "--target-flops", "0.5"], "does not take --target-flops"),
])
def test_kep_cli_errors(lenet_checkpoint, tmp_path, capsys, args, message):
    from sparsegate.sw.cli.main import main
    rc = main(["prune", "--checkpoint", str(lenet_checkpoint), "--out", str(tmp_path / "x"), "--no-progress",
               "--finetune-epochs", "0", "--penalty-epochs", "0", "--val-size", "200", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsegate prune: error:") and message in err

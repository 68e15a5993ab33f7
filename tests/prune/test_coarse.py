"""Coarse pruning: feature-map and kernel-plane masks, the least-adversarial search, ratio planning, errors."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.coarse import CoarseConfig, coarse_masks, coarse_prune, least_adversarial, prune_layer, \
    ratios_for_sparsity, score_masks
from sparsegate.sw.prune.kep import conv_sparsity
from sparsegate.sw.prune.masks import PruneError, apply_masks, topology, verify_masks
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, accuracy
from sparsegate.sw.prune.shrink import UnsupportedLayerError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on the shared 2-core machine two threads mostly wait for each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def val_small(mnist5k):
    x, y = mnist5k[1].tensors
    return TensorDataset(x[:300], y[:300])


def test_feature_maps_and_kernel_planes():
    torch.manual_seed(0)
    model = build_model("lenet5")
    gen = torch.Generator().manual_seed(1)
    masks = prune_layer(model, {}, "conv2", 0.5, 0.5, "random", gen)
    w = masks["conv2.weight"]
    rows = w.flatten(1).any(1)
    assert int(rows.sum()) == 25  # half of the 50 feature maps are gone ...
    assert not masks["conv2.bias"][~rows].any()  # ... with their bias ...
    fc_cols = masks["fc1.weight"].view(500, 50, 16).any(0).any(1)
    assert torch.equal(fc_cols, rows)  # ... and the fc1 weights that read them
    planes = w.flatten(2).any(2)
    assert int(planes[rows].sum()) == 25 * 20 - 250  # then half of the 25 x 20 live planes
    # coarse granularity: a plane is either entirely kept or entirely zero, never partly
    per_plane = w.flatten(2).sum(2)
    assert set(per_plane.unique().tolist()) <= {0, 25}
    # smallest-L1 choice: the removed maps are exactly the lowest-norm ones
    l1 = prune_layer(model, {}, "conv2", 0.2, 0.0, "l1")
    norms = model.conv2.weight.detach().abs().flatten(1).sum(1)
    removed = ~l1["conv2.weight"].flatten(1).any(1)
    assert set(torch.nonzero(removed).flatten().tolist()) == set(torch.argsort(norms)[:10].tolist())


def test_single_input_layer_gets_no_kernel_pruning():
    model = build_model("lenet5")
    masks = prune_layer(model, {}, "conv1", 0.0, 0.7, "random", torch.Generator().manual_seed(0))
    assert "conv1.weight" not in masks or bool(masks["conv1.weight"].all())


def test_least_adversarial_returns_the_best_candidate(trained_lenet5, val_small):
    model = trained_lenet5
    gen = torch.Generator().manual_seed(3)
    cands = [prune_layer(model, {}, "conv1", 0.6, 0.0, "random", gen) for _ in range(6)]
    best, scores = least_adversarial(model, cands, val_small)
    # score every candidate independently on a masked copy
    accs = []
    for c in cands:
        m = copy.deepcopy(model)
        apply_masks(m, c)
        accs.append(accuracy(m, val_small))
    assert [s.accuracy for s in scores] == pytest.approx(accs)
    assert accs[best] == max(accs)
    assert len(set(round(a, 4) for a in accs)) > 1  # the candidates really differ
    # ties are broken by the loss
    tied = [i for i, a in enumerate(accs) if a == max(accs)]
    assert scores[best].loss == min(scores[i].loss for i in tied)
    # the search inside coarse_masks keeps its best candidate, layer by layer
    sel = coarse_masks(model, val_small, {"conv1": 0.5, "conv2": 0.5}, 0.3, CoarseConfig(candidates=5),
                       gen=torch.Generator().manual_seed(4), keep_candidates=True)
    for layer in ("conv1", "conv2"):
        layer_scores = sel.scores[layer]
        assert len(layer_scores) == 5
        assert layer_scores[sel.chosen[layer]].key() == max(s.key() for s in layer_scores)
    final = score_masks(model, sel.masks, val_small)
    assert final.accuracy == pytest.approx(sel.scores["conv2"][sel.chosen["conv2"]].accuracy)
    assert sel.masks is sel.candidates["conv2"][sel.chosen["conv2"]]
    # model left unchanged by the search
    assert bool((model.conv2.weight != 0).all())


def test_ratios_for_sparsity_reach_the_target():
    torch.manual_seed(0)
    model = build_model("vgg")
    for granularity in ("feature_map", "kernel", "both"):
        cfg = CoarseConfig(granularity=granularity)
        rf, rk = ratios_for_sparsity(model, None, 0.8, cfg)
        assert (rf > 0) == (granularity != "kernel") and (rk > 0) == (granularity != "feature_map")
        sel = coarse_masks(model, None, rf, rk, CoarseConfig(granularity=granularity, candidates=1))
        assert conv_sparsity(model, sel.masks) >= 0.8 - 1e-9
        assert conv_sparsity(model, sel.masks) < 0.86  # not much more than asked


def test_coarse_argument_errors():
    model = build_model("lenet5")
    with pytest.raises(PruneError, match="granularity: expected one of"):
        CoarseConfig(granularity="filters")
    with pytest.raises(PruneError, match="candidates must be a positive integer"):
        CoarseConfig(candidates=0)
    with pytest.raises(PruneError, match="fmap_ratio must be in"):
        coarse_masks(model, None, 1.2, 0.0, CoarseConfig(candidates=1))
    with pytest.raises(PruneError, match="granularity 'kernel' prunes no feature maps"):
        coarse_masks(model, None, 0.5, 0.0, CoarseConfig(granularity="kernel", candidates=1))
    with pytest.raises(PruneError, match="needs val_ds"):
        coarse_masks(model, None, 0.5, 0.0, CoarseConfig(candidates=3))
    with pytest.raises(UnsupportedLayerError, match="'fc1' is a Linear"):
        coarse_masks(model, None, 0.5, 0.0, CoarseConfig(candidates=1), layers=["fc1"])


class _Net(nn.Module):
    input_shape = (1, 10, 10)

    def __init__(self, **conv_kwargs):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, **conv_kwargs)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.conv1(x.repeat(1, 2, 1, 1)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("kwargs,message", [(dict(groups=2), "grouped"), (dict(dilation=2), "dilated")])
def test_coarse_refuses_grouped_and_dilated(kwargs, message):
    with pytest.raises(UnsupportedLayerError, match=message):
        coarse_masks(_Net(**kwargs), None, 0.5, 0.0, CoarseConfig(candidates=1))


@pytest.mark.slow
def test_coarse_in_the_shared_prune_loop(trained_lenet5, mnist5k):
    model = copy.deepcopy(trained_lenet5)
    x, y = mnist5k[0].tensors
    fit, val = TensorDataset(x[:512], y[:512]), TensorDataset(x[3700:], y[3700:])
    res = coarse_prune(model, fit, val, Schedule(target_sparsity=0.75, step=0.75),
                       CoarseConfig(candidates=4, eval_samples=150), FineTuneConfig(epochs=1), progress=False)
    verify_masks(model, res.masks)
    assert res.sparsity >= 0.75 - 1e-9 and len(res.history) == 1
    info = res.history[0].info
    assert info["fmap_ratio"] > 0 and info["kernel_ratio"] > 0 and info["candidates"]["conv2"]["n"] == 4
    planes = res.masks["conv2.weight"].flatten(2).sum(2)
    assert set(planes.unique().tolist()) <= {0, 25}
    assert topology(model)["conv2"].consumer == "fc1"
    assert accuracy(model, val) > 0.85


def test_coarse_cli_one_shot_with_shrink(lenet_checkpoint, tmp_path, capsys):
    import json

    from sparsegate.sw.cli.main import main
    from sparsegate.sw.prune.shrink import load_shrunk
    from sparsegate.sw.ml.train import load_checkpoint
    out = tmp_path / "coarse"
    rc = main(["prune", "--method", "coarse", "--checkpoint", str(lenet_checkpoint), "--out", str(out),
               "--fmap-ratio", "0.4", "--kernel-ratio", "0.3", "--candidates", "3", "--finetune-epochs", "0",
               "--val-size", "200", "--shrink", "--no-progress"])
    assert rc == 0
    assert "shrunk:" in capsys.readouterr().out
    model, masks, _ = load_checkpoint(out / "model.pt")
    verify_masks(model, masks)
    assert int(masks["conv1.weight"].flatten(1).any(1).sum()) == 12 and int(masks["conv2.weight"].flatten(1).any(1).sum()) == 30
    summary = json.loads((out / "prune.json").read_text())
    assert summary["info"]["candidates"]["conv2"]["n"] == 3
    small, small_masks, meta = load_shrunk(out / "shrunk.pt")
    assert summary["shrink"]["widths"]["conv2"] == [12, 30] and meta["method"] == "coarse"
    x = torch.randn(5, 1, 28, 28)
    model.eval()
    small.eval()
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)


@pytest.mark.parametrize("args,message", [
    (["--method", "coarse"], "needs --fmap-ratio/--kernel-ratio (one shot) or"),
    (["--method", "coarse", "--fmap-ratio", "0.5", "--target-sparsity", "0.8"], "not both"),
    (["--method", "coarse", "--fmap-ratio", "1.5"], "fmap_ratio must be in [0, 1)"),
    (["--method", "coarse", "--kernel-ratio", "0.5", "--coarse-level", "feature_map"],
     "granularity 'feature_map' prunes no kernels"),
    (["--method", "coarse", "--fmap-ratio", "0.5", "--candidates", "0"], "candidates must be a positive integer"),
])
def test_coarse_cli_errors(lenet_checkpoint, tmp_path, capsys, args, message):
    from sparsegate.sw.cli.main import main
    rc = main(["prune", "--checkpoint", str(lenet_checkpoint), "--out", str(tmp_path / "x"), "--no-progress",
               "--finetune-epochs", "0", "--val-size", "200", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsegate prune: error:") and message in err

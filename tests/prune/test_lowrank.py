"""Low-rank factorization: exact at full rank, ranks meet the target compression, composes with masks and
pruning, files round-trip, and `sparsegate prune --method lowrank` end to end."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.cli.main import main
from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.prune.lowrank import LowRankConv2d, LowRankLinear, PruneError, TargetUnreachableError, choose_ranks, \
    factor_weights, factorize, factorize_layer, load_lowrank, lowrank_prune, max_rank, save_lowrank
from sparsegate.sw.ml.threads import pinned_threads
from sparsegate.sw.prune.masks import apply_masks, global_magnitude_masks, layer_magnitude_masks, verify_masks
from sparsegate.sw.ml.models import build_model, prunable_layers
from sparsegate.sw.prune.iterative import FineTuneConfig
from sparsegate.sw.ml.train import save_checkpoint


def test_full_rank_reproduces_linear_and_conv():
    torch.manual_seed(0)
    fc = nn.Linear(30, 12)
    x = torch.randn(5, 30)
    full = factorize_layer(fc, 12)
    assert isinstance(full, LowRankLinear)
    assert torch.allclose(full(x), fc(x), atol=1e-5)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    img = torch.randn(2, 3, 9, 9)
    fconv = factorize_layer(conv, max_rank(conv))
    assert isinstance(fconv, LowRankConv2d) and max_rank(conv) == 8
    assert torch.allclose(fconv(img), conv(img), atol=1e-5)
    # a truncated rank is the best rank-r approximation: error = the dropped singular values
    low = factorize_layer(fc, 4)
    s = torch.linalg.svdvals(fc.weight.detach())
    product = (low.second.weight @ low.first.weight).detach()
    assert float(torch.linalg.matrix_norm(product - fc.weight.detach())) == pytest.approx(float(s[4:].norm()), rel=1e-4)
    with pytest.raises(PruneError, match=r"rank must be an integer in \[1, 12\]"):
        factorize_layer(fc, 13)


@pytest.mark.parametrize("allocation", ["uniform", "energy"])
@pytest.mark.parametrize("target", [2.0, 4.0, 10.0])
def test_ranks_meet_the_target_compression(allocation, target):
    model = build_model("lenet5")
    ranks = choose_ranks(model, target, allocation=allocation)
    mods = prunable_layers(model)
    assert list(ranks) == ["conv1", "conv2", "fc1"]  # default: all but the last layer
    dense = sum(mods[n].weight.numel() for n in ranks)
    factored = sum(factor_weights(mods[n], r) for n, r in ranks.items())
    assert factored <= dense / target
    if allocation == "energy":  # the budget is used up to less than one more increment of any layer
        assert factored > dense / target - max(sum(mods[n].weight.flatten(1).shape) for n in ranks)
    f = factorize(copy.deepcopy(model), ranks)
    table = layer_table(f)
    assert sum(table[f"{n}.{p}"].weights for n in ranks for p in ("first", "second")) == factored


def test_energy_allocation_prefers_low_rank_layers():
    torch.manual_seed(0)
    model = build_model("lenet300")
    with torch.no_grad():  # fc1 is exactly rank 3: its budget should go to fc2
        model.fc1.weight.copy_(torch.randn(300, 3) @ torch.randn(3, 784))
    ranks = choose_ranks(model, 4.0, ["fc1", "fc2"], allocation="energy")
    uniform = choose_ranks(model, 4.0, ["fc1", "fc2"], allocation="uniform")
    assert ranks["fc2"] > uniform["fc2"]


def test_errors():
    model = build_model("lenet300")
    with pytest.raises(PruneError, match="target_compression must be a number > 1"):
        choose_ranks(model, 1.0)
    with pytest.raises(PruneError, match="unknown layer 'fc9'"):
        choose_ranks(model, 2.0, ["fc9"])
    with pytest.raises(TargetUnreachableError, match="rank 0"):
        choose_ranks(model, 500.0, allocation="uniform")
    with pytest.raises(PruneError, match="allocation"):
        choose_ranks(model, 2.0, allocation="svd")


def test_composes_with_masks_both_ways(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet300")
    masks = layer_magnitude_masks(model, {"fc1": 0.8, "fc2": 0.5})
    apply_masks(model, masks)
    x = torch.randn(4, 1, 28, 28)
    ref = model(x)
    # prune, then factorize at full rank: the masked weights are what is decomposed
    f = factorize(copy.deepcopy(model), {"fc1": 300, "fc2": 100}, masks)
    assert torch.allclose(f(x), ref, atol=1e-4)
    # factorize, then prune the factors: the table counts the masked factors
    g = factorize(copy.deepcopy(model), {"fc1": 40, "fc2": 20}, masks)
    fm = global_magnitude_masks(g, 0.5, layers=["fc1.first", "fc1.second", "fc2.first", "fc2.second"])
    apply_masks(g, fm)
    verify_masks(g, fm)
    table = layer_table(g, fm)
    kept = sum(int(fm[k].sum()) for k in fm)
    assert sum(table[n].nonzero_weights for n in ("fc1.first", "fc1.second", "fc2.first", "fc2.second")) == kept
    save_lowrank(tmp_path / "lr.pt", g, "lenet300", fm, meta={"x": 1})
    h, hm, meta = load_lowrank(tmp_path / "lr.pt")
    assert meta == {"x": 1} and h.lowrank_ranks == {"fc1": 40, "fc2": 20}
    assert torch.allclose(h(x), g(x)) and set(hm) == set(fm)


@pinned_threads(1)
def test_lowrank_prune_finetunes_and_prunes_factors():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    ds = TensorDataset(x, y)
    model = build_model("lenet300")
    res = lowrank_prune(model, ds, ds, 8.0, "energy", FineTuneConfig(epochs=1, augment_shift=0), sparsity=0.5)
    assert res.achieved_compression >= 8.0 and res.sparsity == 0.5
    verify_masks(model, res.masks)
    factors = [k for k in res.masks if k.startswith(("fc1.", "fc2."))]
    kept = sum(int(res.masks[k].sum()) for k in factors)
    assert kept == pytest.approx(0.5 * res.factorized_weights, abs=2)


@pytest.mark.slow
def test_prune_lowrank_cli(trained_lenet5, tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 0})
    out = tmp_path / "lr"
    rc = main(["prune", "--method", "lowrank", "--checkpoint", str(ckpt), "--target-compression", "4",
               "--finetune-epochs", "0", "--val-size", "200", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert "lenet5 lowrank: ranks" in capsys.readouterr().out
    summary = json.loads((out / "prune.json").read_text())
    assert summary["info"]["achieved_compression"] >= 4.0
    assert summary["test_accuracy"] > 0.5
    assert "| fc1.first | fc |" in (out / "layers.md").read_text()
    model, masks, meta = load_lowrank(out / "lowrank.pt")
    assert meta["method"] == "lowrank"
    rc = main(["prune", "--method", "lowrank", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress"])
    assert rc == 2 and "needs --target-compression or --ranks" in capsys.readouterr().err
    rc = main(["prune", "--method", "lowrank", "--checkpoint", str(ckpt), "--ranks", "fc1=900", "--out", str(out),
               "--no-progress"])
    assert rc == 2 and "fc1=900 outside [1, 500]" in capsys.readouterr().err

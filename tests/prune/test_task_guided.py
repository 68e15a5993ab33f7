"""Task-guided filter pruning: sub-task model/data, class-conditional response statistics, filter removal."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.masks import PruneError, verify_masks
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.prune.iterative import FineTuneConfig, accuracy
from sparsegate.sw.prune.shrink import shrink_model
from sparsegate.sw.prune.task_guided import parse_classes, response_statistics, subtask_dataset, subtask_masks, \
    subtask_model, task_filter_masks, task_prune, task_scores


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on the shared 2-core machine two threads mostly wait for each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


CLASSES = (3, 5, 8)


def test_subtask_data_and_model():
    x = torch.randn(12, 1, 28, 28)
    y = torch.tensor([0, 3, 5, 8, 8, 1, 3, 9, 5, 5, 2, 8])
    sub = subtask_dataset(TensorDataset(x, y), CLASSES)
    assert sub.tensors[1].tolist() == [0, 1, 2, 2, 0, 1, 1, 2]
    assert torch.equal(sub.tensors[0][0], x[1])
    model = build_model("lenet5").eval()
    small = subtask_model(model, CLASSES).eval()
    with torch.no_grad():
        assert torch.allclose(small(x), model(x)[:, list(CLASSES)])
    assert small.fc2.out_features == 3 and model.fc2.out_features == 10
    masks = {"fc2.weight": torch.rand(10, 500) > 0.5, "fc1.weight": torch.ones(500, 800, dtype=torch.bool)}
    carried = subtask_masks(model, masks, CLASSES)
    assert torch.equal(carried["fc2.weight"], masks["fc2.weight"][[3, 5, 8]])
    assert parse_classes("8, 3,5") == (3, 5, 8)
    for bad, message in (("3", "at least 2 classes"), ([3, 3], "duplicate"), ([3, 12], "out of range"),
                         ("a,b", "comma-separated")):
        with pytest.raises(PruneError, match=message):
            parse_classes(bad, 10)


def test_response_statistics_match_a_direct_computation():
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    x = torch.randn(39, 1, 28, 28)
    y = torch.arange(39) % 3  # 13 samples per class
    stats = response_statistics(model, TensorDataset(x, y), ["conv1", "fc1"], batch_size=16)
    with torch.no_grad():
        a = torch.relu(model.conv1(x)).flatten(2)  # (N, 20, 576)
        p1 = torch.relu(torch.max_pool2d(model.conv1(x), 2))
        p2 = torch.relu(torch.max_pool2d(model.conv2(p1), 2))
        h = torch.relu(model.fc1(p2.flatten(1)))
    means = torch.stack([a[y == k].mean(0) for k in range(3)])
    grand = means.mean(0)  # the three classes are equally frequent
    between = ((means - grand) ** 2).mean(0).sum(1)
    within = torch.stack([a[y == k].var(0, unbiased=False) for k in range(3)]).mean(0).sum(1)
    s = stats["conv1"]
    assert torch.allclose(s.class_means, means, atol=1e-5)
    assert torch.allclose(s.between, between, rtol=1e-4, atol=1e-6)
    assert torch.allclose(s.within, within, rtol=1e-3, atol=1e-5)
    assert torch.allclose(s.response, (a ** 2).mean((0, 2)), rtol=1e-4)
    assert stats["fc1"].class_means.shape == (3, 500, 1)
    assert torch.allclose(stats["fc1"].class_means[:, :, 0], torch.stack([h[y == k].mean(0) for k in range(3)]),
                          atol=1e-5)
    with pytest.raises(PruneError, match="output layer"):
        response_statistics(model, TensorDataset(x, y), ["fc2"])


def test_silent_filter_scores_zero_and_goes_first():
    torch.manual_seed(0)
    model = build_model("lenet5")
    with torch.no_grad():
        model.conv2.weight[7] = 0.0
        model.conv2.bias[7] = -1.0  # never fires
    x = torch.randn(30, 1, 28, 28)
    y = torch.arange(30) % 2
    scores = task_scores(model, TensorDataset(x, y), "between", ["conv2"])
    assert float(scores["conv2"][7]) == 0.0
    masks = task_filter_masks(model, scores, 0.02)  # one filter of 50
    removed = ~masks["conv2.weight"].flatten(1).any(1)
    assert removed.tolist().index(True) == 7 and int(removed.sum()) == 1
    # exact count per layer, lowest scores first
    fake = {"conv1": torch.arange(20.0), "fc1": -torch.arange(500.0)}
    masks = task_filter_masks(model, fake, {"conv1": 0.25, "fc1": 0.5})
    assert (~masks["conv1.weight"].flatten(1).any(1)).nonzero().flatten().tolist() == [0, 1, 2, 3, 4]
    assert (~masks["fc1.weight"].any(1)).nonzero().flatten().tolist() == list(range(250, 500))
    with pytest.raises(PruneError, match="criterion: expected one of"):
        task_scores(model, TensorDataset(x, y), "entropy")


@pytest.mark.slow
def test_task_prune_on_a_digit_subtask(trained_lenet5, mnist5k):
    fit = subtask_dataset(TensorDataset(*(t[:3000] for t in mnist5k[0].tensors)), CLASSES)
    val = subtask_dataset(TensorDataset(*(t[3000:] for t in mnist5k[0].tensors)), CLASSES)
    model = subtask_model(trained_lenet5, CLASSES)
    res = task_prune(model, fit, val, 0.6, "between", FineTuneConfig(epochs=2, lr=1e-3))
    verify_masks(model, res.masks)
    assert res.removed == {"conv1": 12, "conv2": 30, "fc1": 300}
    assert res.val_accuracy > 0.9  # three digits, 40% of the filters
    # the removed filters are physically removable: same outputs from a much smaller model
    small = shrink_model(model, res.masks)
    assert small.widths["conv2"] == (8, 20) and small.widths["fc2"] == (200, 3)
    assert small.params_after < 0.2 * small.params_before
    assert accuracy(small.model, val) == pytest.approx(res.val_accuracy)


def test_task_cli_writes_a_subtask_model(trained_lenet5, tmp_path, capsys):
    import json

    from sparsegate.sw.cli.main import main
    from sparsegate.sw.prune.shrink import load_shrunk
    from sparsegate.sw.ml.train import load_checkpoint, save_checkpoint
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 0})
    out = tmp_path / "task"
    rc = main(["prune", "--method", "task", "--checkpoint", str(ckpt), "--out", str(out), "--classes", "8,3,5",
               "--filter-ratio", "0.5", "--subtask-epochs", "0", "--finetune-epochs", "0", "--val-size", "200",
               "--shrink", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    model, masks, _ = load_checkpoint(out / "model.pt")
    assert model.fc2.out_features == 3
    verify_masks(model, masks)
    summary = json.loads((out / "prune.json").read_text())
    assert summary["info"]["classes"] == [3, 5, 8] and summary["info"]["removed"] == {"conv1": 10, "conv2": 25,
                                                                                     "fc1": 250}
    assert summary["test_accuracy"] > 0.5  # on the three digits, before any fine-tuning
    small, _, _ = load_shrunk(out / "shrunk.pt")
    assert small.conv2.out_channels == 25 and small.fc2.out_features == 3
    rc = main(["prune", "--method", "task", "--checkpoint", str(ckpt), "--out", str(tmp_path / "y"),
               "--classes", "3", "--filter-ratio", "0.5", "--no-progress"])
    assert rc == 2 and "a sub-task needs at least 2 classes" in capsys.readouterr().err

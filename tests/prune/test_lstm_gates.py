"""LSTM structured sparsification: constant gates and dead neurons found from the weights, the simplified
cell equal to the masked full cell, the proximal group penalty, the unstructured baseline and the table."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.ml.lstm_model import CharLSTM, LSTMClassifier, build_lstm
from sparsegate.sw.prune.lstm_gates import METHODS, W_H, W_OUT, W_X, LSTMTrainConfig, Penalty, PruneError, \
    SimplifiedLSTM, SparsifyConfig, evaluate, gate_report, lstm_structure, lstm_table, magnitude_masks, \
    proximal_step, prune_to, sparsified_weights, sparsify, threshold_masks
from sparsegate.sw.ml.threads import pinned_threads
from sparsegate.sw.prune.masks import apply_masks

H, E, V = 6, 4, 10


def _model(kind="lm", seed=0):
    torch.manual_seed(seed)
    return CharLSTM(V, E, H) if kind == "lm" else LSTMClassifier(V, 3, E, H)


def _masks(model):
    """Gate f of unit 1 and gate o of unit 4 lose all weights; unit 5 is read by nobody; input dim 2 unused."""
    p = dict(model.named_parameters())
    m = {k: torch.ones_like(p[k], dtype=torch.bool) for k in (W_X, W_H, W_OUT)}
    for gate, unit in ((1, 1), (3, 4)):
        m[W_X][gate * H + unit] = False
        m[W_H][gate * H + unit] = False
    m[W_H][:, 5] = False
    m[W_OUT][:, 5] = False
    m[W_X][:, 2] = False
    return m


@pytest.mark.parametrize("kind", ["lm", "classify"])
def test_constant_gates_and_simplified_cell(kind):
    model = _model(kind)
    masks = _masks(model)
    s = lstm_structure(model, masks)
    assert s.live_hidden.tolist() == [True] * 5 + [False]
    assert s.live_input.tolist() == [True, True, False, True]
    assert torch.nonzero(s.constant).tolist() == [[1, 1], [3, 4]]
    bias = (model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0).detach().view(4, H)
    assert float(s.constant_value[1, 1]) == pytest.approx(float(torch.sigmoid(bias[1, 1])))
    report = gate_report(s)
    assert report["constant_gates"] == {"i": 0, "f": 1, "g": 0, "o": 1}
    assert set(report["constant_by_gate"]["o"]) == {4} and report["nonconstant_gates"] == 5 * 4 - 2
    apply_masks(model, masks)
    simple = SimplifiedLSTM(model, masks)
    x = torch.randint(0, V, (3, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(simple(x), model(x), atol=1e-5)
    # rows: 18 non-constant gates x (3 live inputs + 5 live units) + the read-out over 5 units
    assert simple.macs_per_step() == 18 * 8 + model.out.weight.shape[0] * 5


def test_all_weights_of_a_unit_gone_makes_every_gate_constant():
    model = _model()
    masks = _masks(model)
    for gate in range(4):
        masks[W_X][gate * H + 0] = False
        masks[W_H][gate * H + 0] = False
    s = lstm_structure(model, masks)
    assert s.constant[:, 0].all() and s.live_hidden[0]  # still read: its input-independent trajectory matters
    apply_masks(model, masks)
    x = torch.randint(0, V, (2, 5))
    with torch.no_grad():
        assert torch.allclose(SimplifiedLSTM(model, masks)(x), model(x), atol=1e-5)


def test_table_counts_live_weights_and_gates():
    model = _model()
    masks = _masks(model)
    table = lstm_table(model, masks)
    assert [r.name for r in table.layers] == ["embed", "lstm.x", "lstm.h", "out"]
    lx = table["lstm.x"]
    assert lx.weights == 4 * H * E and lx.live_out == 4 * 5 - 2 and lx.live_in == 3
    assert lx.nonzero_weights == int(masks[W_X].sum())
    assert lx.live_weights == 18 * 3 and table["lstm.h"].live_weights == 18 * 5
    assert table["out"].live_in == 5
    assert "| lstm.h | lstm |" in table.to_markdown()
    assert sparsified_weights(model, masks) == (sum(int(masks[k].sum()) for k in (W_X, W_H, W_OUT)),
                                                4 * H * E + 4 * H * H + V * H)


def test_proximal_step_zeroes_whole_groups():
    model = _model()
    proximal_step(model, Penalty(gate=1.0), step=10.0)  # shrink far beyond every gate row's norm
    assert int((model.lstm.weight_ih_l0 != 0).sum()) == 0 and int((model.lstm.weight_hh_l0 != 0).sum()) == 0
    assert lstm_structure(model).constant.all()
    model = _model()
    proximal_step(model, Penalty(neuron=1.0), step=10.0)
    assert not lstm_structure(model).live_hidden.any()
    model = _model()
    before = model.out.weight.detach().clone()
    proximal_step(model, Penalty(weight_l1=1.0), step=0.05)
    after = model.out.weight.detach()
    assert torch.equal(after == 0, before.abs() <= 0.05)
    with pytest.raises(PruneError, match="penalty gate must be a number >= 0"):
        Penalty(gate=-1)


def test_magnitude_baseline_exact_count():
    model = _model()
    masks = magnitude_masks(model, 0.75)
    kept, total = sparsified_weights(model, masks)
    assert kept == total - round(0.75 * total)
    with pytest.raises(PruneError, match="sparsity must be in"):
        magnitude_masks(model, 1.5)


def _toy_task(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (64, 8), generator=g)
    y = torch.roll(x, -1, 1) if kind == "lm" else x[:, -1] % 3  # the class is the last token mod 3
    return TensorDataset(x, y)


def test_threshold_removes_weak_groups_whole():
    model = _model()
    with torch.no_grad():
        model.lstm.weight_ih_l0[2 * H + 3] = 0.02  # gate g of unit 3: a weak row, every entry above tau
        model.lstm.weight_hh_l0[2 * H + 3] = 0.02
    tau = 0.01
    masks = threshold_masks(model, None, tau, ("weights", "neurons", "gates"), group_bias=3.0)
    assert lstm_structure(model, masks).constant[2, 3]
    assert int(masks[W_X][2 * H + 3].sum()) == 0
    plain = threshold_masks(model, None, tau, ("weights",))
    assert not lstm_structure(model, plain).constant.any()


@pytest.mark.parametrize("method", ["structured", "neurons", "weights", "magnitude"])
def test_prune_to_a_target(method):
    model = _model()
    masks = magnitude_masks(model, 0.6) if method == "magnitude" else \
        prune_to(model, None, 120, METHODS[method], group_bias=2.0)
    kept, total = sparsified_weights(model, masks)
    assert kept <= (120 if method != "magnitude" else total - round(0.6 * total))
    assert kept >= 90  # bisection gets close to the target
    # cleanup: nothing kept that cannot matter
    s = lstm_structure(model, masks)
    assert int(masks[W_X][~s.live_gates.flatten()].sum()) == 0


@pytest.mark.parametrize("kind", ["lm", "classify"])
@pinned_threads(1)
def test_sparsify_structured_end_to_end(kind):
    ds = _toy_task(kind)
    model = _model(kind)
    config = SparsifyConfig(target_sparsity=0.7, rounds=2, group_bias=2.0,
                            finetune=LSTMTrainConfig(epochs=1, batch_size=16, lr=1e-2))
    res = sparsify(model, ds, ds, "structured", config)
    assert res.kept_weights <= round(0.3 * res.total_weights) and len(res.history) == 2
    s = lstm_structure(model, res.masks)
    assert res.structure["nonconstant_gates"] == int(s.live_gates.sum()) < 4 * H
    for key, mask in res.masks.items():
        assert int((dict(model.named_parameters())[key].detach()[~mask] != 0).sum()) == 0
    x = ds.tensors[0][:4]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(SimplifiedLSTM(model, res.masks)(x), model(x), atol=1e-5)
    metrics = evaluate(model, ds)
    assert math.isclose(metrics["perplexity"], math.exp(metrics["cross_entropy"]))
    with pytest.raises(PruneError, match="unknown LSTM method"):
        sparsify(model, ds, ds, "bayes", config)
    with pytest.raises(PruneError, match="target_sparsity must be in"):
        SparsifyConfig(target_sparsity=1.2)


def test_group_lasso_warmup_runs():
    ds = _toy_task("lm")
    model = _model()
    config = SparsifyConfig(target_sparsity=0.5, rounds=1, penalty=1.5, penalty_epochs=2, penalty_lr=2e-2,
                            finetune=LSTMTrainConfig(epochs=0))
    res = sparsify(model, ds, ds, "structured", config)
    assert res.history[0]["round"] == 0 and res.kept_weights <= res.total_weights // 2


def test_build_lstm_roundtrip():
    model = _model("classify")
    again = build_lstm(model.config())
    assert type(again) is LSTMClassifier and again.config() == model.config()
    with pytest.raises(ValueError, match="unknown kind"):
        build_lstm({"kind": "gru"})


def test_rnn_cli(tmp_path, capsys):
    import json

    from sparsegate.sw.cli.main import main
    from sparsegate.sw.ml.lstm_model import load_lstm

    root = tmp_path / "licenses"
    root.mkdir()
    (root / "GPL-3").write_text("the gnu general public license, version three. " * 250)
    (root / "MPL-2.0").write_text("mozilla public license version two point zero. " * 250)
    common = ["--corpus", str(root), "--hidden", "8", "--embed", "4", "--rounds", "1", "--seq-len", "16",
              "--target-sparsity", "0.5"]
    out = tmp_path / "a"
    assert main(["rnn", "--task", "lm", "--epochs", "1", "--out", str(out), *common]) == 0
    for name in ("dense.pt", "lstm.pt", "layers.md", "layers.json", "gates.json", "rnn.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "rnn.json").read_text())
    assert summary["kept_weights"] <= summary["total_weights"] // 2 + 1
    assert summary["corpus"]["sha256"] in (out / "layers.md").read_text() or \
        summary["corpus"]["sha256"][:16] in (out / "layers.md").read_text()
    model, masks, meta = load_lstm(out / "lstm.pt")
    assert meta["method"] == "structured" and set(masks) == {W_X, W_H, W_OUT}
    assert main(["rnn", "--task", "lm", "--method", "weights", "--checkpoint", str(out / "dense.pt"),
                 "--out", str(tmp_path / "b"), *common]) == 0
    assert "lm weights 0.5" in capsys.readouterr().out
    assert main(["rnn", "--task", "classify", "--checkpoint", str(out / "dense.pt"), "--out", str(tmp_path / "c"),
                 *common]) == 2
    assert "a 'lm' model, but --task is 'classify'" in capsys.readouterr().err
    missing = tmp_path / "no-licenses"
    assert main(["rnn", "--task", "lm", "--out", str(tmp_path / "d"), *common[2:], "--corpus", str(missing)]) == 2
    assert f"{missing}: no such folder" in capsys.readouterr().err

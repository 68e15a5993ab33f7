"""The spiking MLP in software: LIF dynamics against snnTorch, encoders, training, spike-count pruning,
the integer golden model, export and the ``sparsegate snn`` command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.cli.main import main
from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.snn.model import (SNNCheckpointError, SNNConfig, SNNTrainConfig, SpikingMLP, encode, encode_poisson,
                               encode_rate, evaluate_snn, lif_step, load_snn, save_snn, snn_forward_counts,
                               to_pixels)
from sparsegate.sw.ir.snn_golden import (IntSNN, LifParams, SNNExportError, leak, lif_update, load_int_snn,
                                      quantize_snn, save_int_snn)
from sparsegate.sw.snn.neuron_prune import PruneConfig, SpikeCountPruner, prune_snn

from support.trained_snn import trained_pruned_snn


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small CPU models train faster on one thread, and far faster on a shared, oversubscribed machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pruned_snn(mnist5k):
    return trained_pruned_snn(mnist5k[0])


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_dynamics_match_snntorch_leaky(reset):
    snntorch = pytest.importorskip("snntorch")
    gen = torch.Generator().manual_seed(1)
    currents = torch.rand(40, 3, 25, generator=gen) * 0.8 - 0.1
    peer = snntorch.Leaky(beta=0.9, threshold=1.0, reset_mechanism=reset)
    peer_mem = peer.reset_mem()
    mem = torch.zeros(3, 25)
    fired = 0
    for t in range(len(currents)):
        peer_spk, peer_mem = peer(currents[t], peer_mem)
        spk, mem = lif_step(mem, currents[t], 0.9, 1.0, reset)
        assert torch.equal(spk, peer_spk), f"spikes differ at step {t}"
        assert torch.allclose(mem, peer_mem, atol=1e-6), f"membranes differ at step {t}"
        fired += int(spk.sum())
    assert fired > 50  # the comparison covered many resets


def test_rate_and_poisson_encoders():
    pixels = np.array([[0, 1, 128, 255]], np.uint8)
    spikes = encode_rate(pixels, 16)
    assert spikes.shape == (16, 1, 4) and spikes.dtype == bool
    assert spikes.sum(axis=0).tolist() == [[0, 0, 8, 16]]
    p1, p2 = encode_poisson(pixels, 500, seed=3), encode_poisson(pixels, 500, seed=3)
    assert np.array_equal(p1, p2) and not p1[:, 0, 0].any() and p1[:, 0, 3].all()
    assert abs(p1[:, 0, 2].mean() - 128 / 255) < 0.07
    assert encode(pixels, SNNConfig(steps=4, encoding="poisson"), seed=1).shape == (4, 1, 4)


def test_to_pixels_recovers_the_raw_bytes(mnist5k):
    from sparsegate.sw.ml.data import MNIST_MEAN, MNIST_STD
    images = mnist5k[0].tensors[0][:50]
    pixels = to_pixels(images)
    assert pixels.dtype == np.uint8 and pixels.shape == (50, 784)
    assert pixels.min() == 0 and pixels.max() == 255
    again = (torch.from_numpy(pixels).float() / 255 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(again, images.reshape(50, -1), atol=1e-5)


def test_config_rejects_bad_fields():
    with pytest.raises(ValueError, match="'reset'"):
        SNNConfig(reset="hard")
    with pytest.raises(ValueError, match="'steps'"):
        SNNConfig(steps=0)
    with pytest.raises(ValueError, match="unknown SNN config field"):
        SNNConfig.from_dict({"bogus": 1})


def test_online_pruning_hits_the_target_by_spike_count(pruned_snn, mnist5k):
    model, pruner = pruned_snn
    assert model.alive == 400
    dead = ~model.neuron_mask
    assert torch.all(model.fc1.weight[dead] == 0) and torch.all(model.fc2.weight[:, dead] == 0)
    ratios = {round(h["ratio"], 6) for h in pruner.history}
    assert len(ratios) > 1, "the threshold ratio should adapt"
    assert [h["pruned"] for h in pruner.history] == sorted(h["pruned"] for h in pruner.history)
    assert pruner.history[-1]["pruned"] == 400
    assert not any(h["forced"] for h in pruner.history[:-1])
    # the survivors fire: pruned neurons emit nothing, and the network still classifies
    _, counts = snn_forward_counts(model, TensorDataset(*(t[:200] for t in mnist5k[1].tensors)))
    assert counts[:, dead].sum() == 0 and counts[:, ~dead].sum() > 0
    assert evaluate_snn(model, mnist5k[1]) > 0.75


def test_pruner_prunes_the_least_active_and_respects_the_quota():
    model = SpikingMLP(SNNConfig(n_inputs=4, n_hidden=10, n_outputs=2, steps=2))
    pruner = SpikeCountPruner(PruneConfig(target=4, interval=1, ratio=0.5), 10, batches_per_epoch=4, epochs=2)
    activity = torch.tensor([5.0, 0.1, 4.0, 0.2, 6.0, 0.0, 3.0, 5.0, 0.3, 4.5])
    pruner(model, activity.unsqueeze(0), 0, 0)  # quota after the first of 4 batches: round(4 * (1 - 0.75**3)) = 2
    assert (~model.neuron_mask).sum() == 2 and not model.neuron_mask[5] and not model.neuron_mask[1]
    for b in range(1, 4):
        pruner(model, activity.unsqueeze(0), 0, b)
    assert sorted(torch.nonzero(~model.neuron_mask).flatten().tolist()) == [1, 3, 5, 8]
    with pytest.raises(ValueError, match="prune target"):
        PruneConfig(target=10).check(10, 3)


def test_integer_leak_and_update_rules():
    v = np.array([-17, -1, 0, 1, 100])
    assert leak(v, LifParams(threshold=10, leak="shift", leak_shift=2)).tolist() == [-12, 0, 0, 1, 75]
    assert leak(v, LifParams(threshold=10, leak="mult", leak_mult=128, leak_frac=8)).tolist() == [-9, -1, 0, 0, 50]
    p = LifParams(threshold=10, leak="none", refractory=2, v_width=8)
    v, s, r = lif_update([0, 0], [False, False], [0, 0], [11, 200], p)
    assert v.tolist() == [11, 127] and s.tolist() == [True, True] and r.tolist() == [2, 2]  # saturates at +127
    v, s, r = lif_update(v, s, r, [50, 50], p)  # refractory: input ignored, threshold subtracted, no spike
    assert v.tolist() == [1, 117] and not s.any() and r.tolist() == [1, 1]
    with pytest.raises(ValueError, match="'leak'"):
        LifParams(threshold=1, leak="exp")


def test_quantized_snn_is_within_one_point_of_float(pruned_snn, mnist5k):
    model, _ = pruned_snn
    test = mnist5k[1]
    snn = quantize_snn(model)
    assert snn.alive == 400 and snn.hidden.leak == "shift" and snn.hidden.leak_shift == 4
    assert np.abs(snn.w1).max() == 127 and not snn.w1[~snn.mask].any()
    spikes = encode(to_pixels(test.tensors[0]), model.config)
    run = snn.run(spikes)
    int_acc = float((run.predictions == test.tensors[1].numpy()).mean())
    float_acc = evaluate_snn(model, test)
    assert abs(int_acc - float_acc) <= 0.01, (int_acc, float_acc)
    assert np.all(run.hidden.counts[:, ~snn.mask] == 0)
    assert np.array_equal(run.hidden.synops, spikes.sum(axis=(0, 2)) * 400)
    assert snn.weight_bytes() * 2 == snn.weight_bytes(pruned=False)


def test_checkpoint_and_export_round_trip(pruned_snn, tmp_path):
    model, _ = pruned_snn
    save_snn(tmp_path / "snn.pt", model, meta={"x": 1})
    again, meta = load_snn(tmp_path / "snn.pt")
    assert meta == {"x": 1} and torch.equal(again.neuron_mask, model.neuron_mask)
    snn = quantize_snn(model)
    save_int_snn(tmp_path / "snn.npz", snn)
    loaded = load_int_snn(tmp_path / "snn.npz")
    assert np.array_equal(loaded.w1, snn.w1) and loaded.hidden == snn.hidden and loaded.steps == snn.steps
    with pytest.raises(SNNCheckpointError, match="no such SNN checkpoint"):
        load_snn(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(SNNCheckpointError, match="junk.pt: not a readable checkpoint"):
        load_snn(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(SNNCheckpointError, match="not a sparsegate SNN checkpoint"):
        load_snn(tmp_path / "other.pt")
    with pytest.raises(SNNExportError, match="no such exported SNN"):
        load_int_snn(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="int8"):
        IntSNN(snn.w1 * 2, snn.w2, snn.hidden, snn.readout, snn.mask, snn.steps)


def test_snn_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["snn", "train", "--out", str(out), "--epochs", "1", "--hidden", "40", "--steps", "4",
                 "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert json.loads((out / "train.json").read_text())["config"]["n_hidden"] == 40
    assert main(["snn", "prune", "--checkpoint", str(out / "snn.pt"), "--out", str(tmp_path / "p"), "--target", "20",
                 "--epochs", "1", "--prune-epochs", "1", "--no-progress"]) == 0
    assert load_snn(tmp_path / "p" / "snn.pt")[0].alive == 20
    assert main(["snn", "export", "--checkpoint", str(tmp_path / "p" / "snn.pt"), "--out", str(tmp_path / "s.npz")]) == 0
    assert "integer SNN" in capsys.readouterr().out
    assert load_int_snn(tmp_path / "s.npz").alive == 20
    # errors: one line naming the file or field
    assert main(["snn", "prune", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsegate snn: error: ") and "nope.pt: no such SNN checkpoint" in err
    assert err.count("\n") == 1
    assert main(["snn", "prune", "--checkpoint", str(out / "snn.pt"), "--out", str(tmp_path / "q"),
                 "--target", "40"]) == 2
    assert "prune target must be in 0..39" in capsys.readouterr().err
    assert main(["snn", "simulate", "--model", str(tmp_path / "s.pt"), "--out", str(tmp_path / "v")]) == 2
    assert "s.pt: no such exported SNN file" in capsys.readouterr().err


def test_benchmark_report_renders_and_judges_the_anchor(tmp_path):
    from sparsegate.sw.bench.snn import render_snn_results
    row = lambda alive, acc: {"alive": alive, "float_accuracy": acc, "int_accuracy": acc - 0.001,
                              "weight_bytes": alive * 794, "synops": alive * 1000.0, "hidden_spikes": 1.0,
                              "cycles_per_step": 100.0 + alive, "threshold": 400}
    rows = {"dense": row(800, 0.96), "pruned 480": row(320, 0.955), "pruned 600": row(200, 0.93)}
    (tmp_path / "snn.json").write_text(json.dumps({"rows": rows, "verilator": None, "quick": False}))
    text = render_snn_results(tmp_path).markdown
    assert "| pruned 480 | 480 of 800 | 248 KiB | 2.50x |" in text
    assert "pruned 480 (2.50x less memory at 0.60 pt)" in text and "pruned 600 (" not in text
    assert (tmp_path / "snn.md").read_text() == text

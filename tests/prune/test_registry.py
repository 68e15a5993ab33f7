"""Every registered method through the one call ``prune_model(model, PruneOptions(method, params), fit, val)``,
and the registry, the ``prune`` command and the benchmarks agreeing on the method names."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.ml.lstm_model import LSTMClassifier
from sparsegate.sw.prune import AcraParams, CoarseParams, KEPParams, LowRankParams, LSTMGateParams, NRPParams, \
    PruneError, PruneOptions, PruneResult, ScheduleParams, SensitivityParams, TaskParams, UnknownMethodError, \
    methods, prune_model
from sparsegate.sw.prune.counting import mac_reduction
from sparsegate.sw.prune.masks import verify_masks, weight_sparsity


@pytest.fixture(scope="module")
def splits(mnist5k):
    x, y = mnist5k[0].tensors
    return TensorDataset(x[:300], y[:300]), TensorDataset(x[300:500], y[300:500])


def _check_sparsity(target):
    return lambda model, res: weight_sparsity(model, res.masks) >= target - 0.01


def _planes(keep):
    return lambda model, res: all(int(res.masks[f"{n}.weight"].flatten(2).sum(2).max()) == keep
                                  for n in ("conv1", "conv2"))


CNN_CASES = {
    "magnitude": (ScheduleParams(target_sparsity=0.5, step=0.5), _check_sparsity(0.5)),
    "global": (ScheduleParams(target_sparsity=0.5, step=0.5), _check_sparsity(0.5)),
    "torch-l1": (ScheduleParams(target_sparsity=0.5, step=0.5), _check_sparsity(0.5)),
    "sra": (ScheduleParams(target_sparsity=0.5, step=0.5), _check_sparsity(0.5)),
    "sra-nrp": (ScheduleParams(target_sparsity=0.5, step=0.5),  # NRP ran in the round, on top of the weights
                lambda m, r: _check_sparsity(0.5)(m, r) and "nrp_removed" in r.history[0]["info"]),
    "acra-uniform": (AcraParams(target_flops=0.5), lambda m, r: abs(mac_reduction(m, r.masks) - 0.5) <= 0.01),
    "acra-sensitivity": (AcraParams(target_flops=0.5), lambda m, r: abs(mac_reduction(m, r.masks) - 0.5) <= 0.01),
    "sensitivity": (SensitivityParams(), lambda m, r: r.masks == {} and r.sensitivity is not None),
    "nrp": (NRPParams(calib_samples=100), lambda m, r: r.extra.total_removed >= 0 and "removed" in r.info),
    "kep": (KEPParams(keep=3, penalty_epochs=0, patterns=4), _planes(3)),
    "coarse": (CoarseParams(fmap_ratio=0.4, candidates=2),
               lambda m, r: int(r.masks["conv1.weight"].flatten(1).any(1).sum()) == 12),
    "task": (TaskParams(classes="3,5,8", filter_ratio=0.5, subtask_epochs=0),
             lambda m, r: r.model.fc2.out_features == 3 and r.info["removed"]["conv2"] == 25),
    "lowrank": (LowRankParams(target_compression=4), lambda m, r: r.extra.achieved_compression >= 4.0),
}


def test_every_method_has_a_case():
    assert set(CNN_CASES) | {"lstm-gates"} == set(methods())


@pytest.mark.parametrize("method", list(CNN_CASES))
def test_prune_model_runs_every_cnn_method(method, trained_lenet5, splits):
    params, reached = CNN_CASES[method]
    model = copy.deepcopy(trained_lenet5)
    res = prune_model(model, PruneOptions(method, copy.deepcopy(params), finetune_epochs=0, progress=False), *splits)
    assert isinstance(res, PruneResult) and res.method == method
    verify_masks(res.model, res.masks)
    assert reached(res.model, res), method
    assert res.compression >= 1.0 and res.wall_time_s > 0
    assert res.val_accuracy is None or 0.0 <= res.val_accuracy <= 1.0
    if getattr(params, "iterative", False):  # a run of the shared loop hands back its path: the start and every round
        assert len(res.iterative.path) == len(res.history) + 1 and res.iterative.masks is res.masks
    else:
        assert res.iterative is None


def test_prune_model_runs_lstm_gates():
    torch.manual_seed(0)
    model = LSTMClassifier(vocab=12, classes=3, embed=8, hidden=16)
    x = torch.randint(0, 12, (64, 10))
    ds = TensorDataset(x, x[:, 0] % 3)
    res = prune_model(model, PruneOptions("lstm-gates", LSTMGateParams(target_sparsity=0.5, rounds=2),
                                          finetune_epochs=0), ds, ds)
    assert isinstance(res, PruneResult) and res.method == "lstm-gates"
    assert res.extra.kept_weights <= 0.5 * res.extra.total_weights + 1
    assert res.compression > 1.0


def test_nrp_after_a_method(trained_lenet5, splits):
    model = copy.deepcopy(trained_lenet5)
    res = prune_model(model, PruneOptions("global", ScheduleParams(target_sparsity=0.6, step=0.6), nrp=True,
                                          finetune_epochs=0, progress=False), *splits)
    assert res.nrp is not None and res.val_accuracy == res.nrp["val_accuracy_after_finetune"]
    verify_masks(model, res.masks)


@pytest.mark.parametrize("options,message", [
    (PruneOptions("nope"), "unknown method 'nope'"),
    (PruneOptions("sra", AcraParams(target_flops=0.5)), "method 'sra' takes ScheduleParams, got AcraParams"),
    (PruneOptions("sensitivity", nrp=True), "nrp: neuron re-pruning needs a pruning method"),
    (PruneOptions("kep", KEPParams(keep=3), finetune_epochs=-1), "finetune_epochs must be >= 0"),
    (PruneOptions("kep", KEPParams(keep=30)), "must be an integer in [1, 25]"),
    (PruneOptions("magnitude", ScheduleParams(target_sparsity=0.5), layers=["conv9"]), "unknown layer 'conv9'"),
])
def test_options_errors_name_the_field(trained_lenet5, splits, options, message):
    with pytest.raises(PruneError, match=None) as err:
        prune_model(copy.deepcopy(trained_lenet5), options, *splits)
    assert message in str(err.value)
    if options.method == "nope":
        assert isinstance(err.value, UnknownMethodError)


@pytest.mark.parametrize("make,message", [
    (lambda: ScheduleParams(), "needs target_sparsity (--target-sparsity) or max_drop"),
    (lambda: ScheduleParams(target_sparsity=1.5), "target_sparsity must be in [0, 1), got 1.5"),
    (lambda: AcraParams(), "needs target_flops (--target-flops)"),
    (lambda: AcraParams(target_flops=0.5, tolerance=0), "tolerance must be in (0, 1), got 0"),
    (lambda: LowRankParams(), "needs --target-compression or --ranks"),
    (lambda: TaskParams(classes="3", filter_ratio=0.5), "a sub-task needs at least 2 classes"),
    (lambda: CoarseParams(), "needs --fmap-ratio/--kernel-ratio (one shot) or"),
])
def test_params_validate_on_construction(make, message):
    with pytest.raises(PruneError) as err:
        make()
    assert message in str(err.value)


def test_registry_cli_and_benchmarks_see_the_same_methods():
    from sparsegate.sw.bench.prune import JOB_METHODS as PRUNE_BENCH
    from sparsegate.sw.bench.structured import BENCH_METHODS as STRUCTURED_BENCH
    from sparsegate.sw.cli.main import build_parser

    parser = build_parser()
    prune = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "prune")[1]
    choices = next(a.choices for a in prune._actions if a.dest == "method")
    assert list(choices) == methods()
    assert set(PRUNE_BENCH) <= set(methods())
    assert set(STRUCTURED_BENCH.values()) <= set(methods())


def test_fine_tunes_rewind_to_the_training_peak_by_default():
    """Learning-rate rewinding is the default recovery (#19): the API's and the ``prune`` command's fine-tune
    learning rate is every built-in model's training peak (the rate the benchmark's rewound loop takes from the
    model's recipe)."""
    from sparsegate.sw.cli.main import build_parser
    from sparsegate.sw.ml.train import RECIPES
    from sparsegate.sw.prune.iterative import FineTuneConfig

    peak = {recipe.lr for _, recipe in RECIPES.values()}
    assert peak == {PruneOptions("sra").lr} and PruneOptions("sra").finetune_config(3).lr in peak
    assert PruneOptions("sra").lr > FineTuneConfig().lr  # the plain loop's 1e-3 stays the low-level default
    args = build_parser().parse_args(["prune", "--method", "sra", "--checkpoint", "m.pt", "--out", "o"])
    assert args.lr in peak


def test_fine_tunes_add_weight_decay_by_default():
    """L2 weight decay is the default recovery beside rewinding (#19): the API's, the ``prune`` command's and the
    LeNet recipes' strength is the one the benchmark measured; the low-level configs keep 0."""
    from sparsegate.sw.bench.prune import BenchSettings
    from sparsegate.sw.cli.main import build_parser
    from sparsegate.sw.ml.train import RECIPES, WEIGHT_DECAY, TrainConfig
    from sparsegate.sw.prune.iterative import FineTuneConfig

    assert PruneOptions("sra").weight_decay == PruneOptions("sra").finetune_config(3).weight_decay == WEIGHT_DECAY
    assert WEIGHT_DECAY == BenchSettings().weight_decay > 0
    assert RECIPES["lenet5"][1].weight_decay == RECIPES["lenet300"][1].weight_decay == WEIGHT_DECAY
    assert TrainConfig().weight_decay == FineTuneConfig().weight_decay == 0
    args = build_parser().parse_args(["prune", "--method", "sra", "--checkpoint", "m.pt", "--out", "o"])
    assert args.weight_decay == WEIGHT_DECAY
    assert build_parser().parse_args(["train", "--out", "o"]).weight_decay is None  # the recipe decides

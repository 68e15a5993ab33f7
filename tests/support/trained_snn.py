"""A briefly trained, neuron-pruned SNN, built once per test session."""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.snn.model import SNNConfig, SNNTrainConfig, SpikingMLP
from sparsegate.sw.snn.neuron_prune import prune_snn, PruneConfig

_TRAINED: list = []


def trained_pruned_snn(train: TensorDataset | None = None):
    """A 784-800-10 SNN trained briefly on 2,000 digits while 400 neurons are pruned online (built once)."""
    if _TRAINED:
        return _TRAINED[0]
    if train is None:
        train, _ = mnist_embedded(seed=0)
    subset = TensorDataset(*(t[:2000] for t in train.tensors))
    torch.manual_seed(0)
    model = SpikingMLP(SNNConfig())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, pruner = prune_snn(model, subset, SNNTrainConfig(epochs=2, progress=False, augment_shift=0),
                              PruneConfig(target=400, start_epoch=0, end_epoch=0))
    finally:
        torch.set_num_threads(threads)
    _TRAINED.append((model.eval(), pruner))
    return _TRAINED[0]

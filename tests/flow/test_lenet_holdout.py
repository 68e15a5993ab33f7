"""The engine's reference LeNet-5 trains outside the validation digits its SRA + NRP network is pruned on, as the
demo's ``sparsegate train --val-size`` does: a pruning decision read on digits the network learnt is optimistic."""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

import sparsegate.sw.ml.train as train_module
from sparsegate.sw.flow.lenet import trained_lenet5
from sparsegate.sw.prune.iterative import split_validation


def test_the_reference_lenet5_never_trains_on_the_validation_digits(monkeypatch):
    ids = torch.arange(60, dtype=torch.float32)  # each digit's pixels carry its index
    train_ds = TensorDataset(ids.view(60, 1, 1, 1).expand(60, 1, 28, 28).clone(), torch.zeros(60, dtype=torch.long))
    fitted = []
    monkeypatch.setattr(train_module, "train", lambda model, ds, config, **_: fitted.append(ds))

    trained_lenet5(data=(train_ds, None), epochs=1, held_out=20)

    seen = set(fitted[0].tensors[0][:, 0, 0, 0].tolist())
    validated = set(split_validation(train_ds, 20)[1].tensors[0][:, 0, 0, 0].tolist())
    assert len(seen) == 40 and len(validated) == 20 and seen.isdisjoint(validated)

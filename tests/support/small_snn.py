"""A small integer SNN and a LIF design around it, for the LIF core and link tests."""
from __future__ import annotations

import numpy as np

from sparsegate.hw.lif.design import LifDesign
from sparsegate.sw.ir.snn_golden import IntSNN, LifParams

N_IN, N_HIDDEN, N_OUT, STEPS = 16, 10, 3, 5


def small_snn(seed: int, threshold: int = 100, mask_p: float = 0.8) -> IntSNN:
    rng = np.random.default_rng(seed)
    hidden = LifParams(threshold=threshold, leak="shift", leak_shift=2, v_width=16)
    w1 = rng.integers(-40, 100, size=(N_HIDDEN, N_IN))
    w2 = rng.integers(-127, 128, size=(N_OUT, N_HIDDEN))
    mask = rng.random(N_HIDDEN) < mask_p
    return IntSNN(w1, w2, hidden, LifParams.integrator(v_width=16), mask, STEPS).with_mask(mask)


def lif_device(seed: int = 1):
    """A small LIF design with two power-up samples, and the golden run of those samples."""
    snn = small_snn(seed)
    rng = np.random.default_rng(seed + 100)
    samples = [rng.random((STEPS, N_IN)) < 0.4 for _ in range(2)]
    design = LifDesign(snn, units=3, per_word=2, n_samples=2, samples=samples)
    return design, snn.run(np.stack(samples, axis=1), trace=True)

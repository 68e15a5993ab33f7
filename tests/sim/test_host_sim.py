"""End to end: the host driver classifies held-out digits through the simulated board top level
(Verilator model of engine + host link, stdin/stdout transport), the image loaded at run time over the
protocol, logits bit-identical to the golden model — the same code path as `sparsegate run --board-port`."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_run_sim_classifies_digits_like_golden(trained_lenet5, mnist5k, tmp_path_factory):
    from sparsegate.sw.flow.lenet import pruned_lenet5
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.sw.flow.run import classify_with_driver, sim_driver

    image, _ = pruned_lenet5(model=trained_lenet5, data=mnist5k, finetune_epochs=0)
    driver = sim_driver(ENGINE, image, lanes=8, simulator="verilator", build_dir=tmp_path_factory.mktemp("hostsim"))
    try:
        lines = []
        result = classify_with_driver(driver, image, 8, log=lines.append)
        assert result.exact == 8 and result.ok, lines
        assert result.cycles > 10_000
        # the counters read back over the link are the engine's
        regs = driver.read_counters()
        assert regs["total.cycles"] == result.cycles
        assert np.all(np.array(result.predictions) >= 0)
    finally:
        driver.close()

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


_HOST = """
import subprocess, sys, time
from sparsegate.hw.platform.board_top import LinkedEngine, capacity_geometry, retarget_program
from sparsegate.hw.link.protocol import CMD
from sparsegate.sim.engine.amaranth_sim import small_program
from sparsegate.sim.transports import VerilatorTransport
from sparsegate.sw.host.driver import HostDriver, frame
base = small_program(lanes=4, seed=1, n_samples=2)
baked = retarget_program(base, capacity_geometry(base, headroom=0.5, n_samples=2))
drv = HostDriver(VerilatorTransport(LinkedEngine(baked, timeout=150), sys.argv[1]))
drv.identify()
drv.transport.write(frame(CMD["ID"])[:4])       # mid-frame when the host dies
# another process holds the model's stdin open: no end of file, only the parent-death signal can stop it
holder = subprocess.Popen(["sleep", "30"], pass_fds=[drv.transport.proc.stdin.fileno()])
print(drv.transport.proc.pid, holder.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed child waits for its new parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_verilator_model_dies_with_its_host(tmp_path_factory):
    """Issue #18: the host process is SIGKILLed while the Verilator model of the board runs; the model
    (parent-death signal) is gone within a few seconds instead of spinning on, reparented."""
    import os
    import signal
    import subprocess
    import sys
    import time

    build = tmp_path_factory.mktemp("host-death")
    host = subprocess.Popen([sys.executable, "-c", _HOST, str(build)], stdout=subprocess.PIPE, text=True)
    try:
        pid, holder = map(int, host.stdout.readline().split())
        assert _alive(pid)
    finally:
        host.kill()
        host.wait()
        host.stdout.close()
    try:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"the model process {pid} outlived its host"
    finally:
        os.kill(holder, signal.SIGKILL)

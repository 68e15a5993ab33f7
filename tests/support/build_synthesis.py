"""Yosys as the board build runs it — the build's script after reading the design, then ``synth_ecp5`` — on a
small top, for tests of what that script makes of a construct."""
from __future__ import annotations

import subprocess
from pathlib import Path

from sparsegate.hw.platform.ecp5_build import SCRIPT_AFTER_READ
from sparsegate.sw.util.toolchain import yowasp_env


def synthesize_like_the_build(folder: Path, rtlil_text: str, then: str) -> None:
    """Synthesize ``rtlil_text`` (top module ``top``) in ``folder``, then run the Yosys commands ``then`` (which
    write what the test reads)."""
    (folder / "top.il").write_text(rtlil_text)
    (folder / "top.ys").write_text(f"read_rtlil top.il\n{SCRIPT_AFTER_READ}\nsynth_ecp5 -top top\n{then}\n")
    subprocess.run([yowasp_env()["YOSYS"], "-q", "top.ys"], cwd=folder, check=True, capture_output=True,
                   timeout=300)

"""Per-core loaders: what the host writes into each core's memories over the link, and how it reads the
results back. :data:`LOADERS` maps a registry core (:mod:`sparsegate.hw.platform.cores`) to its loader; the
:class:`~sparsegate.sw.host.driver.HostDriver` picks one from the device's ID reply.

A loader works through its driver's generic commands (``write_mem``, ``run``, ``read_outputs``, ``ident``).
"""
from __future__ import annotations

import numpy as np

from sparsegate.hw.platform.cores import ENGINE, LIF

__all__ = ["EngineLoader", "LifLoader", "LOADERS"]


class EngineLoader:
    """The sparse engine: a weight image compiled for the device's geometry into descriptors, channel
    table, parameters and weight words; int8 inputs into input slots; int8 logits back."""

    def __init__(self, driver):
        from sparsegate.hw.engine.layouts import EngineGeometry
        self.driver = driver
        self.geometry = EngineGeometry(**driver.ident["geometry"])

    def memories(self) -> dict:
        """``{name: (wr_mem index, word bits)}`` of the engine's host memories."""
        from sparsegate.hw.engine.engine import HOST_MEMS
        from sparsegate.hw.engine.layouts import chan_layout, desc_layout, param_layout
        g = self.geometry
        widths = {"desc": desc_layout(g).size, "chan": chan_layout(g).size, "param": param_layout(g).size,
                  "weight": g.lanes * g.slot_bits, "input": 8 * g.banks}
        return {name: (i, widths[name]) for i, name in enumerate(HOST_MEMS)}

    def compile(self, image, inputs=None):
        """A weight image (path, bytes or decoded network) compiled for this device's engine."""
        from sparsegate.hw.engine.program import program_from_image
        from sparsegate.hw.platform.board_top import retarget_program
        g = self.geometry
        return retarget_program(program_from_image(image, g.lanes, inputs, drains=g.drains,
                                                   bank_ratio=g.bank_ratio), g)

    def load_program(self, program) -> None:
        """Write a (retargeted) program's weight-image memories: descriptors, channel table, parameters,
        weight words. Only the used entries are sent."""
        mems = self.memories()
        sizes = getattr(program, "used", None) or {
            "desc": len(program.desc_words), "chan": len(program.chan_words),
            "param": len(program.param_words), "weight": len(program.weight_words)}
        lists = {"desc": program.desc_words, "chan": program.chan_words, "param": program.param_words,
                 "weight": program.weight_words}
        for name in ("desc", "chan", "param", "weight"):
            index, bits = mems[name]
            self.driver.write_mem(index, 0, lists[name][:sizes[name]], bits)

    def load(self, image):
        """Compile ``image`` for the device and load it; returns the program (for the host-side checks)."""
        program = self.compile(image)
        self.load_program(program)
        return program

    def load_input(self, sample: int, x) -> None:
        """One int8 input (C, H, W) into input slot ``sample``."""
        from sparsegate.hw.engine.program import input_tiling, sample_words
        from sparsegate.hw.engine.tiling import Tiling
        g = self.geometry
        if not 0 <= sample < g.n_samples:
            raise ValueError(f"input slot {sample} out of range (the device holds {g.n_samples})")
        qnet = getattr(self.driver, "qnet", None)  # the network the device runs (loaded, or baked and told)
        # the first layers' tile banks the input (None: an fc first layer reads it flat)
        layout = (input_tiling(qnet, g.lanes, bank_ratio=g.bank_ratio) if qnet is not None
                  else Tiling(g.lanes, 1, g.bank_ratio))
        words = sample_words(np.asarray(x, dtype=np.int8), g.banks, layout)
        if len(words) > g.input_depth:
            raise ValueError(f"input needs {len(words)} words per sample, the device has {g.input_depth}")
        index, bits = self.memories()["input"]
        self.driver.write_mem(index, sample * g.input_depth, words, bits)

    def classify(self, x, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
        """Run every input of ``x`` (N, C, H, W) in slot 0: ``(int8 outputs (N, n_outputs), predictions)``."""
        outs = []
        for sample in np.asarray(x):
            self.load_input(0, sample)
            self.driver.run(0)
            outs.append(self.driver.read_outputs(n_outputs))
        outs = np.stack(outs) if outs else np.zeros((0, n_outputs), dtype=np.int8)
        return outs, outs.argmax(axis=1)

    def counters(self, values: dict) -> dict:
        """Debug register values as read (the engine's are unsigned)."""
        return values


class LifLoader:
    """The LIF core: hidden / readout weight banks, hidden enable mask and threshold; spike trains into input
    slots; int32 readout membranes back. Sizes, leak, reset and widths are fixed at build time."""

    def __init__(self, driver):
        self.driver = driver
        self.geometry = driver.ident["geometry"]

    def memories(self) -> dict:
        """``{name: (wr_mem index, word bits)}`` of the mask, threshold and spike-train memories (the weight
        banks come first: hidden unit ``u`` at ``u``, readout unit ``u`` at ``units + u``)."""
        from sparsegate.hw.lif.core import source_entry
        g = self.geometry
        m, r = g["units"], g["readout_units"]
        return {"mask": (m + r, g["slots"]), "threshold": (m + r + 1, g["v_width"] - 1),
                "input": (m + r + 2, source_entry(g["n_inputs"]).size)}

    def check(self, snn) -> None:
        """Raise ``ValueError`` naming every field where ``snn`` differs from what the device was built for
        (sizes, leak, reset, refractory, widths: only weights, mask and threshold load at run time)."""
        from sparsegate.hw.lif.design import LEAK_CODES, RESET_CODES
        g = self.geometry
        h, r = snn.hidden, snn.readout
        want = {"n_inputs": snn.n_inputs, "n_hidden": snn.n_hidden, "n_outputs": snn.n_outputs,
                "v_width": h.v_width, "count_width": h.count_width, "leak": LEAK_CODES[h.leak],
                "reset": RESET_CODES[h.reset], "refractory": h.refractory, "readout_v_width": r.v_width,
                "readout_count_width": r.count_width}
        if h.leak == "shift":
            want["leak_shift"] = h.leak_shift
        if h.leak == "mult":
            want.update(leak_mult=h.leak_mult, leak_frac=h.leak_frac)
        bad = [f"{k} {v} (device: {g[k]})" for k, v in want.items() if g[k] != v]
        if r.leak != "none" or r.fires:
            bad.append("readout is not an integrator (the device's readout never leaks or fires)")
        if bad:
            raise ValueError("the network does not match the LIF core built into the device: " + "; ".join(bad))

    def load(self, snn) -> None:
        """Load an integer SNN (:class:`~sparsegate.sw.ir.snn_golden.IntSNN`): hidden and readout weight banks,
        hidden enable mask, hidden threshold."""
        from sparsegate.hw.lif.core import CoreGeometry, pack_weight_banks, unit_mask_words
        self.check(snn)
        g = self.geometry
        hg = CoreGeometry(snn.n_inputs, snn.n_hidden, g["units"], g["per_word"])
        rg = CoreGeometry(snn.n_hidden, snn.n_outputs, g["readout_units"], 1)
        if hg.slots != g["slots"]:
            raise ValueError(f"hidden slots per unit {hg.slots} != the device's {g['slots']}")
        for u, words in enumerate(pack_weight_banks(snn.w1, hg)):
            self.driver.write_mem(u, 0, words, 8 * hg.per_word)
        for u, words in enumerate(pack_weight_banks(snn.w2, rg)):
            self.driver.write_mem(hg.units + u, 0, words, 8)
        mems = self.memories()
        self.driver.write_mem(mems["mask"][0], 0, unit_mask_words(snn.mask, hg), mems["mask"][1])
        self.driver.write_mem(mems["threshold"][0], 0, [snn.hidden.threshold], mems["threshold"][1])

    def load_spikes(self, sample: int, spikes) -> None:
        """One sample's input spike trains ``(steps, n_inputs)`` bool into input slot ``sample``."""
        from sparsegate.hw.lif.core import encode_source
        g = self.geometry
        if not 0 <= sample < g["n_samples"]:
            raise ValueError(f"input slot {sample} out of range (the device holds {g['n_samples']})")
        words = encode_source([np.asarray(spikes, bool)], g["n_inputs"])
        if len(words) > g["source_depth"]:
            raise ValueError(f"input needs {len(words)} spike entries, the device holds {g['source_depth']} per slot")
        index, bits = self.memories()["input"]
        self.driver.write_mem(index, sample * g["source_depth"], words, bits)

    def classify(self, spikes) -> tuple[np.ndarray, np.ndarray]:
        """Run every sample of ``spikes (steps, B, n_inputs)``: ``(readout membranes (B, n_outputs), predictions)``."""
        spikes = np.asarray(spikes, bool)
        n_out = self.geometry["n_outputs"]
        outs = []
        for b in range(spikes.shape[1]):
            self.load_spikes(0, spikes[:, b])
            self.driver.run(0)
            outs.append(self.driver.read_outputs(n_out).astype(np.int64))
        outs = np.stack(outs) if outs else np.zeros((0, n_out), np.int64)
        return outs, outs.argmax(axis=1)

    def counters(self, values: dict) -> dict:
        """Debug register values with the result registers as signed membranes."""
        return {k: (v - (1 << 32) if k.startswith("result") and v >> 31 else v) for k, v in values.items()}


#: The loader class of each registry core, by core name.
LOADERS = {ENGINE.name: EngineLoader, LIF.name: LifLoader}

"""The board top level's host link on the simulated device (Amaranth simulator): every command, run-time
loading of a different weight image, the UART path, and protocol fuzzing (bad length, bad CRC, unknown
command, truncated frame, garbage) after which the device must still answer correctly. The UART and fuzz
tests run on both cores behind the link: the sparse engine and the LIF core (tests/hw/test_lif_link.py has
the LIF core's own commands)."""
from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from sparsegate.hw.platform.board_top import (LinkedEngine, ProgramDoesNotFit, SerialTop, capacity_geometry,
                                     retarget_program)
from sparsegate.hw.engine.engine import CORE_NAME
from sparsegate.hw.lif.design import CORE_NAME as LIF_CORE
from sparsegate.hw.engine.program import golden_outputs
from sparsegate.hw.link.host_link import HostLink, LinkedCoreSignature, join_core
from sparsegate.hw.link.host_port import HostPortSignature
from sparsegate.hw.link.protocol import (CMD, FRAME_DELIM, PROTOCOL_VERSION, STATUS, cobs_encode, crc16, identity_bytes,
                                         parse_identity)
from sparsegate.sim.engine.amaranth_sim import check_run, small_program
from sparsegate.sim.transports import SimTransport
from sparsegate.sw.host.driver import DeviceError, HostDriver, frame

from support.small_snn import lif_device

TIMEOUT = 150


@pytest.fixture(scope="module")
def programs():
    base = small_program(lanes=4, seed=1, n_samples=2)
    cap = capacity_geometry(base, headroom=0.5, n_samples=2)
    return base, cap, retarget_program(base, cap)


def _driver(programs, **kw):
    _, _, baked = programs
    return HostDriver(SimTransport(LinkedEngine(baked, timeout=TIMEOUT), **kw))


def _alive(drv, base):
    """The device still answers: ID, a run of the baked sample 0, its outputs equal the golden model's."""
    assert drv.identify()["geometry"]["lanes"] == base.lanes
    drv.run(0)
    want = golden_outputs(base)[0][-1]
    assert np.array_equal(drv.read_outputs(len(want)), want)


class _Sparse:
    """The engine behind the link, for the tests shared by both cores."""

    def __init__(self, programs):
        self.base, _, self.baked = programs

    def top(self):
        return LinkedEngine(self.baked, timeout=TIMEOUT)

    def serial_top(self):
        return SerialTop(self.baked, divisor=4, timeout=TIMEOUT * 8)

    def alive(self, drv):
        _alive(drv, self.base)


class _Lif:
    """The LIF core behind the link (two power-up samples, golden readout membranes)."""

    def __init__(self):
        self.design, self.golden = lif_device()

    def top(self):
        from sparsegate.hw.lif.design import LinkedLif
        return LinkedLif(self.design, timeout=TIMEOUT)

    def serial_top(self):
        return SerialTop(self.design, divisor=4, timeout=TIMEOUT * 8)

    def alive(self, drv):
        assert drv.identify()["core"] == LIF_CORE
        drv.run(0)
        assert np.array_equal(drv.read_outputs(), self.golden.readout.v[0])


@pytest.fixture(params=[CORE_NAME, LIF_CORE])
def device(request, programs):
    return _Sparse(programs) if request.param == CORE_NAME else _Lif()


def test_crc16_reference():
    assert crc16(b"123456789") == 0x29B1      # CRC-16/CCITT-FALSE check value


def test_identity_roundtrip(programs):
    _, cap, _ = programs
    ident = parse_identity(identity_bytes(cap, 41, core=CORE_NAME, clk_hz=100_000_000))
    assert ident["geometry"]["weight_depth"] == cap.weight_depth and ident["clk_hz"] == 100_000_000


def test_commands_match_golden(programs):
    base, cap, _ = programs
    drv = _driver(programs)
    ident = drv.identify()
    assert ident["core"] == CORE_NAME and ident["geometry"]["n_samples"] == 2
    runs = []
    for s in range(2):
        cycles = drv.run(s)
        regs = drv.read_counters()
        assert regs["total.cycles"] == cycles > 0
        runs.append(regs)
    report = check_run(base, runs)           # every layer's signature and the final outputs
    assert report.ok, str(report)
    assert report.layers_checked == 8
    out = drv.read_outputs()
    assert out.dtype == np.int8 and len(out) == cap.n_results


def test_runtime_image_and_input_load(programs):
    """A different network is loaded at run time and computes its own golden outputs."""
    drv = _driver(programs)
    other = small_program(lanes=4, seed=5, n_samples=2)
    program = drv.load_image(other.qnet)
    assert program.used["weight"] == len(other.weight_words)
    outs, pred = drv.classify(other.inputs)
    golden = [g[-1] for g in golden_outputs(other)]
    assert np.array_equal(outs, np.stack(golden))
    assert list(pred) == [int(np.argmax(g)) for g in golden]


def test_runtime_load_into_banked_weight_memory(programs, monkeypatch):
    """Host writes reach every bank of a weight memory split into block-RAM banks."""
    from sparsegate.hw.engine import weight_decoder
    monkeypatch.setattr(weight_decoder, "BANK_DEPTH", 8)
    test_runtime_image_and_input_load(programs)


def test_image_too_big_is_refused(programs):
    _, cap, _ = programs
    big = small_program(lanes=4, seed=2, n_samples=1, spec=[
        {"kind": "conv", "cout": 8, "k": 3, "pad": 1, "relu": True, "density": 0.9},
        {"kind": "fc", "cout": 40, "density": 0.9}])
    with pytest.raises(ProgramDoesNotFit, match="weight words"):
        retarget_program(big, cap)


def test_serial_uart_path(device):
    drv = HostDriver(SimTransport(device.serial_top(), serial=True))
    device.alive(drv)


def _expect_error(drv, raw, status, idle=0):
    drv.transport.write(raw)
    if idle:
        drv.transport.idle(idle)
    reply = drv.read_reply()
    assert reply.status == STATUS[status], reply
    assert reply.payload == b""


def test_fuzz_bad_frames_then_still_usable(device):
    dut = device.top()
    drv = HostDriver(SimTransport(dut, max_cycles=100_000))
    delim = bytes([FRAME_DELIM])
    # bad CRC
    body = bytes([CMD["ID"], 0, 0])
    _expect_error(drv, delim + cobs_encode(body + struct.pack("<H", crc16(body) ^ 0x4000)) + delim, "BAD_CRC")
    # corrupted payload byte (CRC no longer matches): nothing may be written
    body = bytes([CMD["RUN"], 2, 0, 0, 0])
    crc = struct.pack("<H", crc16(body))
    _expect_error(drv, delim + cobs_encode(body[:3] + b"\x01\x00" + crc) + delim, "BAD_CRC")
    # unknown command
    _expect_error(drv, frame(0x7E), "UNKNOWN_CMD")
    # length wrong for the command
    _expect_error(drv, frame(CMD["RUN"], b"\x00"), "BAD_LEN")
    _expect_error(drv, frame(CMD["ID"], b"\x01"), "BAD_LEN")
    _expect_error(drv, frame(CMD["WRITE_MEM"], struct.pack("<BHH", 3, 0, 2) + b"\x00"), "BAD_LEN")
    # length over the device's buffer: the rest is discarded up to the delimiter
    body = bytes([CMD["WRITE_MEM"]]) + struct.pack("<H", 0xFFFF)
    _expect_error(drv, bytes([FRAME_DELIM]) + cobs_encode(body + bytes(300)) + bytes([FRAME_DELIM]), "BAD_LEN")
    # truncated frame (the host stops mid-payload)
    _expect_error(drv, frame(CMD["RUN"], b"\x00\x00")[:5], "TIMEOUT", idle=TIMEOUT + 10)
    # arguments out of range
    _expect_error(drv, frame(CMD["RUN"], struct.pack("<H", 2)), "BAD_ARG")
    _expect_error(drv, frame(CMD["READ_REGS"], bytes([len(dut.names) - 1, 5])), "BAD_ARG")
    _expect_error(drv, frame(CMD["READ_REGS"], bytes([0, 0])), "BAD_ARG")
    _expect_error(drv, frame(CMD["WRITE_MEM"], struct.pack("<BHH", len(dut.mems), 0, 0)), "BAD_ARG")
    _expect_error(drv, frame(CMD["WRITE_MEM"], struct.pack("<BHH", 0, 60000, 1) + bytes(
        (next(iter(dut.mems.values()))[0] + 7) // 8)), "BAD_ARG")
    # line noise between frames is skipped
    drv.transport.write(bytes([0x00, 0x13, 0x5A, 0xFF]))
    device.alive(drv)
    with pytest.raises(DeviceError) as err:
        drv.command("RUN", b"\x09\x00")
    assert err.value.status == "BAD_ARG"


def test_fuzz_random_mutations(device):
    """Random single-byte corruptions / truncations of valid frames: every reply is a well-formed frame,
    nothing corrupted is executed, and the device keeps computing the golden outputs."""
    drv = HostDriver(SimTransport(device.top(), max_cycles=100_000))
    rng = random.Random(1234)
    frames = [frame(CMD["ID"]), frame(CMD["RUN"], b"\x01\x00"), frame(CMD["READ_REGS"], bytes([0, 3])),
              frame(CMD["READ_OUTPUTS"])]
    seen = set()
    for _ in range(12):
        raw = bytearray(rng.choice(frames))
        how = rng.choice(["flip", "truncate"])
        if how == "flip":
            i = rng.randrange(1, len(raw))
            raw[i] ^= 1 << rng.randrange(8)
        else:
            raw = raw[:rng.randrange(2, len(raw))]
        drv.transport.write(bytes(raw))
        drv.transport.idle(TIMEOUT + 10)
        try:
            reply = drv.read_reply()
        except OSError:          # noise too short for a header: dropped without a reply
            continue
        seen.add(reply.status_name)
    assert seen - {"OK"}, seen
    device.alive(drv)


def test_stray_bytes_before_a_frame_cost_nothing(device):
    """Issue #18: a lone 0xA5, or ``A5 7F FF 07`` (an old-style header announcing 2047 bytes), before a valid
    frame: the frame is still answered (a noise fragment with a header gets its own error reply, which
    the host skips: its command is not the request's)."""
    drv = HostDriver(SimTransport(device.top(), max_cycles=100_000))
    for noise in [b"\xa5", b"\xa5\x7f\xff\x07", bytes(range(1, 40))]:
        drv.transport.write(noise)
        assert drv.identify()["version"] == PROTOCOL_VERSION == 4
    device.alive(drv)


def test_run_on_an_unloaded_device_is_refused_and_the_device_answers(programs):
    """Issue #18: zero layer descriptors (a device with no image, or a partial one): RUN is answered
    BAD_DESC naming the layer, ID still answers, and loading the image makes it run again."""
    base, _, baked = programs
    drv = _driver(programs)
    index, bits = drv.loader.memories()["desc"]
    drv.write_mem(index, 1, [0], bits)          # layer 1 broken: layer 0 checks out
    with pytest.raises(DeviceError, match="layer 1") as err:
        drv.run(0)
    assert err.value.status == "BAD_DESC"
    drv.write_mem(index, 0, [0] * len(baked.desc_words), bits)
    with pytest.raises(DeviceError, match="layer 0"):
        drv.run(0)
    assert drv.identify()["core"] == CORE_NAME
    drv.load_program(baked)
    _alive(drv, base)


class _Hung(wiring.Component):
    """A core stub that never finishes a run until aborted (the watchdog's and RESET's test)."""

    def __init__(self):
        super().__init__(HostPortSignature.for_memories([(8, 4)]))

    def elaborate(self, platform):
        m = Module()
        with m.If(self.start):
            m.d.sync += self.busy.eq(1)
        with m.If(self.abort):
            m.d.sync += self.busy.eq(0)
        return m


class _HungTop(wiring.Component):
    def __init__(self, run_budget):
        self.run_budget = run_budget
        super().__init__(LinkedCoreSignature())

    def elaborate(self, platform):
        m = Module()
        link = HostLink(mems=[(8, 4)], n_samples=2, n_regs=2, result_base=1, n_results=1, ident=b"STUB",
                        timeout=TIMEOUT, max_payload=16, run_budget=self.run_budget)
        join_core(m, self, link, _Hung(), name="core")
        return m


def test_an_engine_aborted_mid_run_runs_bit_exact_again(programs):
    """RESET during a RUN of the real engine, at 29 points of the run (descriptor fetch, input load, passes in the
    pipelines, the output stage's walk): the next run is bit-exact. The pipelines' data registers have no reset
    (hw/engine/pipeline_registers.py): only the valids, counters and states do, and that must be enough (a walker
    state without its reset fails here)."""
    base = programs[0]
    drv = _driver(programs)
    cycles = drv.run(0)                          # the engine's cycles for a whole run
    want = golden_outputs(base)[0][-1]
    run = frame(CMD["RUN"], b"\x01\x00")
    for cut in range(7, cycles, cycles // 29):   # 29 points, spread over the run's phases
        drv.transport.write(run)
        drv.transport.run_cycles(len(run) + cut)
        drv.transport.write(frame(CMD["RESET"]))
        aborted, done = drv.read_reply(), drv.read_reply()
        assert (aborted.cmd, aborted.status_name, done.cmd, done.status_name) == (
            CMD["RUN"], "ABORTED", CMD["RESET"], "OK"), cut      # the run was cut off, not finished
        drv.run(0)
        assert np.array_equal(drv.read_outputs(len(want)), want), cut


def test_board_reset_mid_run_holds_the_engine_and_restarts_the_link(programs):
    """The board's reset (``reset``: held until the PLL locks) reaches the engine only through the link's
    ``abort``: held in the middle of a run, the engine stops within a few cycles and stays stopped; released,
    the device answers and runs bit-exact."""
    base = programs[0]
    dut = LinkedEngine(programs[2], timeout=TIMEOUT)
    transport = SimTransport(dut)
    busy_while_held = []

    async def board_reset(ctx):
        await ctx.tick().until(dut.busy)
        ctx.set(dut.reset, 1)
        for _ in range(12):
            *_, busy = await ctx.tick().sample(dut.busy)
            busy_while_held.append(busy)
        ctx.set(dut.reset, 0)

    transport.sim.add_testbench(board_reset, background=True)
    run = frame(CMD["RUN"], b"\x00\x00")
    transport.write(run)
    transport.run_cycles(len(run) + 300)
    assert busy_while_held[0] == 1 and busy_while_held[-6:] == [0] * 6    # stopped, and kept stopped
    assert not transport.received                  # the run's reply went with the link's state
    _alive(HostDriver(transport), base)


def test_watchdog_answers_a_run_that_never_finishes():
    drv = HostDriver(SimTransport(_HungTop(run_budget=500), max_cycles=5_000))
    reply = drv.exchange(CMD["RUN"], b"\x00\x00")
    assert reply.status_name == "RUN_TIMEOUT"
    assert drv.exchange(CMD["ID"]).payload == b"STUB"


def test_reset_aborts_a_run_in_progress():
    drv = HostDriver(SimTransport(_HungTop(run_budget=1 << 20), max_cycles=5_000))
    drv.transport.write(frame(CMD["RUN"], b"\x01\x00"))
    drv.transport.run_cycles(300)
    drv.reset()                                 # the RUN is answered ABORTED first, skipped by reset()
    assert drv.exchange(CMD["ID"]).payload == b"STUB"
    assert drv.exchange(CMD["RESET"]).status_name == "OK"

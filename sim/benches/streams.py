"""Valid/ready stream bus-functional models for cocotb benches (Amaranth ``lib.stream`` ports).

Both models drive their signals just after a rising edge and sample in the ``ReadOnly`` phase
before the next one, so a transfer is exactly "valid and ready settled high at a rising edge",
whatever the simulator's scheduling of edge callbacks.
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamDriver", "StreamMonitor", "InOrderChecker", "StreamProtocolError"]


class StreamProtocolError(AssertionError):
    """The design broke the valid/ready rules (dropped valid or changed payload while stalled)."""


class StreamDriver:
    """Sends integer payloads on ``<prefix>payload/valid/ready`` with seeded random valid gaps.

    ``valid_prob`` is the chance of offering an item on any cycle; once offered, valid and the
    payload hold until the transfer.
    """

    def __init__(self, dut, prefix: str, clk, *, rng: random.Random, valid_prob: float = 1.0):
        self.clk = clk
        self.valid = getattr(dut, f"{prefix}valid")
        self.ready = getattr(dut, f"{prefix}ready")
        self.payload = getattr(dut, f"{prefix}payload")
        self.rng = rng
        self.valid_prob = valid_prob
        self.sent = 0
        self.valid.value = 0

    async def send(self, payloads: Iterable[int]) -> None:
        """Send every payload in order; returns just after the edge of the last transfer."""
        for payload in payloads:
            while self.rng.random() >= self.valid_prob:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = payload
            while True:
                await ReadOnly()
                accepted = bool(self.ready.value)
                await RisingEdge(self.clk)
                if accepted:
                    break
            self.sent += 1
        self.valid.value = 0


class StreamMonitor:
    """Receives on ``<prefix>payload/valid/ready`` with seeded random ready stalls.

    Calls ``on_item(value)`` for each transfer (``signed`` selects how payload bits are read) and
    checks the stream rules: a stalled item must stay valid with an unchanged payload.
    """

    def __init__(self, dut, prefix: str, clk, on_item: Callable[[int], None], *, rng: random.Random,
                 ready_prob: float = 1.0, signed: bool = False):
        self.clk = clk
        self.valid = getattr(dut, f"{prefix}valid")
        self.ready = getattr(dut, f"{prefix}ready")
        self.payload = getattr(dut, f"{prefix}payload")
        self.on_item = on_item
        self.rng = rng
        self.ready_prob = ready_prob
        self.signed = signed
        self.received = 0
        self.ready.value = 0

    def _value(self) -> int:
        value = self.payload.value
        return value.to_signed() if self.signed else value.to_unsigned()

    async def run(self) -> None:
        """Run forever (start it with ``cocotb.start_soon`` and let the test end it)."""
        stalled: int | None = None
        while True:
            ready = self.rng.random() < self.ready_prob
            self.ready.value = int(ready)
            await ReadOnly()
            valid = bool(self.valid.value)
            if stalled is not None:
                if not valid:
                    raise StreamProtocolError("valid dropped while the item was stalled")
                if self._value() != stalled:
                    raise StreamProtocolError(f"payload changed while stalled: {stalled} -> {self._value()}")
            stalled = None
            if valid and ready:
                self.received += 1
                self.on_item(self._value())
            elif valid:
                stalled = self._value()
            await RisingEdge(self.clk)


class InOrderChecker:
    """Compares received items with the expected ones, in order, as they arrive."""

    def __init__(self, expected: Iterable[int], name: str = "item"):
        self.expected = deque(expected)
        self.total = len(self.expected)
        self.name = name
        self.matched = 0

    def __call__(self, got: int) -> None:
        if not self.expected:
            raise AssertionError(f"unexpected extra {self.name} {got} after all {self.total} were received")
        want = self.expected.popleft()
        if got != want:
            raise AssertionError(f"{self.name} #{self.matched}: got {got}, expected {want}")
        self.matched += 1

    @property
    def done(self) -> bool:
        return not self.expected

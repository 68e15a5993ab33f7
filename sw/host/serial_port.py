"""A real board's UART as a host-link transport (pyserial, e.g. ``/dev/ttyUSB0``)."""
from __future__ import annotations

import time

from sparsegate.sw.host.driver import LinkError

__all__ = ["SerialTransport"]


class SerialTransport:
    """A UART through pyserial."""

    def __init__(self, port: str, baud: int = 115200):
        try:
            import serial
        except ImportError as err:      # pragma: no cover - depends on the environment
            raise LinkError("pyserial is needed for a board port: pip install pyserial") from err
        try:
            self.port = serial.Serial(port, baud, timeout=0.05)
        except serial.SerialException as err:
            raise LinkError(f"cannot open {port}: {err}") from err

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read(self, n: int, timeout_s: float) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            out += self.port.read(n - len(out))
        return bytes(out)

    def close(self) -> None:
        self.port.close()

"""The DP16KD simulation model (sim/cells/dp16kd.v) with Yosys's own mapping: an Amaranth memory with
initial contents, synthesized by ``synth_ecp5`` into DP16KD cells at each data width (x18 with byte enables,
x9, x4, x2, and x36: the pseudo dual port mode of a 36-bit memory), simulated under Icarus: every address reads back its initial value (the INITVAL layout), then
written words read back (the write path and port widths)."""
from __future__ import annotations

import random
import subprocess

import pytest

from sparsegate.sw.util.toolchain import icarus_available, yowasp_available

pytestmark = [pytest.mark.icarus, pytest.mark.synthesis,
              pytest.mark.skipif(not icarus_available(), reason="Icarus Verilog (iverilog) is not installed"),
              pytest.mark.skipif(not yowasp_available(), reason="YoWASP Yosys is not installed")]

_TB = """
module tb;
  reg clk = 0; reg [13:0] raddr = 0, waddr = 0; reg [35:0] wdata = 0; reg we = 0; wire [35:0] rdata;
  reg [63:0] writes [0:{NW}-1];
  integer i;
  m dut(.clk(clk), .rst(1'b0), .raddr(raddr), .rdata(rdata), .waddr(waddr), .wdata(wdata), .we(we));
  task tick; begin #1 clk = 1; #1 clk = 0; end endtask
  initial begin
    $readmemh("writes.hex", writes);
    for (i = 0; i < {DEPTH}; i = i + 1) begin raddr = i; tick; #1 $display("%0d", rdata); end
    for (i = 0; i < {NW}; i = i + 1) begin
      waddr = writes[i][49:36]; wdata = writes[i][35:0]; we = 1; tick; we = 0;
      raddr = waddr; tick; #1 $display("%0d", rdata);
    end
    $finish;
  end
endmodule
"""


@pytest.mark.parametrize("width,depth", [(36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192)])
def test_yosys_mapped_block_ram(tmp_path, width, depth):
    from amaranth.back import rtlil
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    from sparsegate.sim.netlist_sim import DP16KD_MODEL, IO_MODEL, cell_sources
    from sparsegate.sw.util.toolchain import yowasp_env

    rng = random.Random(width)
    init = [rng.getrandbits(width) for _ in range(depth)]

    class M(wiring.Component):
        def __init__(self):
            super().__init__({"raddr": In(14), "rdata": Out(36), "waddr": In(14), "wdata": In(36), "we": In(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=width, depth=depth, init=init)
            rd, wr = mem.read_port(), mem.write_port()
            m.d.comb += [rd.addr.eq(self.raddr), self.rdata.eq(rd.data), wr.addr.eq(self.waddr),
                         wr.data.eq(self.wdata), wr.en.eq(self.we)]
            return m

    (tmp_path / "m.il").write_text(rtlil.convert(M(), name="m"))
    yosys = yowasp_env()["YOSYS"]
    subprocess.run([yosys, "-q", "-p", "read_rtlil m.il; synth_ecp5 -top m; write_verilog -noattr m_net.v"],
                   cwd=tmp_path, check=True)
    net = (tmp_path / "m_net.v").read_text()
    assert f".DATA_WIDTH_A(32'd{width})" in net or f".DATA_WIDTH_B(32'd{width})" in net, "not mapped at this width"
    writes = [(rng.randrange(depth), rng.getrandbits(width)) for _ in range(200)]
    (tmp_path / "writes.hex").write_text("\n".join(f"{(a << 36) | d:016x}" for a, d in writes) + "\n")
    (tmp_path / "tb.v").write_text(_TB.replace("{DEPTH}", str(depth)).replace("{NW}", str(len(writes))))
    lib = cell_sources(tmp_path / "cells")[0]       # Yosys's models; Icarus 11 rejects $error in a generate block
    lib.write_text(lib.read_text().replace('$error("unsupported COMB mode %s", MODE);', ""))
    done = subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "m_net.v", str(lib), str(DP16KD_MODEL), str(IO_MODEL)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    got = [int(v) for v in out.split() if v.isdigit()]
    assert got[:depth] == init
    assert got[depth:] == [d for _, d in writes]

"""The MULT18X18D simulation model (sim/cells/mult18x18d.v) under Icarus against Python's integers: every
8x8 product in all four signedness modes, random full-width 18x18 products, and the register stages
(latency, clock selection, clock enables, synchronous and asynchronous resets, the GSR state)."""
from __future__ import annotations

import random
import subprocess

import pytest

from sparsegate.sim.netlist_sim import MULT18X18D_MODEL
from sparsegate.sw.util.toolchain import icarus_available

pytestmark = [pytest.mark.icarus,
              pytest.mark.skipif(not icarus_available(), reason="Icarus Verilog (iverilog) is not installed")]

_PORTS = ", ".join([f".A{i}(a[{i}]), .B{i}(b[{i}]), .C{i}(c[{i}]), .SRIA{i}(1'b0), .SRIB{i}(1'b0)" for i in range(18)]
                   + [f".P{i}(p[{i}])" for i in range(36)] + [f".ROC{i}(roc[{i}])" for i in range(18)])

_COMB_TB = f"""
module tb;
  reg [17:0] a, b, c; reg sa, sb; wire [35:0] p; wire [17:0] roc; wire sp;
  reg [54:0] vec [0:{{N}}-1];
  integer i, f;
  MULT18X18D dut ({_PORTS}, .SIGNEDA(sa), .SIGNEDB(sb), .SIGNEDP(sp), .SOURCEA(1'b0), .SOURCEB(1'b0),
                  .CLK0(1'b0), .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0), .CE0(1'b1), .CE1(1'b1), .CE2(1'b1), .CE3(1'b1),
                  .RST0(1'b0), .RST1(1'b0), .RST2(1'b0), .RST3(1'b0));
  initial begin
    $readmemh("vectors.hex", vec);
    c = 0;
    for (i = 0; i < {{N}}; i = i + 1) begin
      {{sa, sb, a, b}} = vec[i][37:0]; #1;
      $display("%h %b", p, sp);
    end
    $finish;
  end
endmodule
"""


def _run(tmp_path, tb: str, vectors: list[str] | None = None) -> list[str]:
    (tmp_path / "tb.v").write_text(tb)
    if vectors is not None:
        (tmp_path / "vectors.hex").write_text("\n".join(vectors) + "\n")
    subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", str(MULT18X18D_MODEL)], cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and not line.startswith(("VCD", "tb.v"))]


def _expected(a: int, b: int, sa: int, sb: int) -> int:
    va = a - (1 << 18) if sa and a >> 17 else a
    vb = b - (1 << 18) if sb and b >> 17 else b
    return (va * vb) & ((1 << 36) - 1)


def _check_products(tmp_path, cases):
    vectors = [f"{(sa << 37) | (sb << 36) | (a << 18) | b:014x}" for a, b, sa, sb in cases]
    lines = _run(tmp_path, _COMB_TB.replace("{N}", str(len(cases))), vectors)
    assert len(lines) == len(cases)
    for (a, b, sa, sb), line in zip(cases, lines):
        p, sp = line.split()
        assert (int(p, 16), int(sp)) == (_expected(a, b, sa, sb), sa | sb), (a, b, sa, sb)


def test_every_8x8_product_in_every_signedness(tmp_path):
    """All 256 x 256 byte pairs, the operands sign-extended to 18 bits when signed (as the engine's int8 x
    int8 MACs reach the DSP), in the four SIGNEDA/SIGNEDB modes."""
    ext = lambda v, s: (v | 0x3FF00) if s and v & 0x80 else v  # noqa: E731
    cases = [(ext(a, sa), ext(b, sb), sa, sb) for sa in (0, 1) for sb in (0, 1) for a in range(256) for b in range(256)]
    _check_products(tmp_path, cases)


def test_random_full_width_products(tmp_path):
    rng = random.Random(21)
    edges = [0, 1, 0x1FFFF, 0x20000, 0x3FFFF]
    cases = [(a, b, sa, sb) for a in edges for b in edges for sa in (0, 1) for sb in (0, 1)]
    cases += [(rng.getrandbits(18), rng.getrandbits(18), rng.getrandbits(1), rng.getrandbits(1)) for _ in range(20000)]
    _check_products(tmp_path, cases)


_SEQ_TB = """
module tb;
  reg [17:0] a, b, c; reg sa, sb; reg [3:0] clk, ce, rst; wire [35:0] p; wire [17:0] roc; wire sp;
  MULT18X18D #(.REG_INPUTA_CLK("CLK0"), .REG_INPUTA_CE("CE1"), .REG_INPUTA_RST("RST1"),
               .REG_INPUTB_CLK("CLK0"), .REG_INPUTB_CE("CE1"), .REG_INPUTB_RST("RST1"),
               .REG_INPUTC_CLK("CLK0"), .REG_INPUTC_CE("CE1"), .REG_INPUTC_RST("RST1"),
               .REG_PIPELINE_CLK("CLK0"), .REG_PIPELINE_CE("CE2"), .REG_PIPELINE_RST("RST2"),
               .REG_OUTPUT_CLK("CLK1"), .REG_OUTPUT_CE("CE3"), .REG_OUTPUT_RST("RST3"), .RESETMODE("{MODE}"))
    dut ({PORTS}, .SIGNEDA(sa), .SIGNEDB(sb), .SIGNEDP(sp), .SOURCEA(1'b0), .SOURCEB(1'b0),
         .CLK0(clk[0]), .CLK1(clk[1]), .CLK2(clk[2]), .CLK3(clk[3]), .CE0(ce[0]), .CE1(ce[1]), .CE2(ce[2]),
         .CE3(ce[3]), .RST0(rst[0]), .RST1(rst[1]), .RST2(rst[2]), .RST3(rst[3]));
  task tick; begin #1 clk = 4'b0011; #1 clk = 4'b0000; #1 $display("%0d %0d %0d", $signed(p), roc, sp); end endtask
  initial begin
    clk = 0; ce = 4'b1111; rst = 0; sa = 1; sb = 1; c = 0;
    #1 $display("%0d %0d %0d", $signed(p), roc, sp);          // after configuration (GSR): all registers 0
    a = -18'sd3; b = 18'sd5; c = 7; tick;                       // 1: input registers take -3, 5, 7
    a = 18'sd100; b = -18'sd2; c = 9; tick;                     // 2: pipeline -15
    a = 18'sd11; b = 18'sd11; c = 1; tick;                      // 3: output -15 (latency 3)
    tick;                                                       // 4: output -200
    ce = 4'b0111; a = 1; b = 1; tick; tick;                     // 5, 6: output register held (CE3 low)
    ce = 4'b1111; tick;                                         // 7: resumes
    rst = 4'b0100; #1 $display("%0d %0d %0d", $signed(p), roc, sp);   // RST2: pipeline cleared now only if async
    tick; rst = 0;                                              // 8: pipeline cleared in both modes
    tick; tick;                                                 // 9: output takes the cleared pipeline; 10: 1 again
    rst = 4'b1000; #1 $display("%0d %0d %0d", $signed(p), roc, sp);   // RST3: output cleared now only if async
    tick;                                                       // 11: cleared in both modes
    $finish;
  end
endmodule
"""


@pytest.mark.parametrize("mode", ["SYNC", "ASYNC"])
def test_register_stages(tmp_path, mode):
    lines = _run(tmp_path, _SEQ_TB.replace("{MODE}", mode).replace("{PORTS}", _PORTS))
    got = [tuple(int(v) for v in line.split()) for line in lines]
    # (P, ROC, SIGNEDP) per step: P arrives three clocks after its operands; ROC is C after its input register
    sync = mode == "SYNC"
    want = [(0, 0, 0), (0, 7, 0), (0, 9, 1), (-15, 1, 1), (-200, 1, 1), (-200, 1, 1), (-200, 1, 1), (1, 1, 1),
            (1, 1, 1 if sync else 0), (1 if sync else 0, 1, 0), (0, 1, 1), (1, 1, 1), (1 if sync else 0, 1, 1),
            (0, 1, 1)]
    assert got == want

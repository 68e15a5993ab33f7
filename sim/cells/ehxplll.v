// ECP5 EHXPLLL stand-in for sparsegate's netlist simulation: the simulation clock replaces the PLL.
//
// Every enabled output (CLKOP, CLKOS..CLKOS3) is CLKI itself, so the design's clock is the one the harness
// drives (the netlist's logic runs one cycle per CLKI cycle, as on the device at the PLL's output
// frequency); LOCK rises 16 CLKI cycles after configuration (the design holds its
// reset until then, as on the device). Phase, dividers and feedback are not modelled.
module EHXPLLL(
  input CLKI, CLKFB, PHASESEL1, PHASESEL0, PHASEDIR, PHASESTEP, PHASELOADREG, STDBY, PLLWAKESYNC, RST,
  input ENCLKOP, ENCLKOS, ENCLKOS2, ENCLKOS3,
  output CLKOP, CLKOS, CLKOS2, CLKOS3, LOCK, INTLOCK, REFCLK, CLKINTFB
);
  parameter CLKI_DIV = 1;
  parameter CLKFB_DIV = 1;
  parameter CLKOP_DIV = 8;
  parameter CLKOS_DIV = 8;
  parameter CLKOS2_DIV = 8;
  parameter CLKOS3_DIV = 8;
  parameter CLKOP_ENABLE = "ENABLED";
  parameter CLKOS_ENABLE = "DISABLED";
  parameter CLKOS2_ENABLE = "DISABLED";
  parameter CLKOS3_ENABLE = "DISABLED";
  parameter CLKOP_CPHASE = 0;
  parameter CLKOS_CPHASE = 0;
  parameter CLKOS2_CPHASE = 0;
  parameter CLKOS3_CPHASE = 0;
  parameter CLKOP_FPHASE = 0;
  parameter CLKOS_FPHASE = 0;
  parameter CLKOS2_FPHASE = 0;
  parameter CLKOS3_FPHASE = 0;
  parameter FEEDBK_PATH = "CLKOP";
  parameter CLKOP_TRIM_POL = "RISING";
  parameter CLKOP_TRIM_DELAY = 0;
  parameter CLKOS_TRIM_POL = "RISING";
  parameter CLKOS_TRIM_DELAY = 0;
  parameter OUTDIVIDER_MUXA = "DIVA";
  parameter OUTDIVIDER_MUXB = "DIVB";
  parameter OUTDIVIDER_MUXC = "DIVC";
  parameter OUTDIVIDER_MUXD = "DIVD";
  parameter PLL_LOCK_MODE = 0;
  parameter PLL_LOCK_DELAY = 200;
  parameter STDBY_ENABLE = "DISABLED";
  parameter REFIN_RESET = "DISABLED";
  parameter SYNC_ENABLE = "DISABLED";
  parameter INT_LOCK_STICKY = "ENABLED";
  parameter DPHASE_SOURCE = "DISABLED";
  parameter PLLRST_ENA = "DISABLED";
  parameter INTFB_WAKE = "DISABLED";

  reg [4:0] lock_count = 5'd0;
  always @(posedge CLKI) if (!lock_count[4]) lock_count <= lock_count + 5'd1;
  assign LOCK = lock_count[4];
  assign INTLOCK = lock_count[4];
  assign CLKOP = CLKOP_ENABLE == "ENABLED" ? CLKI : 1'b0;
  assign CLKOS = CLKOS_ENABLE == "ENABLED" ? CLKI : 1'b0;
  assign CLKOS2 = CLKOS2_ENABLE == "ENABLED" ? CLKI : 1'b0;
  assign CLKOS3 = CLKOS3_ENABLE == "ENABLED" ? CLKI : 1'b0;
  assign REFCLK = CLKI;
  assign CLKINTFB = CLKI;
endmodule

// ECP5 TRELLIS_IO for sparsegate's netlist simulation, in place of Yosys's (share/ecp5/common_sim.vh).
//
// Yosys's model drives the pad of an input with 'z (assign B = 1'bz), which Verilator refuses on a port the
// harness drives ("assigning to input"). Here an input only reads its pad (O = B); an output drives it,
// released when T is high; a bidirectional pad does both.
module TRELLIS_IO(inout B, input I, input T, output O);
  parameter DIR = "INPUT";
  generate
    if (DIR == "INPUT") begin : g_in
      assign O = B;
    end else if (DIR == "OUTPUT") begin : g_out
      assign B = T ? 1'bz : I;
      assign O = 1'b0;
    end else begin : g_bidir
      assign B = T ? 1'bz : I;
      assign O = B;
    end
  endgenerate
endmodule

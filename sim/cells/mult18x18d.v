// ECP5 MULT18X18D (sysDSP 18x18 multiplier) simulation model for sparsegate's netlist simulation.
//
// Yosys ships only a black box for this cell (share/ecp5/cells_bb.v). Behaviour, after Lattice's ECP5 sysDSP
// usage guide (TN1267) and its library model:
//  * A/B come from the A/B pins, or from the shift-in pins SRIA/SRIB when SOURCEA/SOURCEB is 1
//    (SOURCEB_MODE "B_SHIFT"; "C_SHIFT" takes C instead of B, "B_C_DYNAMIC" C when SOURCEB is 1).
//  * SIGNEDA/SIGNEDB sign-extend A/B to 36 bits; the product is the low 36 bits; SIGNEDP = SIGNEDA | SIGNEDB.
//  * Registers INPUTA (A with SIGNEDA), INPUTB (B with SIGNEDB), INPUTC, PIPELINE (product and sign),
//    OUTPUT (product): each is bypassed when its REG_*_CLK is "NONE", else clocked on the rising edge of
//    CLK0..3, enabled by its REG_*_CE (CE0..3) and cleared by its REG_*_RST (RST0..3), synchronously or
//    asynchronously after RESETMODE. CLKn_DIV does not change which edges clock the registers.
//  * GSR: every register is 0 after configuration (the initial values here); the GSR net itself is never
//    pulsed in sparsegate's designs, so it is not a port.
//  * ROA/ROB/ROC: A/B/C after their input registers (to the ALU); SROA/SROB: the shift-out chain
//    (SROA one more register later when CAS_MATCH_REG is "TRUE").
//  * MULT_BYPASS "ENABLED": P is 0 (the operands go to the ALU only).
// Not modelled: HIGHSPEED_CLK (the half-rate B/C interleave), refused when the simulation starts.
module MULT18X18D(
  input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0, B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0, C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
  input SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0, SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
  output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0, SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0, ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0, ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0, ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0,
  output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0,
  output SIGNEDP
);
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0";
  parameter REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTB_CE = "CE0";
  parameter REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE";
  parameter REG_INPUTC_CE = "CE0";
  parameter REG_INPUTC_RST = "RST0";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_PIPELINE_CE = "CE0";
  parameter REG_PIPELINE_RST = "RST0";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_OUTPUT_CE = "CE0";
  parameter REG_OUTPUT_RST = "RST0";
  parameter CLK0_DIV = "ENABLED";
  parameter CLK1_DIV = "ENABLED";
  parameter CLK2_DIV = "ENABLED";
  parameter CLK3_DIV = "ENABLED";
  parameter HIGHSPEED_CLK = "NONE";
  parameter GSR = "ENABLED";
  parameter CAS_MATCH_REG = "FALSE";
  parameter SOURCEB_MODE = "B_SHIFT";
  parameter MULT_BYPASS = "DISABLED";
  parameter RESETMODE = "SYNC";

  generate if (HIGHSPEED_CLK != "NONE") begin : g_refuse
    initial $fatal(1, "MULT18X18D model: HIGHSPEED_CLK=%s is not modelled", HIGHSPEED_CLK);
  end endgenerate

  wire [3:0] clk = {CLK3, CLK2, CLK1, CLK0};
  wire [3:0] ce = {CE3, CE2, CE1, CE0};
  wire [3:0] rst = {RST3, RST2, RST1, RST0};
  wire [17:0] a_pin = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0}, b_pin = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0}, c_pin = {C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0};
  wire [17:0] sria = {SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0}, srib = {SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0};

  wire [17:0] c_q;
  wire [17:0] a_src = SOURCEA ? sria : a_pin;
  wire [17:0] b_src = SOURCEB_MODE == "C_SHIFT" ? (SOURCEB ? srib : c_q)
                    : SOURCEB_MODE == "B_C_DYNAMIC" ? (SOURCEB ? c_q : srib)
                    : (SOURCEB ? srib : b_pin);

  // register stages: {value, sign}
  wire [18:0] a_q, b_q, a_cas_q;
  wire [36:0] pipe_q;
  wire [35:0] out_q;
  mult18x18d_reg #(.W(19), .CLK(REG_INPUTA_CLK), .CE(REG_INPUTA_CE), .RST(REG_INPUTA_RST), .MODE(RESETMODE))
    reg_a (.clk(clk), .ce(ce), .rst(rst), .d({a_src, SIGNEDA}), .q(a_q));
  mult18x18d_reg #(.W(19), .CLK(REG_INPUTB_CLK), .CE(REG_INPUTB_CE), .RST(REG_INPUTB_RST), .MODE(RESETMODE))
    reg_b (.clk(clk), .ce(ce), .rst(rst), .d({b_src, SIGNEDB}), .q(b_q));
  mult18x18d_reg #(.W(18), .CLK(REG_INPUTC_CLK), .CE(REG_INPUTC_CE), .RST(REG_INPUTC_RST), .MODE(RESETMODE))
    reg_c (.clk(clk), .ce(ce), .rst(rst), .d(c_pin), .q(c_q));
  mult18x18d_reg #(.W(19), .CLK(CAS_MATCH_REG == "TRUE" ? REG_INPUTA_CLK : "NONE"), .CE(REG_INPUTA_CE),
                   .RST(REG_INPUTA_RST), .MODE(RESETMODE))
    reg_a_cas (.clk(clk), .ce(ce), .rst(rst), .d(a_q), .q(a_cas_q));

  wire [17:0] a = a_q[18:1], b = b_q[18:1];
  wire [35:0] a_ext = {{18{a_q[0] & a[17]}}, a};
  wire [35:0] b_ext = {{18{b_q[0] & b[17]}}, b};
  wire [35:0] product = a_ext * b_ext;
  mult18x18d_reg #(.W(37), .CLK(REG_PIPELINE_CLK), .CE(REG_PIPELINE_CE), .RST(REG_PIPELINE_RST), .MODE(RESETMODE))
    reg_pipe (.clk(clk), .ce(ce), .rst(rst), .d({product, a_q[0] | b_q[0]}), .q(pipe_q));
  mult18x18d_reg #(.W(36), .CLK(REG_OUTPUT_CLK), .CE(REG_OUTPUT_CE), .RST(REG_OUTPUT_RST), .MODE(RESETMODE))
    reg_out (.clk(clk), .ce(ce), .rst(rst), .d(pipe_q[36:1]), .q(out_q));

  assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = MULT_BYPASS == "ENABLED" ? 36'd0 : out_q;
  assign SIGNEDP = pipe_q[0];
  assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0} = a;
  assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0} = b;
  assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0} = c_q;
  assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a_cas_q[18:1];
  assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b;
endmodule

// One optional register of the DSP: a wire when CLK is "NONE"; else clocked by clk[CLKn], enabled by ce[CEn],
// cleared by rst[RSTn] (MODE "SYNC" or "ASYNC"); 0 after configuration (GSR).
module mult18x18d_reg #(parameter W = 1, parameter CLK = "NONE", parameter CE = "CE0", parameter RST = "RST0",
                        parameter MODE = "SYNC") (
  input [3:0] clk, input [3:0] ce, input [3:0] rst, input [W-1:0] d, output [W-1:0] q
);
  localparam integer CI = CLK == "CLK1" ? 1 : CLK == "CLK2" ? 2 : CLK == "CLK3" ? 3 : 0;
  localparam integer EI = CE == "CE1" ? 1 : CE == "CE2" ? 2 : CE == "CE3" ? 3 : 0;
  localparam integer RI = RST == "RST1" ? 1 : RST == "RST2" ? 2 : RST == "RST3" ? 3 : 0;
  generate if (CLK == "NONE") begin : g_wire
    assign q = d;
  end else begin : g_reg
    reg [W-1:0] r = {W{1'b0}};
    if (MODE == "ASYNC") begin : g_async
      always @(posedge clk[CI] or posedge rst[RI])
        if (rst[RI]) r <= {W{1'b0}};
        else if (ce[EI]) r <= d;
    end else begin : g_sync
      always @(posedge clk[CI])
        if (rst[RI]) r <= {W{1'b0}};
        else if (ce[EI]) r <= d;
    end
    assign q = r;
  end endgenerate
endmodule

// ECP5 DP16KD (16 Kb true dual-port block RAM) simulation model for sparsegate's netlist simulation.
//
// Yosys ships only a black box for this cell (share/ecp5/cells_sim.v marks it (* blackbox *)). Behaviour, after
// Lattice's ECP5 memory usage guide (TN1264):
//  * The array is 1024 rows of 18 bits (two 9-bit bytes). DATA_WIDTH 18: AD[13:4] picks the row, AD1/AD0 are
//    the byte write enables; 9: AD[13:3], byte AD3 of the row; 4, 2, 1: AD[13:2], AD[13:1], AD[13:0] over the
//    eight data bits of each byte (bits 8 and 17 are the parity bits, not reached). Data on DI/DO[W-1:0].
//  * INITVAL_00..3F: 16 rows each, row r at bits [20*(r%16) +: 18] (the layout Yosys's brams_map writes).
//  * DATA_WIDTH 36 (the pseudo dual port mode Yosys's $__PDPW16KD_ maps onto this cell): port A writes, port B
//    reads 512 words of 36 bits, word k = rows 2k (bits 17:0) and 2k+1 (bits 35:18) as Yosys lays out the init
//    values. The write takes AD[13:5] with byte enables AD3:AD0 and data {DIB, DIA}; the read AD[13:5] and
//    gives {DOB, DOA} (port B's clock, enables, reset and REGMODE_B).
//  * An access happens on the rising edge of CLK (falling with CLKxMUX "INV") when CE is high and CS[2:0]
//    equals CSDECODE; WE writes. WRITEMODE: NORMAL keeps DO during a write, WRITETHROUGH shows the new data,
//    READBEFOREWRITE the old.
//  * REGMODE "OUTREG" adds the output register (enabled by OCE); RST clears the output latch and register,
//    synchronously or asynchronously after RESETMODE. After configuration (GSR) the outputs are 0.
// Not modelled: the read/write collision of both ports on one address in one cycle (undefined on the device).
module DP16KD(
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter DIA17MUX = "DIA17";
  parameter DIA16MUX = "DIA16";
  parameter DIA15MUX = "DIA15";
  parameter DIA14MUX = "DIA14";
  parameter DIA13MUX = "DIA13";
  parameter DIA12MUX = "DIA12";
  parameter DIA11MUX = "DIA11";
  parameter DIA10MUX = "DIA10";
  parameter DIA9MUX = "DIA9";
  parameter DIA8MUX = "DIA8";
  parameter DIA7MUX = "DIA7";
  parameter DIA6MUX = "DIA6";
  parameter DIA5MUX = "DIA5";
  parameter DIA4MUX = "DIA4";
  parameter DIA3MUX = "DIA3";
  parameter DIA2MUX = "DIA2";
  parameter DIA1MUX = "DIA1";
  parameter DIA0MUX = "DIA0";
  parameter ADA13MUX = "ADA13";
  parameter ADA12MUX = "ADA12";
  parameter ADA11MUX = "ADA11";
  parameter ADA10MUX = "ADA10";
  parameter ADA9MUX = "ADA9";
  parameter ADA8MUX = "ADA8";
  parameter ADA7MUX = "ADA7";
  parameter ADA6MUX = "ADA6";
  parameter ADA5MUX = "ADA5";
  parameter ADA4MUX = "ADA4";
  parameter ADA3MUX = "ADA3";
  parameter ADA2MUX = "ADA2";
  parameter ADA1MUX = "ADA1";
  parameter ADA0MUX = "ADA0";
  parameter CEAMUX = "CEA";
  parameter OCEAMUX = "OCEA";
  parameter CLKAMUX = "CLKA";
  parameter WEAMUX = "WEA";
  parameter RSTAMUX = "RSTA";
  parameter CSA2MUX = "CSA2";
  parameter CSA1MUX = "CSA1";
  parameter CSA0MUX = "CSA0";
  parameter DOA17MUX = "DOA17";
  parameter DOA16MUX = "DOA16";
  parameter DOA15MUX = "DOA15";
  parameter DOA14MUX = "DOA14";
  parameter DOA13MUX = "DOA13";
  parameter DOA12MUX = "DOA12";
  parameter DOA11MUX = "DOA11";
  parameter DOA10MUX = "DOA10";
  parameter DOA9MUX = "DOA9";
  parameter DOA8MUX = "DOA8";
  parameter DOA7MUX = "DOA7";
  parameter DOA6MUX = "DOA6";
  parameter DOA5MUX = "DOA5";
  parameter DOA4MUX = "DOA4";
  parameter DOA3MUX = "DOA3";
  parameter DOA2MUX = "DOA2";
  parameter DOA1MUX = "DOA1";
  parameter DOA0MUX = "DOA0";
  parameter DIB17MUX = "DIB17";
  parameter DIB16MUX = "DIB16";
  parameter DIB15MUX = "DIB15";
  parameter DIB14MUX = "DIB14";
  parameter DIB13MUX = "DIB13";
  parameter DIB12MUX = "DIB12";
  parameter DIB11MUX = "DIB11";
  parameter DIB10MUX = "DIB10";
  parameter DIB9MUX = "DIB9";
  parameter DIB8MUX = "DIB8";
  parameter DIB7MUX = "DIB7";
  parameter DIB6MUX = "DIB6";
  parameter DIB5MUX = "DIB5";
  parameter DIB4MUX = "DIB4";
  parameter DIB3MUX = "DIB3";
  parameter DIB2MUX = "DIB2";
  parameter DIB1MUX = "DIB1";
  parameter DIB0MUX = "DIB0";
  parameter ADB13MUX = "ADB13";
  parameter ADB12MUX = "ADB12";
  parameter ADB11MUX = "ADB11";
  parameter ADB10MUX = "ADB10";
  parameter ADB9MUX = "ADB9";
  parameter ADB8MUX = "ADB8";
  parameter ADB7MUX = "ADB7";
  parameter ADB6MUX = "ADB6";
  parameter ADB5MUX = "ADB5";
  parameter ADB4MUX = "ADB4";
  parameter ADB3MUX = "ADB3";
  parameter ADB2MUX = "ADB2";
  parameter ADB1MUX = "ADB1";
  parameter ADB0MUX = "ADB0";
  parameter CEBMUX = "CEB";
  parameter OCEBMUX = "OCEB";
  parameter CLKBMUX = "CLKB";
  parameter WEBMUX = "WEB";
  parameter RSTBMUX = "RSTB";
  parameter CSB2MUX = "CSB2";
  parameter CSB1MUX = "CSB1";
  parameter CSB0MUX = "CSB0";
  parameter DOB17MUX = "DOB17";
  parameter DOB16MUX = "DOB16";
  parameter DOB15MUX = "DOB15";
  parameter DOB14MUX = "DOB14";
  parameter DOB13MUX = "DOB13";
  parameter DOB12MUX = "DOB12";
  parameter DOB11MUX = "DOB11";
  parameter DOB10MUX = "DOB10";
  parameter DOB9MUX = "DOB9";
  parameter DOB8MUX = "DOB8";
  parameter DOB7MUX = "DOB7";
  parameter DOB6MUX = "DOB6";
  parameter DOB5MUX = "DOB5";
  parameter DOB4MUX = "DOB4";
  parameter DOB3MUX = "DOB3";
  parameter DOB2MUX = "DOB2";
  parameter DOB1MUX = "DOB1";
  parameter DOB0MUX = "DOB0";
  parameter WID = 0;
  parameter GSR = "ENABLED";
  parameter [319:0] INITVAL_00 = 320'h0;
  parameter [319:0] INITVAL_01 = 320'h0;
  parameter [319:0] INITVAL_02 = 320'h0;
  parameter [319:0] INITVAL_03 = 320'h0;
  parameter [319:0] INITVAL_04 = 320'h0;
  parameter [319:0] INITVAL_05 = 320'h0;
  parameter [319:0] INITVAL_06 = 320'h0;
  parameter [319:0] INITVAL_07 = 320'h0;
  parameter [319:0] INITVAL_08 = 320'h0;
  parameter [319:0] INITVAL_09 = 320'h0;
  parameter [319:0] INITVAL_0A = 320'h0;
  parameter [319:0] INITVAL_0B = 320'h0;
  parameter [319:0] INITVAL_0C = 320'h0;
  parameter [319:0] INITVAL_0D = 320'h0;
  parameter [319:0] INITVAL_0E = 320'h0;
  parameter [319:0] INITVAL_0F = 320'h0;
  parameter [319:0] INITVAL_10 = 320'h0;
  parameter [319:0] INITVAL_11 = 320'h0;
  parameter [319:0] INITVAL_12 = 320'h0;
  parameter [319:0] INITVAL_13 = 320'h0;
  parameter [319:0] INITVAL_14 = 320'h0;
  parameter [319:0] INITVAL_15 = 320'h0;
  parameter [319:0] INITVAL_16 = 320'h0;
  parameter [319:0] INITVAL_17 = 320'h0;
  parameter [319:0] INITVAL_18 = 320'h0;
  parameter [319:0] INITVAL_19 = 320'h0;
  parameter [319:0] INITVAL_1A = 320'h0;
  parameter [319:0] INITVAL_1B = 320'h0;
  parameter [319:0] INITVAL_1C = 320'h0;
  parameter [319:0] INITVAL_1D = 320'h0;
  parameter [319:0] INITVAL_1E = 320'h0;
  parameter [319:0] INITVAL_1F = 320'h0;
  parameter [319:0] INITVAL_20 = 320'h0;
  parameter [319:0] INITVAL_21 = 320'h0;
  parameter [319:0] INITVAL_22 = 320'h0;
  parameter [319:0] INITVAL_23 = 320'h0;
  parameter [319:0] INITVAL_24 = 320'h0;
  parameter [319:0] INITVAL_25 = 320'h0;
  parameter [319:0] INITVAL_26 = 320'h0;
  parameter [319:0] INITVAL_27 = 320'h0;
  parameter [319:0] INITVAL_28 = 320'h0;
  parameter [319:0] INITVAL_29 = 320'h0;
  parameter [319:0] INITVAL_2A = 320'h0;
  parameter [319:0] INITVAL_2B = 320'h0;
  parameter [319:0] INITVAL_2C = 320'h0;
  parameter [319:0] INITVAL_2D = 320'h0;
  parameter [319:0] INITVAL_2E = 320'h0;
  parameter [319:0] INITVAL_2F = 320'h0;
  parameter [319:0] INITVAL_30 = 320'h0;
  parameter [319:0] INITVAL_31 = 320'h0;
  parameter [319:0] INITVAL_32 = 320'h0;
  parameter [319:0] INITVAL_33 = 320'h0;
  parameter [319:0] INITVAL_34 = 320'h0;
  parameter [319:0] INITVAL_35 = 320'h0;
  parameter [319:0] INITVAL_36 = 320'h0;
  parameter [319:0] INITVAL_37 = 320'h0;
  parameter [319:0] INITVAL_38 = 320'h0;
  parameter [319:0] INITVAL_39 = 320'h0;
  parameter [319:0] INITVAL_3A = 320'h0;
  parameter [319:0] INITVAL_3B = 320'h0;
  parameter [319:0] INITVAL_3C = 320'h0;
  parameter [319:0] INITVAL_3D = 320'h0;
  parameter [319:0] INITVAL_3E = 320'h0;
  parameter [319:0] INITVAL_3F = 320'h0;
  parameter INIT_DATA = "STATIC";

  localparam [20479:0] INIT = {INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39, INITVAL_38, INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32, INITVAL_31, INITVAL_30, INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B, INITVAL_2A, INITVAL_29, INITVAL_28, INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24, INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20, INITVAL_1F, INITVAL_1E, INITVAL_1D, INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18, INITVAL_17, INITVAL_16, INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10, INITVAL_0F, INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08, INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01, INITVAL_00};
  reg [17:0] mem [0:1023];
  integer r;
  initial for (r = 0; r < 1024; r = r + 1) mem[r] = INIT[20 * r +: 18];

  function automatic [2:0] csdecode(input [8 * 5 - 1:0] text);   // "0b101" -> 3'b101
    csdecode = {text[16] == 1'b1, text[8] == 1'b1, text[0] == 1'b1};
  endfunction

  // bit position of data bit j of an x4/x2/x1 word at bit offset o in the 16 data bits of a row
  function automatic integer data_bit(input integer o);
    data_bit = o < 8 ? o : o + 1;
  endfunction

  function automatic [17:0] rd(input integer width, input [13:0] ad);
    integer j, off;
    reg [17:0] row;
    begin
      rd = 18'd0;
      if (width == 18) rd = mem[ad[13:4]];
      else if (width == 9) begin row = mem[ad[13:4]]; rd[8:0] = ad[3] ? row[17:9] : row[8:0]; end
      else begin
        row = mem[ad[13:4]];
        off = width == 4 ? ad[3:2] * 4 : width == 2 ? ad[3:1] * 2 : ad[3:0];
        for (j = 0; j < width; j = j + 1) rd[j] = row[data_bit(off + j)];
      end
    end
  endfunction

  task automatic wr(input integer width, input [13:0] ad, input [17:0] di);
    integer j, off;
    begin
      if (width == 18) begin
        if (ad[0]) mem[ad[13:4]][8:0] = di[8:0];
        if (ad[1]) mem[ad[13:4]][17:9] = di[17:9];
      end else if (width == 9) begin
        if (ad[3]) mem[ad[13:4]][17:9] = di[8:0]; else mem[ad[13:4]][8:0] = di[8:0];
      end else begin
        off = width == 4 ? ad[3:2] * 4 : width == 2 ? ad[3:1] * 2 : ad[3:0];
        for (j = 0; j < width; j = j + 1) mem[ad[13:4]][data_bit(off + j)] = di[j];
      end
    end
  endtask

  // ---- port A
  wire clk_a = CLKAMUX == "INV" ? ~CLKA : CLKA;
  wire [13:0] ad_a = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [17:0] di_a = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire sel_a = {CSA2, CSA1, CSA0} == csdecode(CSDECODE_A);
  reg [17:0] lat_a = 18'd0, reg_a = 18'd0;
  reg [17:0] lat_w = 18'd0, reg_w = 18'd0;      // x36 read: the low half (port B's read, on DOA)
  wire [17:0] do_a = DATA_WIDTH_B == 36 ? (REGMODE_B == "OUTREG" ? reg_w : lat_w)
                                        : REGMODE_A == "OUTREG" ? reg_a : lat_a;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = do_a;
  generate if (RESETMODE == "ASYNC") begin : g_async_a
    always @(posedge clk_a or posedge RSTA) begin
      if (RSTA) begin lat_a <= 18'd0; reg_a <= 18'd0; end
      else begin
        if (OCEA) reg_a <= lat_a;
        if (CEA && sel_a) access_a();
      end
    end
  end else begin : g_sync_a
    always @(posedge clk_a) begin
      if (RSTA) begin lat_a <= 18'd0; reg_a <= 18'd0; end
      else begin
        if (OCEA) reg_a <= lat_a;
        if (CEA && sel_a) access_a();
      end
    end
  end endgenerate

  // one clock-enabled access of port A: write (byte enables AD1:AD0 at x18, AD3:AD0 at x36) and/or read per
  // WRITEMODE_A (not at x36: port A only writes)
  task automatic access_a;
    reg [17:0] old;
    begin
      if (DATA_WIDTH_A == 36) begin
        if (WEA) begin
          if (ad_a[0]) mem[{ad_a[13:5], 1'b0}][8:0] = di_a[8:0];
          if (ad_a[1]) mem[{ad_a[13:5], 1'b0}][17:9] = di_a[17:9];
          if (ad_a[2]) mem[{ad_a[13:5], 1'b1}][8:0] = di_b[8:0];
          if (ad_a[3]) mem[{ad_a[13:5], 1'b1}][17:9] = di_b[17:9];
        end
      end else begin
        old = rd(DATA_WIDTH_A, ad_a);
        if (WEA) begin
          wr(DATA_WIDTH_A, ad_a, di_a);
          if (WRITEMODE_A == "WRITETHROUGH") lat_a <= rd(DATA_WIDTH_A, ad_a);
          else if (WRITEMODE_A == "READBEFOREWRITE") lat_a <= old;
        end else
          lat_a <= old;
      end
    end
  endtask

  // ---- port B
  wire clk_b = CLKBMUX == "INV" ? ~CLKB : CLKB;
  wire [13:0] ad_b = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire [17:0] di_b = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire sel_b = {CSB2, CSB1, CSB0} == csdecode(CSDECODE_B);
  reg [17:0] lat_b = 18'd0, reg_b = 18'd0;
  wire [17:0] do_b = REGMODE_B == "OUTREG" ? reg_b : lat_b;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = do_b;
  generate if (RESETMODE == "ASYNC") begin : g_async_b
    always @(posedge clk_b or posedge RSTB) begin
      if (RSTB) begin lat_b <= 18'd0; reg_b <= 18'd0; lat_w <= 18'd0; reg_w <= 18'd0; end
      else begin
        if (OCEB) begin reg_b <= lat_b; reg_w <= lat_w; end
        if (CEB && sel_b) access_b();
      end
    end
  end else begin : g_sync_b
    always @(posedge clk_b) begin
      if (RSTB) begin lat_b <= 18'd0; reg_b <= 18'd0; lat_w <= 18'd0; reg_w <= 18'd0; end
      else begin
        if (OCEB) begin reg_b <= lat_b; reg_w <= lat_w; end
        if (CEB && sel_b) access_b();
      end
    end
  end endgenerate

  // one clock-enabled access of port B: write (byte enables AD1:AD0 at x18) and/or read per WRITEMODE_B
  task automatic access_b;
    reg [17:0] old;
    begin
      if (DATA_WIDTH_B == 36) begin
        lat_w <= mem[{ad_b[13:5], 1'b0}];
        lat_b <= mem[{ad_b[13:5], 1'b1}];
      end else begin
        old = rd(DATA_WIDTH_B, ad_b);
        if (WEB) begin
          wr(DATA_WIDTH_B, ad_b, di_b);
          if (WRITEMODE_B == "WRITETHROUGH") lat_b <= rd(DATA_WIDTH_B, ad_b);
          else if (WRITEMODE_B == "READBEFOREWRITE") lat_b <= old;
        end else
          lat_b <= old;
      end
    end
  endtask
endmodule

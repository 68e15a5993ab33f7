"""cocotb benches (run inside the simulator by :mod:`sparsegate.sim.cocotb_runner`) and their stream BFMs."""

"""sparsegate.sim."""

"""sparsegate.hw."""

"""sparsegate.sw."""

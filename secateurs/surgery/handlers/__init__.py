"""Built-in surgery handlers, one module family per file."""

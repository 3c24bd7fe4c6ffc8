"""torchvision: surgery handlers (and replacement forwards) for its model-specific modules."""

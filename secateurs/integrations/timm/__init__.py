"""timm integration: surgery handlers for timm's own layers."""

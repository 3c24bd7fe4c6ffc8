"""Graph capture, per-op dimension rules, coupling and groups. Knows torch, not nn.Module types."""

"""Surgery: slice parameters and buffers, then refresh module attributes (plan-then-apply)."""

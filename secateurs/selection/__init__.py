"""Selection algorithms: turn per-unit scores into the units each group removes."""

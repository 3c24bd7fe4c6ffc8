"""Importance criteria: map each group to one score per unit (higher = more important)."""

from secateurs.scoring.registry import Criterion, get_criterion, register_criterion, registered_criteria

__all__ = ["Criterion", "get_criterion", "register_criterion", "registered_criteria"]

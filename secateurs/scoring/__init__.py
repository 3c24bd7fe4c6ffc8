"""Importance criteria: map each group to one score per unit (higher = more important)."""

from secateurs.scoring.registry import CRITERIA, Criterion, get_criterion, register_criterion

__all__ = ["CRITERIA", "Criterion", "get_criterion", "register_criterion"]

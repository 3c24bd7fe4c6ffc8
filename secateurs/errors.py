"""One error hierarchy for everything secateurs raises on purpose.

Messages say what went wrong, where (module path, graph node, shapes) and what to do.
"""

from __future__ import annotations


class SecateursError(Exception):
    """Base class of every error secateurs raises on purpose."""


class CaptureError(SecateursError):
    """The model could not be captured as a graph."""


class UnsupportedOpError(SecateursError):
    """An operator has no coupling rule and the request cannot proceed without one."""


class PlanError(SecateursError):
    """A plan could not be made, or does not fit the model it is applied to."""


class ConfigRewriteError(PlanError):
    """A model's own config (Hugging Face) cannot describe what the plan would make of it, and a stock reload would
    silently build something else: refused before surgery."""


class InvalidArgumentError(SecateursError, ValueError):
    """A user argument has a bad value."""


class InvalidTypeError(SecateursError, TypeError):
    """A user argument has a bad type."""


class TargetUnreachableError(PlanError):
    """A MACs/params/latency target cannot be met with the prunable groups available."""


class ApplyError(SecateursError):
    """Surgery failed; the model has been restored to its state before apply."""


class VerificationError(SecateursError):
    """The pruned model does not match the masked reference, or does not run."""


class MissingDependencyError(SecateursError, ImportError):
    """An optional dependency is needed for this feature."""


class FileFormatError(SecateursError):
    """A saved file is missing, corrupt, or of an unexpected kind."""


def missing_dependency(package: str, extra: str, feature: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"{feature} needs the optional package '{package}'. "
        f"Install it with: pip install 'secateurs[{extra}]'"
    )


class DuplicateRegistrationError(SecateursError):
    """Two different entries were registered under one key of a registry."""


class UnknownNameError(InvalidArgumentError):
    """A name asked of a registry (criterion, method, model spec scheme...) is not registered."""


class NothingPrunedWarning(UserWarning):
    """A requested unit kind matched no prunable group, or its ratio rounds to nothing."""


class PlanCheckWarning(UserWarning):
    """Something a plan will produce that the user should know before surgery (``secateurs.planning.checks``)."""


class StockConfigWarning(PlanCheckWarning):
    """A pruned Hugging Face model's config cannot describe it: ``save_pretrained()`` output will not rebuild it
    with the stock class (``secateurs.save``/``secateurs.load`` still do)."""

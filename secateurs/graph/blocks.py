"""Find the list of residual blocks of a model: a registered adapter, or a generic search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from secateurs.errors import InvalidArgumentError, PlanError
from secateurs.registry import Registry


def _no_config_change(model: nn.Module, container: str, kept: list[int]) -> None:
    return None


@dataclass(frozen=True)
class DepthAdapter:
    """How a model family stores its blocks.

    ``find(model)`` returns the path of the block container (``""`` for the model itself), or None to
    fall back to the generic search. ``after_drop(model, container, kept)`` runs after the blocks were
    removed (``kept``: old indices of the remaining blocks, in order) and keeps metadata true, e.g.
    ``config.num_hidden_layers``. ``layer_idx`` attributes are renumbered for every model.
    """

    find: Callable[[nn.Module], str | None]
    after_drop: Callable[[nn.Module, str, list[int]], None] = _no_config_change
    note: str = ""


ADAPTERS: Registry[DepthAdapter] = Registry("depth adapter")
register_depth_adapter = ADAPTERS.register


def adapter_for(model: nn.Module) -> DepthAdapter | None:
    from secateurs.plugins import load_integrations

    load_integrations(model)  # integrations (Hugging Face) register their adapters when the model uses them
    return ADAPTERS.for_type(type(model))


def _is_block_list(m: nn.Module) -> bool:
    if not isinstance(m, (nn.ModuleList, nn.Sequential)) or len(m) < 2:
        return False
    kinds = {type(b) for b in m}
    return len(kinds) == 1 and any(True for _ in next(iter(m)).parameters())


def candidates(model: nn.Module) -> list[str]:
    """Paths of every ModuleList/Sequential of at least two same-type blocks that have parameters."""
    return [path for path, m in model.named_modules() if _is_block_list(m)]


def find_blocks(model: nn.Module) -> str:
    """Path of the block container of ``model``: the adapter's, or the one generic candidate with most blocks."""
    adapter = adapter_for(model)
    path = adapter.find(model) if adapter is not None else None
    if path is not None:
        return path
    found = candidates(model)
    if not found:
        raise PlanError(
            f"{type(model).__name__} has no nn.ModuleList or nn.Sequential of at least two blocks of one type, so no "
            "layers can be dropped; register a DepthAdapter (secateurs.depth.register_depth_adapter) naming them")
    modules = dict(model.named_modules())
    most = max(len(modules[p]) for p in found)
    best = [p for p in found if len(modules[p]) == most and not any(p.startswith(q + ".") for q in found if q != p)]
    if len(best) != 1:
        raise PlanError(
            f"{type(model).__name__} has several block lists of {most} blocks ({', '.join(repr(p) for p in best)}); "
            "register a DepthAdapter (secateurs.depth.register_depth_adapter) that names the one to drop from")
    return best[0]


def container(model: nn.Module, path: str) -> nn.ModuleList | nn.Sequential:
    try:
        m = model.get_submodule(path) if path else model
    except AttributeError:
        raise InvalidArgumentError(f"{type(model).__name__} has no module {path!r} holding blocks to drop") from None
    if not isinstance(m, (nn.ModuleList, nn.Sequential)):
        raise InvalidArgumentError(f"{path!r} of {type(model).__name__} is a {type(m).__name__}, not an nn.ModuleList "
                                   "or nn.Sequential of blocks")
    return m

"""The masked original of a plan that removes whole mixture-of-experts experts.

Zeroing a removed expert's router row gives it logit 0, which a softmax router would still select; removing the
expert is the same as a router logit of ``-inf``: it gets no softmax mass and top-k never picks it. Within
``routed_out(model, plan)``, every ``F.linear`` whose weight is a router of the plan (``plan.settings["experts"]``)
returns ``-inf`` at the removed experts, and the other per-expert vectors of the router's dim (a router bias, a
score-correction bias added before top-k) hold ``-inf`` there too, so a biased selection cannot pick them either.
Experts are the first rows of every member (a router may have rows past them: zero or skip experts, a shared
expert's gate), so a removed expert's index is the same in each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from secateurs.plans import Plan

_LINEAR = (F.linear, torch._C._nn.linear, torch.ops.aten.linear.default)  # eager, and a captured program


class _RouterMask(TorchFunctionMode):
    def __init__(self, routers: dict[int, torch.Tensor]):
        super().__init__()
        self.routers = routers  # data_ptr of a router weight -> indices of removed experts

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _LINEAR and len(args) > 1 and isinstance(args[1], torch.Tensor) and isinstance(out, torch.Tensor):
            removed = self.routers.get(args[1].data_ptr())
            if removed is not None:
                out = out.index_fill(-1, removed.to(out.device), float("-inf"))
        return out


@contextlib.contextmanager
def routed_out(model: nn.Module, plan: Plan) -> Iterator[None]:
    """Within the block, the plan's removed experts are never routed to (see the module docstring)."""
    entries = plan.settings.get("experts") or []
    if not entries:
        yield
        return
    state = model.state_dict(keep_vars=True)
    by_id = {g.id: g for g in plan.groups}
    routers: dict[int, torch.Tensor] = {}
    saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    try:
        for entry in entries:
            group, weight = by_id.get(int(entry["group"])), state.get(str(entry["router"]))
            if group is None or weight is None or not group.removed:
                continue
            removed = torch.as_tensor(sorted(group.removed), dtype=torch.long)
            routers[weight.data_ptr()] = removed
            for fqn, dim in group.members:  # other vectors along the router's expert dim (biases)
                t = state.get(fqn)
                if t is not None and t is not weight and t.ndim == 1 and dim == 0 and t.is_floating_point():
                    idx = removed.to(t.device)
                    saved.append((t, idx, t.detach()[idx].clone()))
                    with torch.no_grad():
                        t.index_fill_(0, idx, float("-inf"))
        with _RouterMask(routers):
            yield
    finally:
        with torch.no_grad():
            for t, idx, values in reversed(saved):
                t.index_copy_(0, idx, values)

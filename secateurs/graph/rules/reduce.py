"""Reductions: sum/norm/count (exact where removed units are zero), mean/var/max (inexact), arg/cum ops (frozen).

A sum, norm or count over a pruned dimension leaves removed units out; the masked original adds their values.
The two agree only where those values are zero (``ctx.is_zero``: after a linear layer or a relu, not after a
sigmoid, an exp or ``+ 1``). Otherwise a float result is marked inexact (checked structurally, as a mean or a
softmax: the pruned model computes the same statistic over fewer units) and an integer or bool result (a count, a
flag) freezes the dimension: removal would change it by whole units, a different function rather than an
approximation.
"""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import norm_dim

EXACT = ("aten.sum", "aten.nansum", "aten.norm", "aten.linalg_vector_norm", "aten.count_nonzero", "aten.any")
# all(): a zeroed (removed) element is False, so the masked original differs from the pruned model
INEXACT = ("aten.all", "aten.mean", "aten.nanmean", "aten.amax", "aten.amin", "aten.var", "aten.std", "aten.logsumexp",
           "aten.max", "aten.min", "aten.var_mean", "aten.std_mean", "aten.prod", "aten.median")
POSITIONAL = ("aten.argmax", "aten.argmin")


def _reduce_dims(ctx: RuleContext, ndim: int) -> tuple[list[int], bool]:
    name = ctx.node.target
    args = ctx.node.args
    dims = None
    keepdim = bool(ctx.node.kwargs.get("keepdim", False))
    if name.startswith(("aten.norm", "aten.linalg_vector_norm")):
        dims = args[2] if len(args) > 2 else ctx.node.kwargs.get("dim")
        keepdim = bool(args[3]) if len(args) > 3 else keepdim
    elif len(args) > 1 and not isinstance(args[1], bool):
        dims = args[1]
        keepdim = bool(args[2]) if len(args) > 2 and isinstance(args[2], bool) else keepdim
    else:
        dims = ctx.node.kwargs.get("dim")
    if name.startswith(("aten.var", "aten.std")) and "correction" in name and len(args) > 1:
        dims = args[1]
    if dims is None or dims == []:
        return list(range(ndim)), keepdim
    if isinstance(dims, int):
        dims = [dims]
    return sorted(norm_dim(int(d), ndim) for d in dims), keepdim


def _reduce(ctx: RuleContext, mode: str) -> None:
    xs = list(ctx.spaces(ctx.arg(0)))
    dims, keepdim = _reduce_dims(ctx, len(xs))
    name = ctx.node.target
    for k in range(ctx.n_outputs()):
        out = list(ctx.out(k))
        if keepdim and len(out) == len(xs):
            ctx.freeze_all([out[d] for d in dims], "reduced dimension")
            kept = [o for i, o in enumerate(out) if i not in dims]
        else:
            kept = out
        src = [s for i, s in enumerate(xs) if i not in dims]
        ctx.same_all(src, kept)
        if not name.startswith("aten.logsumexp"):  # every other reduction of zeros is zero (or False)
            ctx.carry_all(src, kept)
    dtype = ctx.dtype()
    integer = dtype is not None and not (dtype.is_floating_point or dtype.is_complex)
    for d in dims:
        x = xs[d]
        if mode == "positional":
            ctx.freeze(x, f"{name} returns positions along the dimension")
        elif mode == "exact" and ctx.is_zero(x):
            ctx.mention(x)  # removed units are zero here: they add nothing to the sum, norm or count
        elif integer:
            why = "from values that are not zero where units are removed" if mode == "exact" else "that removal changes"
            ctx.freeze(x, f"{name} gives an integer/bool result (a count or flag) over the dimension {why}: "
                          "removing units would change it, not approximate it")
        elif mode == "exact":
            ctx.inexact(x, f"{name} sums over the dimension values that are not zero where units are removed "
                           "(e.g. after a sigmoid, exp or an added constant)")
        else:
            ctx.inexact(x, f"{name} reduces over the dimension")


@register(*EXACT)
def exact_reduce(ctx: RuleContext) -> None:
    _reduce(ctx, "exact")


@register(*INEXACT)
def inexact_reduce(ctx: RuleContext) -> None:
    _reduce(ctx, "inexact")


@register(*POSITIONAL)
def positional_reduce(ctx: RuleContext) -> None:
    _reduce(ctx, "positional")


@register("aten.cumsum", "aten.cumprod", "aten.diff", "aten.flip", "aten.roll", "aten.sort", "aten.topk",
          "aten.tril", "aten.triu", "aten.cummax", "aten.cummin")
def positional(ctx: RuleContext) -> None:
    """Ops whose result depends on positions along some dims: those dims are frozen, others kept."""
    xs = list(ctx.spaces(ctx.arg(0)))
    n = len(xs)
    name = ctx.node.target
    if name.startswith(("aten.tril", "aten.triu")):
        dims = {n - 2, n - 1}
    elif name.startswith("aten.roll"):
        given = ctx.arg(2, "dims", [])
        dims = {norm_dim(int(d), n) for d in given} if given else set(range(n))
    elif name.startswith("aten.flip"):
        dims = {norm_dim(int(d), n) for d in ctx.arg(1)}
    elif name.startswith("aten.topk") or name.startswith("aten.diff"):
        dims = {norm_dim(int(ctx.arg(2, "dim", -1)), n)}
    elif name.startswith("aten.sort"):
        dims = {norm_dim(int(ctx.arg(1, "dim", -1)), n)}
    else:
        dims = {norm_dim(int(ctx.arg(1, "dim", -1)), n)}
    for k in range(ctx.n_outputs()):
        out = ctx.out(k)
        for i, (s, o) in enumerate(zip(xs, out, strict=False)):
            if i in dims:
                ctx.freeze_all([s, o], f"{name} depends on positions along the dimension")
            else:
                ctx.same(s, o)
                if k == 0:
                    ctx.carry(s, o)
    for ref in ctx.tensor_refs():
        if ref != ctx.arg(0):
            ctx.freeze_all(ctx.spaces(ref), f"operand of {name}")

"""Shape ops: view/reshape/flatten/unflatten (products), permute/transpose, squeeze, expand, repeat."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import norm_dim


def reshape_spaces(ctx: RuleContext, src: list[int], out: list[int]) -> None:
    """Relate the dims of a reshape: equal-product runs become ``same`` or ``product`` relations."""
    a = [s for s in src if ctx.size(s) != 1]
    b = [s for s in out if ctx.size(s) != 1]
    ctx.freeze_all([s for s in src if ctx.size(s) == 1], "size-1 dimension")
    ctx.freeze_all([s for s in out if ctx.size(s) == 1], "size-1 dimension")
    i = j = 0
    while i < len(a) and j < len(b):
        run_a, run_b = [a[i]], [b[j]]
        pa, pb = ctx.size(a[i]), ctx.size(b[j])
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                run_a.append(a[i])
                pa *= ctx.size(a[i])
                i += 1
            else:
                run_b.append(b[j])
                pb *= ctx.size(b[j])
                j += 1
        for o in run_b:  # the output holds the source's values: zero where all of the source run is zero
            ctx.carry(run_a, o)
        if len(run_a) == 1 and len(run_b) == 1:
            ctx.same(run_a[0], run_b[0])
        elif len(run_a) == 1:
            ctx.product(run_a[0], run_b)
        elif len(run_b) == 1:
            ctx.product(run_b[0], run_a)
        else:
            flat = ctx.rel.new_space(pa, (ctx.node.name, -1, len(ctx.rel.sizes)))
            ctx.product(flat, run_a)
            ctx.product(flat, run_b)
    ctx.freeze_all(a[i:] + b[j:], "reshape dimension with zero elements")


@register("aten.view", "aten.reshape", "aten._unsafe_view", "aten.flatten", "aten.unflatten",
          "aten.view_as", "aten.reshape_as", "aten._reshape_alias", "aten.squeeze", "aten.unsqueeze")
def reshape(ctx: RuleContext) -> None:
    src = ctx.arg(0)
    reshape_spaces(ctx, list(ctx.spaces(src)), list(ctx.out()))
    for ref in ctx.tensor_refs():
        if ref != src:  # view_as / reshape_as: the other tensor contributes its shape only
            ctx.mention(*ctx.spaces(ref))


@register("aten.permute", "aten.transpose", "aten.swapaxes", "aten.t", "aten.movedim", "aten.numpy_T", "aten.mT")
def permute(ctx: RuleContext) -> None:
    xs, out = list(ctx.spaces(ctx.arg(0))), ctx.out()
    n = len(xs)
    name = ctx.node.target
    if name.startswith("aten.permute"):
        order = [norm_dim(d, n) for d in ctx.arg(1)]
    elif name.startswith(("aten.transpose", "aten.swapaxes")):
        d0, d1 = norm_dim(int(ctx.arg(1)), n), norm_dim(int(ctx.arg(2)), n)
        order = list(range(n))
        order[d0], order[d1] = order[d1], order[d0]
    elif name.startswith("aten.movedim"):
        srcs = ctx.arg(1) if isinstance(ctx.arg(1), (list, tuple)) else [ctx.arg(1)]
        dsts = ctx.arg(2) if isinstance(ctx.arg(2), (list, tuple)) else [ctx.arg(2)]
        srcs = [norm_dim(int(d), n) for d in srcs]
        dsts = [norm_dim(int(d), n) for d in dsts]
        order = [-1] * n
        for s_, d_ in zip(srcs, dsts, strict=True):
            order[d_] = s_
        rest = iter(d for d in range(n) if d not in srcs)
        order = [o if o >= 0 else next(rest) for o in order]
    else:  # t / mT / numpy_T
        order = list(range(n))[::-1] if n <= 2 or name.startswith("aten.numpy_T") else list(range(n - 2)) + [n - 1, n - 2]
    for i, o in enumerate(order):
        ctx.same(out[i], xs[o])
        ctx.carry(xs[o], out[i])


@register("aten.expand", "aten.expand_as", "aten.broadcast_to")
def expand(ctx: RuleContext) -> None:
    src = ctx.arg(0)
    xs, out = list(ctx.spaces(src)), ctx.out()
    offset = len(out) - len(xs)
    for i, s in enumerate(xs):
        o = out[i + offset]
        if ctx.size(s) == ctx.size(o):
            ctx.same(s, o)
            ctx.carry(s, o)
        else:
            ctx.freeze(s, "expanded size-1 dimension")
    # New and expanded output dims are copies whose size is a constant of the graph: they are left
    # free (GQA repeat_kv expands a size-1 dim into the query-heads-per-group dim).
    ctx.mention(*out)
    for ref in ctx.tensor_refs():
        if ref != src:
            ctx.mention(*ctx.spaces(ref))


@register("aten.repeat")
def repeat(ctx: RuleContext) -> None:
    xs, out = list(ctx.spaces(ctx.arg(0))), ctx.out()
    reps = list(ctx.arg(1))
    offset = len(out) - len(xs)
    for j, o in enumerate(out):
        r = int(reps[j])
        if j < offset:
            ctx.mention(o)  # new leading dims: free copies
            continue
        s = xs[j - offset]
        ctx.carry(s, o)
        if r == 1:
            ctx.same(s, o)
        else:
            copies = ctx.rel.new_space(r, (ctx.node.name, -1, j))
            ctx.freeze(copies, "repeat count (a constant of the graph)")
            ctx.product(o, [copies, s])


@register("aten.repeat_interleave.self_int")
def repeat_interleave(ctx: RuleContext) -> None:
    xs, out = list(ctx.spaces(ctx.arg(0))), ctx.out()
    r = int(ctx.arg(1))
    dim = ctx.arg(2, "dim")
    if dim is None:
        ctx.freeze_all(xs + list(out), "repeat_interleave over a flattened tensor")
        return
    d = norm_dim(int(dim), len(xs))
    for i, (s, o) in enumerate(zip(xs, out, strict=True)):
        ctx.carry(s, o)
        if i != d:
            ctx.same(s, o)
    copies = ctx.rel.new_space(r, (ctx.node.name, -1, d))
    ctx.freeze(copies, "repeat_interleave count (a constant of the graph)")
    ctx.product(out[d], [xs[d], copies])

"""Pooling, resampling and padding: channels pass through, spatial dims are positional (frozen)."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import norm_dim

_SPATIAL = {"1d": 1, "2d": 2, "3d": 3}


def _n_spatial(name: str) -> int:
    for suffix, n in _SPATIAL.items():
        if suffix in name:
            return n
    return 2


@register(
    "aten.adaptive_avg_pool1d", "aten.adaptive_avg_pool2d", "aten.adaptive_avg_pool3d",
    "aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d",
    "aten.adaptive_max_pool1d", "aten.adaptive_max_pool2d", "aten.adaptive_max_pool3d",
    "aten.avg_pool1d", "aten.avg_pool2d", "aten.avg_pool3d",
    "aten.max_pool1d", "aten.max_pool2d", "aten.max_pool3d",
    "aten.max_pool1d_with_indices", "aten.max_pool2d_with_indices", "aten.max_pool3d_with_indices",
    "aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
    "aten.upsample_bilinear2d", "aten.upsample_bicubic2d", "aten.upsample_linear1d",
    "aten.upsample_trilinear3d", "aten._upsample_nearest_exact2d", "aten._upsample_bilinear2d_aa",
    "aten.reflection_pad1d", "aten.reflection_pad2d", "aten.reflection_pad3d",
    "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d",
)
def spatial(ctx: RuleContext) -> None:
    k = _n_spatial(ctx.node.target)
    xs = list(ctx.spaces(ctx.arg(0)))
    lead = len(xs) - k
    for j in range(ctx.n_outputs()):
        out = list(ctx.out(j))
        ctx.same_all(xs[:lead], out[:lead])
        if j == 0:  # pooled/resampled/padded values of a zero channel are zero (indices of max_pool aside)
            ctx.carry_all(xs[:lead], out[:lead])
        ctx.freeze_all(out[lead:], f"spatial dimension of {ctx.node.target}")
    ctx.freeze_all(xs[lead:], f"spatial dimension of {ctx.node.target}")


@register("aten.pad", "aten.constant_pad_nd")
def pad(ctx: RuleContext) -> None:
    xs, out = list(ctx.spaces(ctx.arg(0))), list(ctx.out())
    amounts = list(ctx.arg(1))
    padded = set()
    for i in range(0, len(amounts), 2):
        if amounts[i] or (i + 1 < len(amounts) and amounts[i + 1]):
            padded.add(len(xs) - 1 - i // 2)
    value = ctx.arg(3, "value") if ctx.node.target.startswith("aten.pad") else ctx.arg(2, "value", 0)
    for d, (s, o) in enumerate(zip(xs, out, strict=True)):
        if d in padded:
            ctx.freeze_all([s, o], "padded dimension")
        else:
            ctx.same(s, o)
            if not value:  # constant padding with a non-zero value fills removed channels too
                ctx.carry(s, o)


@register("aten.unfold")
def unfold(ctx: RuleContext) -> None:
    xs, out = list(ctx.spaces(ctx.arg(0))), list(ctx.out())
    d = norm_dim(int(ctx.arg(1)), len(xs))
    for i, s in enumerate(xs):
        if i == d:
            ctx.freeze_all([s, out[i], out[-1]], "unfolded dimension")
        else:
            ctx.same(s, out[i])
            ctx.carry(s, out[i])


@register("aten.im2col", "aten.col2im")
def im2col(ctx: RuleContext) -> None:
    """im2col: [N, C, H, W] -> [N, C*kh*kw, L]; col2im the reverse. Channels pass through with the kernel inner."""
    xs, out = list(ctx.spaces(ctx.arg(0))), list(ctx.out())
    kernel = ctx.arg(2) if ctx.node.target.startswith("aten.col2im") else ctx.arg(1)
    cols, image = (out, xs) if ctx.node.target.startswith("aten.im2col") else (xs, out)
    lead = len(image) - 3  # 0 unbatched, 1 batched
    ctx.same_all(image[:lead], cols[:lead])
    k = ctx.rel.new_space(int(kernel[0]) * int(kernel[1]), (ctx.node.name, -1, 0))
    ctx.freeze(k, "kernel positions of im2col/col2im")
    ctx.product(cols[lead], [image[lead], k])
    ctx.carry_all(xs[: lead + 1], out[: lead + 1])
    ctx.freeze_all(image[lead + 1 :] + cols[lead + 1 :], f"spatial dimension of {ctx.node.target}")

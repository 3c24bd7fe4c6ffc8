"""``secateurs demo``: prune a built-in model end to end and print what changed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="prune a built-in ResNet-style CNN and print before/after numbers")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of channels removed per group (default 0.5)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the latency measurement (default 1)")
    p.set_defaults(run=run)


def latency_ms(model: torch.nn.Module, x: torch.Tensor, repeats: int = 15) -> float:
    import torch

    from secateurs.timing import medians, time_ms

    with torch.inference_mode():
        return medians([lambda: time_ms(lambda: model(x))], repeats=repeats, warmup=3)[0]


def run(args: argparse.Namespace) -> int:
    import torch

    import secateurs as sc
    from secateurs.cli._common import set_threads
    from secateurs.testing.models import TinyResNet

    torch.manual_seed(0)
    set_threads(args)
    model = TinyResNet(num_classes=10, width=64).eval()
    x = torch.randn(8, 3, 64, 64)
    before = latency_ms(model, x)
    print(f"model: TinyResNet (built in), input {tuple(x.shape)}, {args.threads} CPU thread(s)")
    print(sc.analyze(model, x).summary().splitlines()[0])
    report = sc.prune(model, x, ratio=args.ratio)
    after = latency_ms(model, x)
    print(report.summary())
    print(f"latency (median of 15) {before:.1f} ms -> {after:.1f} ms: {before / after:.2f}x faster "
          f"(MAC ideal {1 / report.macs_ratio:.2f}x)")
    return 0

"""``sc.shear``: Sheared-LLaMA's targeted structured pruning (Xia et al., 2023).

Hard-concrete masks over layers, hidden dims, FFN neurons, key/value groups and query heads are learned together
with the weights on the model's own loss over ``data``, plus a Lagrangian ``lambda1 * (e - t) + lambda2 * (e - t)^2``
per structure, where ``e`` is the expected fraction kept (the masks' L0 norm) and ``t`` the target fraction; the
multipliers are trained by gradient *ascent*, so the constraint tightens until the expected shape is the target.
Then the model is pruned by the masks to exactly the target shape (``finish``) and checked against the masked model.
Under ``torch.distributed`` every rank trains on its own share of the data and the gradients (weights, masks,
multipliers) are averaged after each backward; checkpoints (``checkpoint_dir``) make a run resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.graph.analysis import fingerprint
from secateurs.graph.capture import model_inputs
from secateurs.recovery import distributed as D
from secateurs.recovery.distill import logits_of
from secateurs.sheared import state as S
from secateurs.sheared.config import ShearConfig, ShearResult
from secateurs.sheared.domains import Batches
from secateurs.sheared.finish import prune_by_masks
from secateurs.sheared.hooks import MaskValues, masked
from secateurs.sheared.importance import ranked_log_alpha, unit_scores
from secateurs.sheared.layout import Layout, find_layout, structures
from secateurs.sheared.masks import HardConcrete, Structure

LossFn = Callable[[Any, Any], torch.Tensor]


def lm_loss(output: Any, batch: Any) -> torch.Tensor:
    """Next-token cross-entropy of a causal LM on the batch's ``input_ids`` (``attention_mask`` 0 ignored)."""
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise InvalidArgumentError("the default shear loss reads batch['input_ids']; pass loss_fn(output, batch) for "
                                   "other batches")
    logits, ids = logits_of(output)[:, :-1], batch["input_ids"][:, 1:]
    targets = ids.masked_fill(batch["attention_mask"][:, 1:] == 0, -100) if "attention_mask" in batch else ids
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100)


class Lagrangian(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.lambda1 = nn.Parameter(torch.zeros(n))
        self.lambda2 = nn.Parameter(torch.zeros(n))

    def forward(self, masks: nn.ModuleDict, structs: list[Structure], progress: float) -> tuple[torch.Tensor, dict]:
        total = torch.zeros(())
        report = {}
        for i, s in enumerate(structs):
            mask = masks[s.name]
            assert isinstance(mask, HardConcrete)
            p = mask.keep_probability()
            expected = (p.sum(-1).mean() if s.per_layer else p.sum()) / s.full
            target = 1.0 + (s.target / s.full - 1.0) * progress
            gap = expected - target
            total = total + self.lambda1[i] * gap + self.lambda2[i] * gap * gap
            report[s.name] = {"expected": float(expected.detach()) * s.full, "target": target * s.full}
        return total, report


def _average_gradients(params: list[nn.Parameter]) -> None:
    if not D.is_distributed():
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads])
    dist.all_reduce(flat)
    flat /= D.world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].reshape(g.shape).to(g.dtype))
        offset += g.numel()


def _trainer(model: nn.Module, masks: nn.ModuleDict, lag: Lagrangian, cfg: ShearConfig) -> S.Trainer:
    optimizers: dict[str, torch.optim.Optimizer] = {
        # no momentum on the masks and plain gradient ascent on the multipliers: a short run then tracks the target
        # instead of overshooting it (all log_alpha move together under the Lagrangian)
        "masks": torch.optim.Adam(masks.parameters(), lr=cfg.mask_lr, betas=(0.0, 0.999)),
        "lagrangian": torch.optim.SGD(lag.parameters(), lr=cfg.lambda_lr, maximize=True),
    }
    if cfg.train_weights:
        optimizers["weights"] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                                  weight_decay=cfg.weight_decay)
    return S.Trainer(model, {"masks": masks, "lagrangian": lag}, optimizers)


def _step(model: nn.Module, trainer: S.Trainer, structs: list[Structure], values: MaskValues, batch: Any,
          loss_fn: LossFn, progress: float, cfg: ShearConfig, noise: torch.Generator,
          fixed: dict[str, torch.Tensor] | None = None) -> tuple[float, float, dict]:
    """One step: sampled masks, model loss plus the Lagrangian, every optimizer; with ``fixed`` (the annealing
    phase) those mask values, the model loss and the weights' optimizer only."""
    masks = trainer.modules["masks"]
    if fixed is None:
        values.current = {name: m.sample(noise) for name, m in masks.items()}  # type: ignore[operator]
    else:
        values.current = fixed
    args, kwargs = model_inputs(model, batch)
    loss = loss_fn(model(*args, **kwargs), batch)
    if fixed is None:
        penalty, report = trainer.modules["lagrangian"](masks, structs, progress)
        optimizers = trainer.optimizers
    else:
        penalty, report = torch.zeros(()), {s.name: {"expected": float(s.target), "target": float(s.target)}
                                            for s in structs}
        optimizers = {k: v for k, v in trainer.optimizers.items() if k == "weights"}
    (loss + penalty).backward()
    params = [p for opt in optimizers.values() for g in opt.param_groups for p in g["params"]]
    _average_gradients(params)
    if cfg.max_grad_norm is not None and "weights" in optimizers:
        torch.nn.utils.clip_grad_norm_(optimizers["weights"].param_groups[0]["params"], cfg.max_grad_norm)
    for opt in optimizers.values():
        opt.step()
    for opt in trainer.optimizers.values():
        opt.zero_grad(set_to_none=True)
    return float(loss.detach()), float(penalty.detach()), report


def _init_from_activations(model: nn.Module, layout: Layout, masks: nn.ModuleDict, structs: list[Structure],
                           data: Iterable[Any] | Mapping[str, Iterable[Any]], cfg: ShearConfig) -> None:
    draw = Batches(data, None, None, 1, cfg.seed)
    scores = unit_scores(model, layout, [draw.next()[1] for _ in range(cfg.init_batches)], structs)
    with torch.no_grad():
        for s in structs:
            start = ranked_log_alpha(scores[s.name], cfg.init_keep, cfg.init_spread)
            masks[s.name].log_alpha.copy_(start)  # type: ignore[operator]


def _anneal(cfg: ShearConfig) -> float:
    return cfg.anneal if cfg.train_weights else 0.0


def _final_values(masks: nn.ModuleDict, structs: list[Structure], hard: bool) -> dict[str, torch.Tensor]:
    return {s.name: masks[s.name].final(s.target, hard) for s in structs}  # type: ignore[operator]


def shear(model: nn.Module, data: Iterable[Any] | Mapping[str, Iterable[Any]], target: Mapping[str, int], *,
          example_inputs: Any = None, loss_fn: LossFn | None = None, config: ShearConfig | None = None,
          **options: Any) -> ShearResult:
    """Learn masks that drive ``model`` to the shape ``target`` (config fields, e.g. another model's
    ``{"num_hidden_layers": 24, "hidden_size": 2048, "intermediate_size": 5504, "num_attention_heads": 16,
    "num_key_value_heads": 16}``) on its own loss over ``data``, then prune it in place to exactly that shape.

    ``data``: batches shaped like the model's inputs (a dict with ``input_ids`` for the default next-token loss),
    or ``{domain: batches}``. ``loss_fn(output, batch)`` replaces the default loss. ``example_inputs`` (default:
    the first batch) are used to plan and check the pruning. Settings: :class:`ShearConfig` (``steps``, ``lr``,
    ``mask_lr``, ``lambda_lr``, ``warmup``, ``checkpoint_dir``, ``reference_loss``, ...), as keywords or ``config``.
    """
    cfg = ShearConfig.make(config, options)
    layout = find_layout(model)
    structs = structures(layout, target)
    batches = Batches(data, cfg.domain_weights, cfg.reference_loss, cfg.update_every, cfg.seed)
    torch.manual_seed(cfg.seed)
    masks = nn.ModuleDict({s.name: HardConcrete(s.mask_shape(layout.n_layers), cfg.init_keep) for s in structs})
    lag = Lagrangian(len(structs))
    trainer = _trainer(model, masks, lag, cfg)
    result_log: dict[str, Any] = {"history": [], "domains": []}
    noise = torch.Generator().manual_seed(cfg.seed * 1000 + D.rank())  # mask sampling; its state is checkpointed
    start = _resume(cfg, trainer, batches, noise, structs, target, result_log, model)
    if start == 0 and cfg.init_from == "activations":
        _init_from_activations(model, layout, masks, structs, data, cfg)
    first = example_inputs
    values = MaskValues()
    flags = [(m, m.training) for m in model.modules()]
    anneal_from = cfg.steps - round(_anneal(cfg) * cfg.steps)
    fixed: dict[str, torch.Tensor] | None = None
    model.train()
    try:
        with masked(layout, values):
            for step in range(start, cfg.steps):
                domain, batch = batches.next()
                first = batch if first is None else first
                progress = min(1.0, (step + 1) / max(cfg.warmup * cfg.steps, 1e-9)) if cfg.warmup > 0 else 1.0
                if step >= anneal_from and fixed is None:  # the structure is chosen: train on it (mask values 1)
                    fixed = _final_values(masks, structs, hard=True)
                loss, penalty, report = _step(model, trainer, structs, values, batch, loss_fn or lm_loss, progress,
                                              cfg, noise, fixed)
                weights = batches.record(domain, loss, step)
                if weights is not None:
                    result_log["domains"].append({"step": step + 1, **weights})
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    loss, penalty = D.mean_across_ranks([loss, penalty])  # every rank logs (and records) the same
                    result_log["history"].append({"step": step + 1, "loss": loss, "lagrangian": penalty, **report})
                if cfg.checkpoint_dir and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
                    _checkpoint(cfg, trainer, batches, noise, structs, target, result_log, step + 1, model)
    finally:
        for m, flag in flags:
            m.training = flag
    if first is None:
        first, _ = Batches(data, None, None, 1, 0).next()
    return _finish(model, layout, masks, structs, target, first, cfg, result_log, start)


def _finish(model: nn.Module, layout: Layout, masks: nn.ModuleDict, structs: list[Structure],
            target: Mapping[str, int], example_inputs: Any, cfg: ShearConfig, log: dict[str, Any],
            start: int) -> ShearResult:
    values = _final_values(masks, structs, hard=_anneal(cfg) > 0)
    record = {"target": dict(target), "steps": cfg.steps, "config": cfg.to_dict(),
              "expected": log["history"][-1] if log["history"] else None}
    with torch.no_grad():
        plan, error = prune_by_masks(model, layout, values, example_inputs, cfg.tolerance, record)
    final = {k: v.tolist() for k, v in values.items()}
    return ShearResult(plan, dict(target), final, log["history"], log["domains"], cfg.steps,
                       start or None, error)


def _checkpoint(cfg: ShearConfig, trainer: S.Trainer, batches: Batches, noise: torch.Generator,
                structs: list[Structure], target: Mapping[str, int], log: dict[str, Any], step: int,
                model: nn.Module) -> None:
    if D.is_main():
        assert cfg.checkpoint_dir is not None
        index = {"step": step, "target": dict(target), "structures": [s.name for s in structs],
                 "fingerprint": fingerprint(model),
                 "domains": batches.state(), "noise": noise.get_state().tolist(), "log": log}
        S.save(cfg.checkpoint_dir, trainer, index)
    D.barrier()


def _resume(cfg: ShearConfig, trainer: S.Trainer, batches: Batches, noise: torch.Generator, structs: list[Structure],
            target: Mapping[str, int], log: dict[str, Any], model: nn.Module) -> int:
    doc = S.read(cfg.checkpoint_dir)
    if doc is None:
        return 0
    if doc["target"] != dict(target) or doc["fingerprint"] != fingerprint(model):
        raise InvalidArgumentError(f"{cfg.checkpoint_dir} holds a shear run of another model or target "
                                   f"({doc['target']}); use a new checkpoint_dir or the same model and target")
    assert cfg.checkpoint_dir is not None
    S.restore_(cfg.checkpoint_dir, trainer, doc)
    batches.load_state(doc["domains"])
    noise.set_state(torch.tensor(doc["noise"], dtype=torch.uint8))
    log.update(doc["log"])
    return int(doc["step"])

"""Run by test_fsdp.py under ``torchrun --nproc_per_node=2`` (gloo, CPU). Not a test module.

FSDP2 ``fully_shard`` on a small MLP, trained by ``sc.recover`` on each rank's half of the batches, must end
with the same weights as one process training on the merged batches. Writes ``rank{N}.json`` with the
result, or the exception when FSDP cannot run here.
"""

import copy
import json
import sys
import traceback
from pathlib import Path

import torch
from recovery_data import mlp, vector_batches

import secateurs as sc
from secateurs.recovery import distributed as D


def plan_then_shard() -> dict:
    """The documented order: plan on rank 0, broadcast, apply on every rank, check, then shard and recover."""
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(1)
    model = mlp(width=16)
    x = torch.randn(4, 6)
    plan_json = sc.plan(model, x, ratio=0.5).to_json() if D.is_main() else None
    plan = sc.Plan.from_json(D.broadcast_object(plan_json))
    sc.apply(model, plan)
    D.check_same_plan(plan.to_json())
    fully_shard(model)
    result = sc.recover(model, D.shard(vector_batches(n=4, batch=4)), epochs=1, lr=0.1, progress=False)
    return {"pruned_width": model[0].out_features, "plan_then_shard_losses": result.losses}


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    assert sc.recovery.init_distributed(backend="gloo", timeout_s=60)
    report: dict = {"world_size": D.world_size()}
    try:
        from torch.distributed.fsdp import fully_shard

        torch.manual_seed(0)
        model = mlp()
        single = copy.deepcopy(model)
        data = vector_batches(n=8, batch=4)
        teacher = mlp()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        report["sharded_param_type"] = type(next(model.parameters())).__name__
        result = sc.recover(model, D.shard(data), teacher=teacher, loss=torch.nn.functional.cross_entropy, alpha=0.5,
                            epochs=2, lr=0.1, progress=False)
        merged = [(torch.cat([data[i][0], data[i + 1][0]]), torch.cat([data[i][1], data[i + 1][1]]))
                  for i in range(0, len(data), 2)]
        ref = sc.recover(single, merged, teacher=teacher, loss=torch.nn.functional.cross_entropy, alpha=0.5,
                         epochs=2, lr=0.1, distributed=False, progress=False)
        full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in model.state_dict().items()}
        report["max_diff"] = max((full[k] - v).abs().max().item() for k, v in single.state_dict().items())
        report["losses"], report["single_losses"] = result.losses, ref.losses
        try:
            sc.recover(model, D.shard(data), teacher=teacher, feature_pairs={"0": "0"}, epochs=1, progress=False)
        except sc.errors.InvalidArgumentError as exc:
            report["feature_pairs_error"] = str(exc)
        try:
            sc.plan(model, torch.randn(2, 6), ratio=0.5)
            report["sharded_plan"] = "planned"
        except Exception as exc:  # noqa: BLE001
            report["sharded_plan"] = f"{type(exc).__name__}: {exc}"[:600]
        report.update(plan_then_shard())
        report["ok"] = True
    except Exception as exc:  # noqa: BLE001 - recorded for the test and the docs
        report.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000], traceback=traceback.format_exc()[-4000:])
    (out / f"rank{D.rank()}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

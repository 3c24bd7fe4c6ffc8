"""Run by test_distributed.py under ``torchrun --nproc_per_node=2`` (gloo, CPU). Not a test module.

Writes ``rank{N}.json`` into the directory given as argv[1]; with argv[2] == "crash", rank 1 then dies
while rank 0 waits on it in a collective, which must end the job instead of hanging it.
"""

import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from recovery_data import image_batches, mlp, small_cnn, vector_batches

import secateurs as sc
from secateurs.errors import PlanError
from secateurs.recovery import distributed as D


def ddp_matches_single_process(grad_accum: int) -> float:
    """2 ranks x grad_accum micro-batches per step == one process on the merged batch."""
    torch.manual_seed(0)
    model = mlp()
    single = copy.deepcopy(model)
    per_step = 2 * grad_accum
    data = vector_batches(n=2 * per_step, batch=4)  # identical on every rank (seeded)
    sc.recover(model, D.shard(data), epochs=2, lr=0.1, grad_accum=grad_accum)  # rank r: batches r, r + 2, ...
    merged = [(torch.cat([x for x, _ in data[i:i + per_step]]), torch.cat([y for _, y in data[i:i + per_step]]))
              for i in range(0, len(data), per_step)]
    sc.recover(single, merged, epochs=2, lr=0.1, distributed=False)
    return max((a - b).abs().max().item() for a, b in zip(model.parameters(), single.parameters(), strict=True))


def plan_mismatch_message() -> str:
    try:
        D.check_same_plan(f"plan of rank {D.rank()}")
    except PlanError as exc:
        return str(exc)
    return "not raised"


def iterative_with_distillation(ckpt: Path) -> dict:
    data = image_batches(n=4)
    torch.manual_seed(0)
    teacher = small_cnn(16)
    sc.recover(teacher, D.shard(data), epochs=1, lr=0.05)
    student = small_cnn(8)

    def recover_fn(model, info):
        return sc.recover(model, D.shard(data), teacher=teacher, loss=F.cross_entropy, feature_pairs={"4": "4"},
                          epochs=1, lr=0.05, seed=info.seed)

    result = sc.iterative_prune(student, torch.randn(1, 1, 8, 8), [0.25, 0.5], recover_fn=recover_fn,
                                checkpoint_dir=ckpt)
    flat = torch.cat([t.detach().double().flatten() for t in student.state_dict().values()])
    sums: list = [None] * D.world_size()
    dist.all_gather_object(sums, flat.sum().item())
    return {"widths": [student[0].out_channels, student[3].out_channels], "state_sums": sums,
            "losses": [r.recovery.losses for r in result.steps]}


def main() -> None:
    out, mode = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "")
    torch.set_num_threads(1)
    assert sc.recovery.init_distributed(backend="gloo", timeout_s=30)
    rank = D.rank()
    report = {"world_size": D.world_size(), "ddp_max_diff": ddp_matches_single_process(grad_accum=2),
              "mismatch": plan_mismatch_message(), **iterative_with_distillation(out / "ckpt")}
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    if mode == "crash":
        if rank == 1:
            raise RuntimeError("simulated failure of rank 1")
        time.sleep(0.5)
        D.all_true(True)  # waits on the dead rank: must raise (timeout) or be stopped by the launcher
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

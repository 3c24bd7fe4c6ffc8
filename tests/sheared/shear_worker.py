"""Run by test_shear_distributed.py under ``torchrun --nproc_per_node=2`` (gloo, CPU). Not a test module.

Each rank shears the same tiny Llama on its own shard of the batches and writes ``rank{N}.json``: the plan's
digest, the final masks and a checksum of the pruned weights, which must agree across ranks.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

import secateurs as sc
from secateurs.recovery import distributed as D
from secateurs.testing.hf import tiny, token_batches


def main() -> None:
    out = Path(sys.argv[1])
    D.init_distributed("gloo")
    model = tiny("llama", layers=3).model
    data = sc.recovery.shard(token_batches(8, seed=5, seq_len=12))  # rank r: batches r, r + 2, ...
    target = {"num_hidden_layers": 2, "intermediate_size": 64, "num_key_value_heads": 1}
    result = sc.shear(model, data, target, steps=4, lr=1e-3, log_every=2, progress=False,
                      checkpoint_dir=str(out / "ckpt"), checkpoint_every=2)
    digest = hashlib.sha256(result.plan.to_json().encode()).hexdigest()
    total = float(sum(p.double().sum() for p in model.parameters()))
    report = {"rank": D.rank(), "world_size": D.world_size(), "plan": digest, "masks": result.final_masks,
              "weights": total, "losses": [h["loss"] for h in result.history],
              "layers": model.config.num_hidden_layers}
    (out / f"rank{D.rank()}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

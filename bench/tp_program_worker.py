"""Torch-Pruning on a torch.export program (``.pt2``), in its own process: what happens, as JSON on stdout.

Torch-Pruning traces autograd ``grad_fn`` nodes and maps them to ``nn.Conv2d``/``nn.Linear`` modules; a
program's layers are ATen calls on plain weight holders. This worker loads the program the way a user
would (``torch.export.load(path).module()``), runs ``BasePruner`` with the settings of its torchvision
example, and reports the exception, or what changed and whether the result still runs.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import torch


def attempt(model: torch.nn.Module, args: tuple, kwargs: dict, ratio: float) -> dict[str, object]:
    import torch_pruning as tp

    out: dict[str, object] = {}
    try:
        before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        t0 = time.perf_counter()
        pruner = tp.pruner.BasePruner(model, example_inputs=args[0], importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=ratio, global_pruning=False, iterative_steps=1)
        pruner.step()
        out["seconds"] = time.perf_counter() - t0
        after = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        changed = [k for k in before if before[k] != after.get(k)]
        out["tensors_changed"] = len(changed)
        try:
            model(*args, **kwargs)
            out["runs"] = True
        except Exception as exc:  # the pruned program no longer fits its own graph
            out["runs"] = False
            out["run_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        out["outcome"] = ("nothing pruned" if not changed else "pruned and runs" if out["runs"] else
                          "pruned tensors, program broken")
    except Exception as exc:
        out["outcome"] = "error"
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return out


def main() -> int:
    path, ratio = sys.argv[1], float(sys.argv[2])
    warnings.filterwarnings("ignore")
    ep = torch.export.load(path)  # the user's own loader (it may unpickle: Torch-Pruning offers nothing else)
    args, kwargs = ep.example_inputs
    out: dict[str, object] = {"tool": "torch_pruning", "module": attempt(ep.module(), args, kwargs, ratio)}
    # the same plain GraphModule secateurs prunes (ExportedProgram.module() refuses eval(), which it calls)
    plain = ep.module()
    out["graph_module"] = attempt(torch.fx.GraphModule(plain, plain.graph), args, kwargs, ratio)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Is this module a torch.export program (a GraphModule of ATen ops), whose sizes are graph literals?"""

from __future__ import annotations

import operator

import torch
import torch.fx

#: call_module targets ``ExportedProgram.module()`` adds around the graph (input guards), not layers
EXPORT_HELPERS = ("_guards_fn",)


def is_program_graph(model: torch.nn.Module) -> bool:
    """True for a GraphModule of ATen ops (an unlifted exported program), whose sizes are literals."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    for node in model.graph.nodes:
        if node.op == "call_method" or (node.op == "call_module" and node.target not in EXPORT_HELPERS):
            return False
        if node.op == "call_function" and not isinstance(node.target, torch._ops.OpOverload) \
                and node.target is not operator.getitem and not isinstance(node.target, torch._ops.HigherOrderOperator):
            return False
    return True

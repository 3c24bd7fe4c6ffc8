"""A restore point of a whole model: every module's class, attributes, parameters, buffers, submodules and hooks,
Hugging Face configs, and the node arguments of fx graphs. ``load`` takes one before it touches the model it was
given, and restores it on any failure, so that model is left exactly as it was passed in.

Tensors are restored by object: this works because ``load`` never writes into an existing tensor (apply slices
into new tensors and the saved weights are assigned as new tensors).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class RestorePoint:
    def __init__(self, model: nn.Module) -> None:
        self._modules: list[tuple[nn.Module, type, dict[str, Any], dict[str, Any]]] = []
        self._configs: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._graphs: list[tuple[torch.fx.GraphModule, list[tuple[Any, ...]]]] = []
        seen: set[int] = set()
        for _, module in model.named_modules(remove_duplicate=False):
            if id(module) in seen:
                continue
            seen.add(id(module))
            attrs = dict(module.__dict__)
            containers = {k: copy.copy(v) for k, v in attrs.items() if isinstance(v, (dict, set, list))}
            self._modules.append((module, type(module), attrs, containers))
            config = attrs.get("config")
            if config is not None and hasattr(config, "__dict__") and id(config) not in self._configs:
                self._configs[id(config)] = (config, copy.deepcopy(config.__dict__))
            if isinstance(module, torch.fx.GraphModule):
                nodes = [(n, n.target, n.args, dict(n.kwargs), dict(n.meta)) for n in module.graph.nodes]
                self._graphs.append((module, nodes))

    def restore(self) -> None:
        for module, cls, attrs, containers in self._modules:
            module.__class__ = cls
            module.__dict__.clear()
            module.__dict__.update(attrs)
            for key, saved in containers.items():  # refill the original containers: outside references see them
                original = attrs[key]
                if isinstance(original, (dict, set)):
                    original.clear()
                    original.update(saved)
                else:
                    original[:] = saved
        for config, state in self._configs.values():
            config.__dict__.clear()
            config.__dict__.update(state)
        for gm, nodes in self._graphs:
            for node, target, args, kwargs, meta in nodes:
                node.target, node.args, node.kwargs = target, args, kwargs
                node.meta.clear()
                node.meta.update(meta)
            gm.recompile()

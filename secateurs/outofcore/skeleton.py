"""A model without its weights: parameters on the meta device, buffers real; and loading/releasing parts of it.

``empty_weights()`` makes every parameter created inside it a meta tensor (no memory, no initialisation cost)
while buffers are built as usual, so the ones ``__init__`` computes and no checkpoint stores (RoPE ``inv_freq``)
hold their real values. The out-of-core schedule then puts real tensors into one part of the model at a time
(``load_``) and takes them out again (``release_``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.outofcore.checkpoint import Checkpoint


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Within the block, parameters registered by any module are moved to the meta device as they are created."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def _owner(model: nn.Module, fqn: str) -> tuple[nn.Module, str]:
    path, _, attr = fqn.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def load_(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Put ``tensors`` (state-dict names of ``model``) into the model as its parameters/persistent buffers; a
    parameter shared under several names (tied embeddings) is set once and stays shared."""
    shared: dict[int, nn.Parameter] = {}
    owners = _owners_by_id(model)
    for fqn, t in tensors.items():
        module, attr = _owner(model, fqn)
        old = module._parameters.get(attr)
        if old is None and attr in module._buffers:
            module._buffers[attr] = t
            continue
        if old is None:
            raise KeyError(fqn)
        new = shared.get(id(old))
        if new is None:
            new = shared[id(old)] = nn.Parameter(t, requires_grad=False)
        for m, a in owners.get(id(old), [(module, attr)]):
            m._parameters[a] = new


def release_(model: nn.Module, names: list[str]) -> None:
    """Put meta tensors of the same shapes back in place of the named parameters/buffers (frees their memory)."""
    owners = _owners_by_id(model)
    for fqn in names:
        module, attr = _owner(model, fqn)
        t = module._parameters.get(attr)
        if t is not None:
            meta = nn.Parameter(t.detach().to("meta"), requires_grad=False)
            for m, a in owners.get(id(t), [(module, attr)]):
                m._parameters[a] = meta
        elif module._buffers.get(attr) is not None:
            module._buffers[attr] = module._buffers[attr].to("meta")  # type: ignore[union-attr]


def _owners_by_id(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    out: dict[int, list[tuple[nn.Module, str]]] = {}
    for m in model.modules():
        for a, p in m._parameters.items():
            if p is not None:
                out.setdefault(id(p), []).append((m, a))
    return out


def build_skeleton(ckpt: Checkpoint) -> nn.Module:
    """The model class the directory's config names (as ``hf:DIR`` builds it), without weights: parameters on
    the meta device in the checkpoint's dtypes, buffers computed by ``__init__``; ``use_cache`` off, eval mode."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(ckpt.root, local_files_only=True)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        raise InvalidArgumentError(f"{ckpt.root}/config.json names architecture {arch!r}, which transformers "
                                   f"{transformers.__version__} does not have; out-of-core pruning needs the class")
    with empty_weights():
        model = cls(config)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    state = model.state_dict(keep_vars=True)
    missing = [k for k in stored_names(model) if k not in ckpt.tensors]
    if missing:
        raise InvalidArgumentError(f"the checkpoint {ckpt.root} lacks {len(missing)} tensors the model has, e.g. "
                                   f"{missing[:3]}; it does not match its config.json")
    for name, t in state.items():
        info = ckpt.tensors.get(name)
        if info is None:
            continue
        if tuple(t.shape) != info.shape:
            raise InvalidArgumentError(f"checkpoint tensor {name!r} has shape {list(info.shape)}, the model built "
                                       f"from config.json expects {list(t.shape)}")
        if t.dtype != info.dtype:
            _set_meta_dtype(model, name, info.dtype)
    return model.eval()


def stored_names(model: nn.Module) -> list[str]:
    """State-dict names of ``model`` with each shared tensor once (the first name, as checkpoints store it)."""
    seen: set[int] = set()
    out = []
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            out.append(name)
    return out


def _set_meta_dtype(model: nn.Module, fqn: str, dtype: torch.dtype) -> None:
    module, attr = _owner(model, fqn)
    t = module._parameters.get(attr)
    if t is not None:
        new = nn.Parameter(torch.empty(t.shape, dtype=dtype, device="meta"), requires_grad=t.requires_grad)
        for m, a in _owners_by_id(model).get(id(t), [(module, attr)]):
            m._parameters[a] = new
    elif module._buffers.get(attr) is not None:
        module._buffers[attr] = torch.empty(module._buffers[attr].shape, dtype=dtype, device="meta")  # type: ignore[union-attr]

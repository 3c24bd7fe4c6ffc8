"""Model specs: ``torchvision:NAME``, ``timm:NAME``, ``hf:DIR``, ``file:DIR``, ``file:PROGRAM.pt2`` or ``module.path:factory``.

Every optional library is imported only when its spec is used, with a clear install hint when missing.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from secateurs.errors import InvalidArgumentError, missing_dependency
from secateurs.io.inputs import InputSpec
from secateurs.io.manifest import file_source, read_manifest
from secateurs.registry import Registry

SPEC_HELP = "torchvision:NAME, timm:NAME, hf:LOCAL_DIR, file:SAVED_DIR, file:PROGRAM.pt2 or module.path:factory"


@dataclass
class ModelSource:
    """A resolved spec: ``build()`` makes the model; ``default_input`` is used when no input is given."""

    spec: str
    kind: str
    build: Callable[[], nn.Module]
    default_input: InputSpec | None = None
    saved_dir: Path | None = None  # for file: specs, the secateurs directory


#: ``prefix`` of ``prefix:rest`` -> ``resolver(rest, trust_code)``; ``file:`` lives in ``io/saved_specs.py`` (it reads
#: secateurs directories, which record the spec of their unpruned model in turn)
SCHEMES: Registry[Callable[[str, bool], ModelSource]] = Registry("model spec scheme", modules=("secateurs.io.saved_specs",))


def _import_optional(module: str, package: str, extra: str, feature: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_dependency(package, extra, feature) from None


def _unknown(kind: str, name: str, known: list[str]) -> InvalidArgumentError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return InvalidArgumentError(f"unknown {kind} model {name!r}{hint}")


@SCHEMES.register("torchvision")
def _torchvision(name: str, trust_code: bool = False) -> ModelSource:
    tv = _import_optional("torchvision.models", "torchvision", "vision", f"model spec 'torchvision:{name}'")
    known = tv.list_models()
    if name not in known:
        raise _unknown("torchvision", name, known)
    return ModelSource(f"torchvision:{name}", "torchvision", lambda: tv.get_model(name, weights=None).eval(),
                       InputSpec(shape=(1, 3, 224, 224)))


@SCHEMES.register("timm")
def _timm(name: str, trust_code: bool = False) -> ModelSource:
    timm = _import_optional("timm", "timm", "vision", f"model spec 'timm:{name}'")
    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models())
    size = timm.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
    return ModelSource(f"timm:{name}", "timm", lambda: timm.create_model(name, pretrained=False).eval(),
                       InputSpec(shape=(1, *[int(s) for s in size])))


@SCHEMES.register("hf")
def _hf(path: str, trust_code: bool = False) -> ModelSource:
    root = Path(path).expanduser().absolute()
    if not (root / "config.json").is_file():
        raise InvalidArgumentError(f"hf:{path} is not a local Hugging Face model directory (no config.json); "
                                   "secateurs works offline: download the model first and pass its directory")
    transformers = _import_optional("transformers", "transformers", "hf", f"model spec 'hf:{path}'")
    config = transformers.AutoConfig.from_pretrained(root, local_files_only=True)

    def build() -> nn.Module:
        arch = (getattr(config, "architectures", None) or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        cls = cls or transformers.AutoModel
        has_weights = any(root.glob("*.safetensors")) or any(root.glob("*.bin"))
        if has_weights:
            model = cls.from_pretrained(root, local_files_only=True, use_safetensors=any(root.glob("*.safetensors")) or None)
        else:
            model = cls.from_config(config) if hasattr(cls, "from_config") else cls._from_config(config)
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        return model.eval()

    vocab = int(getattr(config, "vocab_size", 100) or 100)
    return ModelSource(f"hf:{root}", "hf", build, InputSpec(seq_len=128, vocab_size=vocab))


MAX_CHAIN = 32  # saved directories built from saved directories, deeper than any real use


def source_chain(spec: str) -> list[Path]:
    """The ``.pt2`` files and saved directories building ``spec`` reads: a saved directory's manifest names the
    spec of its unpruned model, which may be another ``file:`` source. ``FileFormatError`` on a loop."""
    from secateurs.errors import FileFormatError

    chain: list[Path] = []
    seen: set[Path] = set()
    current: Any = spec
    while (path := file_source(current)) is not None:
        key = path.resolve()
        if key in seen:
            names = " -> ".join(str(p) for p in [*chain, path])
            raise FileFormatError(f"the model sources form a loop ({names}): a saved directory cannot be built from "
                                  "itself; re-save it with the original model spec")
        if len(chain) >= MAX_CHAIN:
            raise FileFormatError(f"the model sources of {spec!r} chain more than {MAX_CHAIN} saved directories")
        seen.add(key)
        chain.append(path)
        if path.suffix == ".pt2" or not path.is_dir():
            break
        try:
            current = read_manifest(path).get("model_spec")
        except FileFormatError:
            break  # loading it reports the problem
    return chain


def check_not_source(output: str | os.PathLike[str], spec: str | None) -> None:
    """Refuse writing ``output`` when it is, or holds, a source the model spec reads (it would delete it)."""
    if not spec:
        return
    out = Path(output).expanduser().absolute().resolve()
    for path in source_chain(spec):
        source = path.resolve()
        if source == out or out in source.parents:
            raise InvalidArgumentError(f"output directory {str(output)!r} {'is' if source == out else 'holds'} the "
                                       f"model source {str(path)!r} (from {spec!r}); writing it would replace what "
                                       "the saved model is rebuilt from. Choose another output directory")


def _factory(module: str, attr: str, spec: str) -> ModelSource:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise InvalidArgumentError(f"unknown model spec {spec!r}: cannot import module {module!r} ({exc}); "
                                   f"use {SPEC_HELP}") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise InvalidArgumentError(f"model spec {spec!r}: {module!r} has no callable {attr!r}")
    _check_no_arguments(fn, spec)

    def build() -> nn.Module:
        model = fn()
        if not isinstance(model, nn.Module):
            raise InvalidArgumentError(f"model spec {spec!r}: factory returned {type(model).__name__}, not an nn.Module")
        return model.eval()

    shape = getattr(fn, "example_input_shape", None)
    return ModelSource(spec, "factory", build, InputSpec(shape=tuple(shape)) if shape else None)


def _check_no_arguments(fn: Any, spec: str) -> None:
    """A factory is called with no arguments: one that requires some is refused before it is called."""
    import inspect

    try:
        inspect.signature(fn).bind()
    except TypeError as exc:
        raise InvalidArgumentError(f"model spec {spec!r} names a callable that needs arguments ({exc}); name a "
                                   "factory that builds the model with no arguments") from None
    except ValueError:
        pass  # no signature (some builtins): called as is


def imports_code(spec: str) -> bool:
    """True for ``module.path:factory`` specs (arbitrary Python), False for the named model zoos and saved dirs."""
    return ":" in spec and spec.partition(":")[0] not in SCHEMES


def resolve(spec: str, *, trust_code: bool = False) -> ModelSource:
    """Turn a spec string into a :class:`ModelSource`; raises ``InvalidArgumentError`` with the accepted forms.

    ``trust_code`` is passed on to :func:`secateurs.load` for ``file:`` specs whose manifest names a
    ``module.path:factory`` (a spec typed by the user is trusted by the caller's choice to resolve it).
    """
    if not isinstance(spec, str) or ":" not in spec:
        if isinstance(spec, str) and os.path.isfile(os.path.join(spec, "manifest.json")):
            return SCHEMES.get("file")(spec, trust_code)
        raise InvalidArgumentError(f"unknown model spec {spec!r}: use {SPEC_HELP}")
    prefix, _, rest = spec.partition(":")
    if not rest:
        raise InvalidArgumentError(f"model spec {spec!r} names nothing after {prefix + ':'!r}: use {SPEC_HELP}")
    scheme = SCHEMES.find(prefix)
    if scheme is not None:
        return scheme(rest, trust_code)
    if all(part.isidentifier() for part in prefix.split(".")) and rest.isidentifier():
        return _factory(prefix, rest, spec)
    raise InvalidArgumentError(f"unknown model spec {spec!r}: use {SPEC_HELP}")

"""The pickle-free, code-free gate for ``.pt2`` archives: a strict check of torch's archive layout.

``torch.export.load`` can run code from a file in several ways: pickled weights or constants
(``use_pickle``, ``custom_obj_``/``opaque_obj_`` constants, legacy ``data/weights/model.pt``), a fallback to
the pre-2.7 zip layout whose loader ends in ``torch.load(weights_only=False)``, AOTInductor shared libraries
(``data/aotinductor/``), symbolic-shape expressions handed to ``sympy.sympify`` (which evaluates Python), and
graph targets resolved by ``getattr`` from the ``torch`` module (``torch.os.system``). :func:`check_archive_bytes`
accepts only the current layout, member by member, and reads each member the way the loader will:

* one root folder; members stored uncompressed, each name once, the same list as torch's own zip reader sees;
* ``archive_format`` = ``pt2``, ``archive_version`` = torch's, ``byteorder`` and ``.data/`` bookkeeping;
* one program, ``models/model.json``: every node target an ATen/higher-order op or a symbolic-int operator,
  every symbolic expression in sympy's ``srepr`` form over an allowlist of names;
* ``data/weights|constants/model_*_config.json``: no entry pickled, every entry a raw tensor file that exists;
  the raw ``weight_*``/``tensor_*`` files they name (bytes only, never unpickled);
* ``data/sample_inputs/model.pt``: loads with ``torch.load(weights_only=True)``;
* ``extra/NAME``: UTF-8 text.

Anything else (the legacy root ``version``/``serialized_*`` files, AOTInductor, ExecuTorch, MTIA, unknown
members) is refused. The caller loads the very bytes that were checked, with the current-format loader only.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from secateurs.errors import FileFormatError

MODEL = "model"  # torch.export.save writes one program under this name
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_FIXED = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_MEMBER = re.compile(
    rf"(?P<model>models/(?P<m>{_NAME})\.json)|(?P<inputs>data/sample_inputs/(?P<i>{_NAME})\.pt)"
    rf"|(?P<wconf>data/weights/(?P<w>{_NAME})_weights_config\.json)"
    rf"|(?P<cconf>data/constants/(?P<c>{_NAME})_constants_config\.json)"
    r"|(?P<weight>data/weights/weight_[A-Za-z0-9_]+)|(?P<const>data/constants/tensor_[A-Za-z0-9_]+)"
    rf"|(?P<extra>extra/{_NAME})"
)
_MAX_JSON = 512 << 20  # a program's JSON larger than this is not one torch wrote for a model we can prune

# sympy names that srepr writes for the expressions export records (plus torch's own sympy functions)
_EXPR_NAMES = frozenset((
    "Symbol", "Dummy", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod", "Abs",
    "floor", "ceiling", "sign", "Piecewise", "ExprCondPair", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality",
    "Unequality", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not",
    "Xor", "BooleanTrue", "BooleanFalse", "true", "false", "oo", "zoo", "nan", "Infinity",
    "NegativeInfinity", "One", "Zero", "NegativeOne", "Half", "IntInfinity", "NegativeIntInfinity",
    "int_oo", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
    "ToFloat", "Identity", "OpaqueUnaryFn_sqrt", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or",
    "positive", "negative", "nonnegative", "nonpositive", "nonzero", "integer", "real", "finite",
    "infinite", "commutative", "even", "odd", "precision", "evaluate", "True", "False",
))
_EXPR_TOKEN = re.compile(r"\s+|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|'[A-Za-z0-9_.+\-]*'|\d+(?:\.\d*)?(?:e[+-]?\d+)?|[(),=\-]")


def _refuse(where: Any, why: str) -> FileFormatError:
    return FileFormatError(f"{where} is refused: {why}. secateurs never unpickles or runs code from a file it loads: "
                           "only torch.export archives in the current layout with raw tensor weights are read; re-save the program with torch.export.save from a program with plain tensor weights, "
                           "or prune the original nn.Module instead")


def _allowed_python_targets() -> frozenset[str]:
    """Serialized names of the Python callables export graphs may call: symbolic-int operators and getitem."""
    try:
        from torch._export.serde.serialize import _SYM_OPS

        ops = {f"{op.__module__}.{op.__name__}" for op in _SYM_OPS}
    except (ImportError, AttributeError):
        ops = {f"_operator.{n}" for n in ("add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "neg", "pos", "eq",
                                          "ne", "lt", "le", "gt", "ge", "and_", "or_", "lshift", "rshift")}
        ops |= {"torch.sym_float", "torch.sym_int", "torch.sym_max", "torch.sym_min", "torch.sym_not", "torch.sym_ite",
                "torch._sym_sqrt", "math.trunc"}
    return frozenset(ops | {"_operator.getitem"})


def _is_registered_op(target: str) -> bool:
    """``torch.ops.NS.NAME.OVERLOAD`` naming an operator registered with the dispatcher, or
    ``torch.ops.higher_order.NAME`` naming a registered higher-order operator (names, not attribute lookups)."""
    import torch

    parts = target.split(".")
    if parts[:2] != ["torch", "ops"]:
        return False
    if len(parts) == 4 and parts[2] == "higher_order":
        return parts[3] in getattr(torch._ops, "_higher_order_ops", {})
    if len(parts) != 5:
        return False
    ns, name, overload = parts[2:]
    qualified = f"{ns}::{name}{'' if overload == 'default' else '.' + overload}"
    if qualified not in _OP_NAMES:  # refreshed on a miss: libraries register operators when imported
        _OP_NAMES.clear()
        _OP_NAMES.update(torch._C._dispatch_get_all_op_names())
    return qualified in _OP_NAMES


_OP_NAMES: set[str] = set()


def check_target(target: str, where: Any) -> None:
    """A node target must be a registered op or a symbolic-int operator: nothing else is resolved."""
    if target in _allowed_python_targets() or _is_registered_op(target):
        return
    raise _refuse(where, f"graph target {target[:120]!r} is not a registered ATen/higher-order op or a "
                         "symbolic-size operator")


def check_expression(text: str, where: Any) -> None:
    """A symbolic expression must be sympy ``srepr`` text over known names (``sympify`` evaluates Python)."""
    pos = 0
    while pos < len(text):
        match = _EXPR_TOKEN.match(text, pos)
        if match is None or (match.group("name") and match.group("name") not in _EXPR_NAMES):
            bad = match.group("name") if match is not None else text[pos:pos + 20]
            raise _refuse(where, f"symbolic expression {text[:120]!r} contains {bad!r}, which is not part of a "
                                 "sympy size expression")
        pos = match.end()


def _walk(doc: Any) -> Iterator[tuple[str, Any]]:
    """(key, value) of every mapping entry in a JSON document, without recursion (documents may be deep)."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _json(z: zipfile.ZipFile, member: str, where: str) -> Any:
    if z.getinfo(member).file_size > _MAX_JSON:
        raise _refuse(where, f"{member} is larger than {_MAX_JSON >> 20} MiB")
    try:
        return json.loads(z.read(member))
    except (ValueError, RecursionError) as exc:
        raise _refuse(where, f"{member} is not valid JSON ({type(exc).__name__})") from None


def _payload_entries(doc: Any, member: str, where: str) -> dict[str, dict[str, Any]]:
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise _refuse(where, f"{member} is not a payload config ({{'config': {{name: entry}}}})")
    return config


def _check_payloads(z: zipfile.ZipFile, prefix: str, rel: set[str], where: str) -> set[str]:
    """Check the weights and constants configs; returns the raw member names they reference."""
    referenced: set[str] = set()
    for kind, folder, file_prefix in (("weights", "data/weights/", "weight_"), ("constants", "data/constants/", "tensor_")):
        member = f"{folder}{MODEL}_{kind}_config.json"
        if member not in rel:
            raise _refuse(where, f"{member} is missing")
        for fqn, entry in _payload_entries(_json(z, prefix + member, where), member, where).items():
            path_name = entry.get("path_name")
            if entry.get("use_pickle") is not False:
                raise _refuse(where, f"{kind[:-1]} {fqn!r} is stored pickled ({member})")
            if not isinstance(path_name, str) or not re.fullmatch(rf"{file_prefix}[A-Za-z0-9_]+", path_name):
                raise _refuse(where, f"{kind[:-1]} {fqn!r} is a pickled or custom object ({member}: {path_name!r})")
            if folder + path_name not in rel or not isinstance(entry.get("tensor_meta"), dict):
                raise _refuse(where, f"{kind[:-1]} {fqn!r} names {folder}{path_name}, which the archive lacks")
            size = z.getinfo(prefix + folder + path_name).file_size
            problem = _raw_size_problem(entry["tensor_meta"], size)
            if problem:
                raise _refuse(where, f"{kind[:-1]} {fqn!r}: {folder}{path_name} {problem}")
            referenced.add(folder + path_name)
    return referenced


def _raw_size_problem(meta: dict[str, Any], size: int) -> str | None:
    """Why a raw tensor file of ``size`` bytes cannot hold the tensor ``meta`` describes (None when it can): a
    dense tensor stored from offset 0 fills its file exactly; a view needs at least the bytes it reaches."""
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    try:
        dtype = _SERIALIZE_TO_TORCH_DTYPE[meta["dtype"]]
        sizes = [int(s["as_int"]) for s in meta["sizes"]]
        strides = [int(s["as_int"]) for s in meta["strides"]]
        offset = int(meta["storage_offset"]["as_int"])
    except (KeyError, TypeError, ValueError):
        return "has a tensor description without plain integer sizes, strides and offset"
    item = dtype.itemsize
    if any(s == 0 for s in sizes):
        return None
    reach = offset + 1 + sum((s - 1) * st for s, st in zip(sizes, strides, strict=False))
    contiguous = offset == 0 and strides == [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
    if contiguous and size != reach * item:
        return f"holds {size} bytes, not the {reach * item} of a {dtype} tensor of shape {sizes}"
    if size < reach * item:
        return f"holds {size} bytes, fewer than the {reach * item} its view reaches"
    return None


def _check_sample_inputs(data: bytes, member: str, where: str) -> None:
    import torch

    try:
        loaded = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch.load raises many types for a file it refuses
        raise _refuse(where, f"{member} needs weights_only=False: {type(exc).__name__}") from None
    if not isinstance(loaded, (tuple, dict)):
        raise _refuse(where, f"{member} holds a {type(loaded).__name__}, not the (args, kwargs) of a program")


def _members(z: zipfile.ZipFile, where: str) -> tuple[str, set[str]]:
    """(root prefix, names relative to it); refuses compression, encryption, duplicates and odd names."""
    infos = z.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise _refuse(where, "the zip file lists a member twice")
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or not all("/" in n for n in names):
        raise _refuse(where, f"members must share one root folder, found {sorted(roots)[:5]}")
    prefix = names[0].split("/", 1)[0] + "/"
    rel = set()
    for info in infos:
        name = info.filename[len(prefix):]
        if info.flag_bits & 0x1 or info.compress_type != zipfile.ZIP_STORED:
            raise _refuse(where, f"member {info.filename!r} is compressed or encrypted (torch stores members as is)")
        if "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
            raise _refuse(where, f"member name {info.filename!r} is not a plain relative path")
        rel.add(name)
    return prefix, rel


def _check_torch_reader(data: bytes, rel: set[str], where: str) -> None:
    """torch's own zip reader must see exactly the members checked here."""
    import torch

    try:
        records = set(torch._C.PyTorchFileReader(io.BytesIO(data)).get_all_records())
    except Exception as exc:  # the C++ reader raises RuntimeError and others
        raise _refuse(where, f"torch cannot read the zip ({type(exc).__name__})") from None
    if records != rel:
        raise _refuse(where, "torch's zip reader and Python's disagree on the members")


def check_archive_bytes(data: bytes, where: str | Path) -> None:
    """Raise ``FileFormatError`` unless ``data`` is a current-layout torch.export archive that loads without
    unpickling or running code (see the module docstring for every rule)."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileFormatError(f"{where} is not a torch.export archive (.pt2 is a zip file): {exc}") from None
    with z:
        names = z.namelist()
        if not any(n.rpartition("/")[2] == "archive_format" for n in names) or not any("models/" in n for n in names):
            raise FileFormatError(f"{where} is a zip file but not a torch.export program (no archive_format or "
                                  "models/*.json): save programs with torch.export.save")
        prefix, rel = _members(z, str(where))
        _check_fixed(z, prefix, rel, str(where))
        raw: set[str] = set()
        for name in sorted(rel - _FIXED):
            match = _MEMBER.fullmatch(name)
            if match is None:
                raise _refuse(where, f"member {name!r} is outside the torch.export archive layout (legacy pickled "
                                     "files, AOTInductor/ExecuTorch code or unknown content)")
            model = match.group("m") or match.group("i") or match.group("w") or match.group("c")
            if model is not None and model != MODEL:
                raise _refuse(where, f"member {name!r} belongs to a program named {model!r}; only one program, "
                                     f"{MODEL!r}, is loaded")
            if match.group("weight") or match.group("const"):
                raw.add(name)
            elif match.group("extra"):
                _utf8(z, prefix + name, str(where))
        for required in (f"models/{MODEL}.json", f"data/sample_inputs/{MODEL}.pt"):
            if required not in rel:
                raise _refuse(where, f"{required} is missing")
        unreferenced = raw - _check_payloads(z, prefix, rel, str(where))
        if unreferenced:
            raise _refuse(where, f"members {sorted(unreferenced)[:3]} are named by no weights or constants config")
        _check_program_json(_json(z, f"{prefix}models/{MODEL}.json", str(where)), str(where))
        _check_sample_inputs(z.read(f"{prefix}data/sample_inputs/{MODEL}.pt"), f"data/sample_inputs/{MODEL}.pt", str(where))
    _check_torch_reader(data, rel, str(where))


def _utf8(z: zipfile.ZipFile, member: str, where: str) -> str:
    try:
        return z.read(member).decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(where, f"{member} is not UTF-8 text") from None


def _check_fixed(z: zipfile.ZipFile, prefix: str, rel: set[str], where: str) -> None:
    try:
        from torch.export.pt2_archive.constants import ARCHIVE_FORMAT_VALUE, ARCHIVE_VERSION_VALUE
    except ImportError:
        ARCHIVE_FORMAT_VALUE, ARCHIVE_VERSION_VALUE = "pt2", "0"  # noqa: N806
    for member, want in (("archive_format", ARCHIVE_FORMAT_VALUE), ("archive_version", ARCHIVE_VERSION_VALUE)):
        if member not in rel or z.getinfo(prefix + member).file_size > 64 or _utf8(z, prefix + member, where) != want:
            raise _refuse(where, f"{member} is missing or is not {want!r} (another archive format or version)")
    for member in _FIXED & rel:
        if z.getinfo(prefix + member).file_size > 1024:
            raise _refuse(where, f"{member} is larger than a torch archive writes it")


def _check_program_json(doc: Any, where: str) -> None:
    if not isinstance(doc, dict):
        raise _refuse(where, f"models/{MODEL}.json is not a JSON object")
    for key, value in _walk(doc):
        if key in ("target", "as_operator") and isinstance(value, str):
            check_target(value, where)
        elif key == "expr_str":
            if not isinstance(value, str):
                raise _refuse(where, "a symbolic expression is not a string")
            check_expression(value, where)


def check_graph_targets(gm: Any, where: Any) -> None:
    """After loading: every ``call_function`` of the graph (and its subgraphs) calls an op or a symbolic-int operator."""
    import operator

    import torch

    try:
        from torch._export.serde.serialize import _SYM_OPS

        python_ops = set(_SYM_OPS)
    except (ImportError, AttributeError):
        python_ops = set()
    python_ops.add(operator.getitem)
    op_types = (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)
    for module in gm.modules():
        graph = getattr(module, "graph", None)
        for node in getattr(graph, "nodes", ()):
            if node.op == "call_function" and not isinstance(node.target, op_types) and node.target not in python_ops:
                raise _refuse(where, f"graph node {node.name!r} calls {node.target!r}, not an op")
            if node.op == "call_method":
                raise _refuse(where, f"graph node {node.name!r} calls the method {node.target!r}")

"""The Registry type itself: decorator registration, duplicates, unknown names, MRO lookup, lazy loading."""

from __future__ import annotations

import pytest
from torch import nn

from secateurs.errors import (
    DuplicateRegistrationError,
    InvalidArgumentError,
    SecateursError,
    UnknownNameError,
)
from secateurs.registry import Registry, key_name


def test_register_get_and_list():
    reg: Registry[int] = Registry("test number")
    reg.register("one", "uno")(1)
    assert reg.get("one") == 1 and reg.get("uno") == 1
    assert reg.names() == ["one", "uno"] and len(reg) == 2 and "one" in reg
    assert reg.find("two") is None


def test_duplicates_raise_one_error_type_and_same_value_is_idempotent():
    reg: Registry[object] = Registry("test thing")
    value = object()
    reg.add("x", value)
    reg.add("x", value)  # a module imported twice registers the same object again
    with pytest.raises(DuplicateRegistrationError, match="registered twice") as info:
        reg.add("x", object())
    assert isinstance(info.value, SecateursError)


def test_unknown_name_lists_the_known_ones():
    reg: Registry[int] = Registry("colour")
    reg.add("red", 1)
    reg.add("blue", 2)
    with pytest.raises(UnknownNameError, match="unknown colour 'green'; use one of 'blue', 'red'") as info:
        reg.get("green")
    assert isinstance(info.value, InvalidArgumentError)


def test_type_keys_follow_the_mro_and_qualified_names():
    reg: Registry[str] = Registry("test layout")
    reg.add(nn.Module, "any module")
    reg.add(key_name(nn.Conv2d), "conv by name")
    assert reg.for_type(nn.Conv2d) == "conv by name"
    assert reg.for_type(nn.Linear) == "any module"
    assert reg.for_type(int) is None


def test_replaced_restores_the_entry():
    reg: Registry[int] = Registry("test replaced")
    reg.add("a", 1)
    with reg.replaced("a", 2), reg.replaced("b", 3):
        assert reg.get("a") == 2 and reg.get("b") == 3
    assert reg.get("a") == 1 and reg.find("b") is None


def test_modules_load_on_first_lookup_only():
    reg: Registry[int] = Registry("test lazy", modules=("secateurs.tests_fake_module_that_does_not_exist",))
    assert reg in Registry.instances()
    with pytest.raises(ModuleNotFoundError):
        reg.names()

"""The lazy-export helper shared by the subpackages' ``__init__`` modules (nres._lazy)."""

import importlib
import types

import pytest

from nres._lazy import lazy_exports


def _fake_package():
    """A throw-away package namespace exporting names of real nres modules."""
    ns = {"__name__": "nres", "OWN": 1}
    getattr_, dir_ = lazy_exports("nres", {"Flag": "flags", "window_origin": "window"}, ns)
    return ns, getattr_, dir_


def test_name_loads_from_its_module_and_is_cached():
    ns, getattr_, _ = _fake_package()
    from nres.flags import Flag

    assert "Flag" not in ns
    assert getattr_("Flag") is Flag
    assert ns["Flag"] is Flag  # later look-ups bypass __getattr__


def test_unknown_name_is_an_attribute_error_naming_package_and_name():
    _, getattr_, _ = _fake_package()
    with pytest.raises(AttributeError, match=r"'nres' has no attribute 'nope'"):
        getattr_("nope")
    # hasattr/getattr with a default must keep working
    mod = types.ModuleType("fake")
    mod.__getattr__ = getattr_
    assert getattr(mod, "nope", 7) == 7


def test_dir_lists_own_and_lazy_names():
    ns, _, dir_ = _fake_package()
    assert dir_() == sorted({"__name__", "OWN", "Flag", "window_origin"})
    ns["LATER"] = 2
    assert "LATER" in dir_()


@pytest.mark.parametrize("package", ["nres.instrument", "nres.io", "nres.sim", "nres.pipeline"])
def test_every_exported_name_of_a_subpackage_resolves(package):
    pkg = importlib.import_module(package)
    assert pkg.__all__ == sorted(pkg._EXPORTS)
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        module = importlib.import_module(f"{package}.{pkg._EXPORTS[name]}")
        assert obj is getattr(module, name), name
        assert name in dir(pkg)

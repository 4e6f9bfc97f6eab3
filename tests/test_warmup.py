"""nres.warmup() compiles every numba kernel that the package's wrappers call."""

import importlib
import pkgutil
import re
from pathlib import Path

import numba

import nres


def _kernel_modules():
    for info in pkgutil.walk_packages(nres.__path__, prefix="nres."):
        if info.name.rsplit(".", 1)[-1].endswith("_kernels"):
            yield importlib.import_module(info.name)


def _wrapper_source() -> str:
    root = Path(nres.__file__).parent
    return "\n".join(p.read_text() for p in root.rglob("*.py") if not p.stem.endswith("_kernels"))


def test_warmup_compiles_every_entry_kernel():
    timings = nres.warmup()
    assert set(timings) >= {"calib", "extract", "wavecal", "rv", "sim"}
    wrappers = _wrapper_source()
    imported = re.findall(r"from \.*[\w.]*_kernels import \(?([^)\n]*(?:\n[^)]*)?)\)?", wrappers)
    entries, uncompiled = 0, []
    for mod in _kernel_modules():
        for name, obj in vars(mod).items():
            if not isinstance(obj, numba.core.registry.CPUDispatcher) or obj.__module__ != mod.__name__:
                continue
            # kernels called only from other kernels are compiled inside their callers (and cached
            # with them), so only those a wrapper module calls are entry points
            called = re.search(rf"_kernels\.{re.escape(name)}\b", wrappers) or any(
                re.search(rf"\b{re.escape(name)}\b", names) for names in imported
            )
            if not called:
                continue
            entries += 1
            if not obj.signatures:
                uncompiled.append(f"{mod.__name__}.{name}")
    assert entries > 10  # the scan found the kernels at all
    assert not uncompiled, f"kernels not compiled by nres.warmup(): {uncompiled}"

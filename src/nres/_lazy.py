"""Lazy exports for packages: ``import nres.<pkg>`` stays cheap and a public name loads its module
on first use (PEP 562 module ``__getattr__``/``__dir__``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Build a package's ``__getattr__`` and ``__dir__`` for names defined in its submodules.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to str
        Public name -> submodule (relative to ``package``) that defines it.
    namespace : dict
        The package's ``globals()``: a loaded name is stored there, so later look-ups bypass
        ``__getattr__``, and ``__dir__`` lists the package's own names too.

    Returns
    -------
    (__getattr__, __dir__)
        Assign both at module level: ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS,
        globals())``.
    """

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__

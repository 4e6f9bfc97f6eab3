"""Input and output of NRES files: raw composite data products in (:func:`read_raw`), and readers
of the original IDL pipeline's products (:func:`read_trace_seeds`) so archived output can be
compared.

Names load lazily from their modules so that ``import nres.io`` stays cheap.
"""

from __future__ import annotations

import importlib

#: public name -> module (relative to this package)
_EXPORTS = {
    "read_raw": "raw",
    "RawFrame": "raw",
    "RawInfo": "rawinfo",
    "TargetInfo": "rawinfo",
    "parse_section": "sections",
    "read_raw_info": "headers",
    "read_idl_trace": "idl_trace_fits",
    "write_idl_trace": "idl_trace_fits",
    "read_trace_seeds": "idl_traces",
    "read_trace_samples": "idl_traces",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    msg = f"module 'nres.io' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

"""Input and output of NRES files: raw composite data products in (:func:`read_raw`), and readers
of the original IDL pipeline's products (:func:`read_trace_seeds`) so archived output can be
compared.

Names load lazily from their modules so that ``import nres.io`` stays cheap.
"""

from __future__ import annotations

from .._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

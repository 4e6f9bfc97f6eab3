"""nres.extract: order tracing and identification (profiles and extraction follow)."""

from .background import fit_scattered_light, inter_order_mask, subtract_scattered_light
from .blaze import blaze_subtracted, flat_correct, measure_blaze, with_blaze
from .extraction import extract, trace_model
from .identify import identify_traces, lit_fibers
from .idl_extract import IDLExtraction, extract_idl
from .neighbours import complete_traces
from .profiles import Profiles, measure_profiles
from .trace import find_traces, refine_traces

__all__ = ["find_traces", "refine_traces", "identify_traces", "lit_fibers", "Profiles"]
__all__ += ["measure_profiles", "extract", "fit_scattered_light", "subtract_scattered_light"]
__all__ += ["inter_order_mask", "trace_model", "complete_traces"]
__all__ += ["extract_idl", "IDLExtraction"]
__all__ += ["measure_blaze", "flat_correct", "with_blaze", "blaze_subtracted"]

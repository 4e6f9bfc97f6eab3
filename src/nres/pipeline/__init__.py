"""nres.pipeline: the database, the batch runner, products and the ``nres`` command line.

Public names load lazily (``import nres.pipeline`` stays cheap): :class:`Database`
(:mod:`nres.pipeline.db`), :func:`run_stage`, :func:`run_stages`, :func:`classify_directory`,
:class:`Task`, :func:`local_executor`, :func:`dask_executor` (:mod:`nres.pipeline.batch`), the
product helpers of :mod:`nres.pipeline.products`, :func:`setup_logging`, :func:`init_site`, the
recipes (:func:`reduce_file`, :func:`reduce_night`, :func:`stack_calibrations`) and the product
readers/writers (:mod:`nres.pipeline.frames`, :mod:`nres.pipeline.spectrum1d`) and the original's
e91 layout (:func:`write_e91`, :func:`read_e91`, :func:`compare_e91`).
"""

from __future__ import annotations

from .._lazy import lazy_exports

#: public name -> module (relative to this package)
_EXPORTS = {
    "Database": "db",
    "Task": "batch",
    "TaskResult": "batch",
    "STAGE_ORDER": "batch",
    "run_stage": "batch",
    "run_stages": "batch",
    "classify_directory": "batch",
    "record_failures": "batch",
    "local_executor": "batch",
    "dask_executor": "batch",
    "file_checksum": "batch",
    "atomic_path": "products",
    "write_atomic": "products",
    "write_fits_atomic": "products",
    "reduced_name": "products",
    "product_path": "products",
    "master_calibration_name": "products",
    "setup_logging": "logging",
    "init_site": "cmd_init_site",
    "reduce_file": "recipes",
    "RECIPES": "recipes",
    "reduce_night": "night",
    "NightResult": "night",
    "stack_calibrations": "calibrations",
    "read_frame": "frames",
    "write_frame": "frames",
    "read_trace_file": "frames",
    "read_spectrum_1d": "spectrum1d",
    "write_spectrum_1d": "spectrum1d",
    "summary_figure": "plots",
    "summary_plot": "plots",
    "E91Product": "e91",
    "write_e91": "e91",
    "read_e91": "e91",
    "compare_e91": "e91",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

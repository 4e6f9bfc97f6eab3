"""Facts about NRES: sites, cameras, reference trace tables, the physical spectrograph model,
ThAr line lists, and air/vacuum conversions. Data files are in ``instrument/data`` with their
sources named in ``instrument/data/DATA_SOURCES``.

Names load lazily from their modules so that ``import nres.instrument`` stays cheap.
"""

from __future__ import annotations

from .._lazy import lazy_exports

#: public name -> module (relative to this package)
_EXPORTS = {
    # sites.py / cameras.py
    "SITES": "sites",
    "site_location": "sites",
    "Site": "sites",
    "camera_info": "cameras",
    "CameraInfo": "cameras",
    # spectrograph.py / physical_model.py
    "spectrograph_table": "spectrograph",
    "PhysicalModel": "physical_model",
    # trace_tables.py (not reference_traces.py: a submodule named like its function would shadow it)
    "reference_traces": "trace_tables",
    "reference_trace_files": "trace_tables",
    # linelists.py / airvac.py
    "thar_lines": "linelists",
    "air_to_vacuum": "airvac",
    "vacuum_to_air": "airvac",
    "refractive_index_air": "airvac",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

"""Pure dummy tasks for the batch tests (module-level, so process pools can pickle them).

Each reads its raw file and writes one product beside ``options["out_dir"]``: the md5 of the raw
bytes, the calibration paths it was given and the options, so a test can check what ran with what.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from nres.pipeline.products import product_path, write_atomic


def summarise(path, calibrations, options):
    data = Path(path).read_bytes()
    if options.get("fail_on") and Path(path).name == options["fail_on"]:
        raise ValueError(f"bad frame {Path(path).name}: injected failure")
    digest = hashlib.md5(data).hexdigest()
    out = product_path(path, "qc", options["out_dir"])
    write_atomic(
        out, json.dumps({"md5": digest, "calibrations": calibrations, "pid": os.getpid()}, sort_keys=True)
    )
    return [out], {"nbytes": len(data), "md5": digest, "scale": options.get("scale", 1.0) * len(data)}


def wrong_return(path, calibrations, options):
    return "not a tuple"

"""``nres trace``: two synthetic flats (fibers 0+1 and 1+2) -> all three fibers, identified against
the packaged lsc reference table, in nres's and the original's file layouts."""

import numpy as np
import pytest

from nres.io.idl_trace_fits import read_idl_trace
from nres.pipeline.cli import main
from nres.traces import Traces


def test_nres_trace_two_flats(tmp_path, seed_traces, flat_factory, capsys):
    window = (250, 700, 1500, 2524)
    truths = []
    for name, fibers, seed in (("f01.fits", (0, 1), 1), ("f12.fits", (1, 2), 2)):
        flat, truth = flat_factory(seed_traces, fibers=fibers, window=window, dy=12.3, seed=seed)
        flat.write(tmp_path / name)
        truths.append(truth)
    out, idl = tmp_path / "traces.fits", tmp_path / "TRAC.fits"
    assert (
        main(
            [
                "trace",
                str(tmp_path / "f01.fits"),
                str(tmp_path / "f12.fits"),
                "--out",
                str(out),
                "--idl-out",
                str(idl),
            ]
        )
        == 0
    )
    assert "fibers [0, 1, 2]" in capsys.readouterr().out
    traces = Traces.read(out)
    for truth in truths:
        for i, (f, o) in enumerate(zip(truth["fibers"], truth["orders"], strict=True)):
            c = truth["centers"][i]
            ok = np.isfinite(c)
            if ok.sum() < 200:
                continue
            k = traces.index(int(f), int(o))
            ok &= traces.valid(truth["x"])[k]
            d = traces.center(truth["x"])[k][ok] - c[ok]
            assert np.sqrt(np.mean(d**2)) < 0.01 and np.abs(d).max() < 0.05, (f, o)
    # the original's layout holds the same centres (float32 coefficients: 1e-4 px)
    back, _ = read_idl_trace(idl)
    k, j = traces.index(2, 62), back.index(2, 62)
    assert back.center([2000.0])[j, 0] == pytest.approx(traces.center([2000.0])[k, 0], abs=1e-3)
    # an existing output is not replaced without --overwrite; the error names nothing silently
    with pytest.raises(OSError):
        main(["trace", str(tmp_path / "f01.fits"), "--out", str(out)])

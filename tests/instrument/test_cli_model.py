"""``nres model`` and ``nres demo`` through the CLI entry point."""

import astropy.units as u
import numpy as np
import pytest

from nres.instrument import PhysicalModel
from nres.pipeline.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table(out):
    """Rows (fiber, order, index, lam_min, lam_max, lam_blaze) printed by nres model."""
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0].isdigit():
            rows.append([float(p) for p in parts])
    return np.array(rows)


def test_model_prints_coverage_and_writes_png(tmp_path, capsys):
    png = tmp_path / "cov.png"
    assert main(["model", "--site", "cpt", "--mjd", "58500", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert rows.shape == (3 * 67, 6)
    model = PhysicalModel.for_site("cpt", mjd=58500.0)
    assert "MJD 58000.01" in out  # the cpt row in use
    fib, order = rows[:, 0].astype(int), rows[:, 1].astype(int)
    assert set(fib) == {0, 1, 2} and set(order) == set(range(52, 119))
    assert np.array_equal(rows[:, 2], order - 52)
    # printed with 5 decimals: agree with the model to 5e-6 nm (rounding)
    lo = model.wavelength(0.0, order, fib).to_value(u.nm)
    hi = model.wavelength(4095.0, order, fib).to_value(u.nm)
    blaze = model.blaze_wavelength(order).to_value(u.nm)
    for col, ref in ((3, lo), (4, hi), (5, blaze)):
        assert np.abs(rows[:, col] - ref).max() <= 5.01e-6
    assert str(png.resolve()) in out
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_model_single_fiber_and_default_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["model", "--fiber", "1"]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows.shape == (67, 6) and set(rows[:, 0]) == {1.0}
    # default: lsc now, i.e. its newest row (58190.0)
    ref = PhysicalModel.for_site("lsc", mjd=58190.0).wavelength(0.0, 52, 1).to_value(u.nm)
    assert rows[0, 3] == pytest.approx(ref, abs=5.01e-6)
    assert (tmp_path / "nres_model_lsc.png").read_bytes().startswith(PNG_MAGIC)


def test_model_errors_are_reported(capsys):
    assert main(["model", "--site", "ogg"]) == 2
    assert "ogg" in capsys.readouterr().err
    assert main(["model", "--site", "elp", "--mjd", "57000"]) == 2
    assert "before the first" in capsys.readouterr().err

"""Tests of the conventions every module shares (DESIGN.md, "Conventions")."""

import pickle
import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

import nres
from nres import doppler, flags, legacy, provenance, window
from nres.errors import (
    FitError,
    InvalidInputFileError,
    InvalidParameterError,
    MissingCalibrationError,
    NRESError,
)


# ----- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (InvalidInputFileError, OSError),
        (InvalidParameterError, ValueError),
        (MissingCalibrationError, LookupError),
        (FitError, RuntimeError),
    ],
)
def test_errors_subclass_builtin(cls, builtin):
    assert issubclass(cls, NRESError)
    assert issubclass(cls, builtin)


def test_invalid_input_file_error_names_file_and_survives_pickle():
    err = InvalidInputFileError("/data/x.fits.fz", "missing keyword OBSTYPE")
    assert "/data/x.fits.fz" in str(err) and "OBSTYPE" in str(err)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, InvalidInputFileError)
    assert str(back) == str(err)


# ----- flags ----------------------------------------------------------------------------------
def test_flags_fit_uint16_and_are_distinct_bits():
    values = [f.value for f in flags.Flag]
    assert len(set(values)) == len(values)
    for v in values:
        assert v > 0 and (v & (v - 1)) == 0 and v <= 0xFFFF


def test_flags_to_mask_ignores_informational_bits():
    f = np.array(
        [0, flags.Flag.NONLINEAR, flags.Flag.SATURATED, flags.Flag.NONLINEAR | flags.Flag.COSMIC_RAY],
        dtype=np.uint16,
    )
    assert flags.flags_to_mask(f).tolist() == [False, False, True, True]
    assert flags.flags_to_mask(f, ignore=0).tolist() == [False, True, True, True]


def test_flags_to_mask_rejects_float():
    with pytest.raises(InvalidParameterError, match="flags"):
        flags.flags_to_mask(np.zeros(3))


def test_add_flag_and_describe():
    f = flags.empty_flags((2, 2))
    flags.add_flag(f, flags.Flag.BLEED, np.array([[True, False], [False, False]]))
    flags.add_flag(f, flags.Flag.SATURATED, np.array([[True, True], [False, False]]))
    assert f.dtype == np.uint16
    assert flags.describe(f[0, 0]) == ["SATURATED", "BLEED"]
    assert flags.describe(f[1, 1]) == []


# ----- windows --------------------------------------------------------------------------------
def test_window_origin_round_trip_and_ltv():
    meta = window.with_window_origin({}, 100, 2048)
    assert window.window_origin(meta) == (100, 2048)
    assert meta["LTV1"] == -2048 and meta["LTV2"] == -100
    # a header with only IRAF LTV keywords is understood too
    assert window.window_origin({"LTV1": -5.0, "LTV2": -7.0}) == (7, 5)
    assert window.window_origin(None) == (0, 0)
    y, x = window.full_detector_grid((3, 4), meta)
    assert y.tolist() == [100, 101, 102] and x.tolist() == [2048, 2049, 2050, 2051]


def test_window_origin_rejects_fractional():
    with pytest.raises(InvalidParameterError, match="window origin"):
        window.window_origin({"NRESX0": 1.5})


# ----- Doppler rule ---------------------------------------------------------------------------
def test_doppler_factors_multiply_not_add():
    z_star = doppler.z_from_velocity(100 * u.km / u.s)
    z_b = doppler.z_from_velocity(-30 * u.km / u.s)
    z_obs = doppler.observed_z(z_star, z_b)
    # (1 + z_obs)(1 + z_B) = 1 + z_star to rounding: forming 1 + z costs ~1e-16 absolute in z,
    # i.e. 3e-8 m/s, so 1e-15 (0.3 micrometres/s) is a tight, honest bound
    assert doppler.barycentric_z(z_obs, z_b) == pytest.approx(z_star, rel=0, abs=1e-15)
    # and differs from the additive rule by z_obs z_B c, ~10 m/s here: never add velocities
    additive = z_obs + z_b
    diff_m_s = (doppler.barycentric_z(z_obs, z_b) - additive) * doppler.C_M_S
    # the difference of two ~3e-4 numbers carries ~1e-16 absolute rounding: 3e-8 m/s
    assert diff_m_s == pytest.approx(z_obs * z_b * doppler.C_M_S, rel=0, abs=1e-6)
    assert abs(diff_m_s) > 5.0


def test_doppler_shift_units_and_velocity():
    lam = doppler.doppler_shift(500.0 * u.nm, doppler.z_from_velocity(2997.92458 * u.m / u.s))
    assert lam.unit == u.nm
    assert lam.value == pytest.approx(500.0 * (1 + 1e-5), rel=1e-15)
    assert doppler.velocity_from_z(1e-5).to_value(u.m / u.s) == pytest.approx(2997.92458)
    assert doppler.C_M_S == 299792458.0
    assert doppler.combine_z(0.1, 0.2) == pytest.approx(1.1 * 1.2 - 1)


# ----- provenance -----------------------------------------------------------------------------
@pytest.mark.parametrize("meta_factory", [dict, fits.Header])
def test_provenance_records_steps_in_order(meta_factory):
    meta = meta_factory()
    meta["OBSTYPE"] = "BIAS"
    provenance.record_provenance(
        meta, "nres.calib.process_ccd", overscan="rowwise", sigma=3.0, legacy=False, array=np.zeros(3)
    )
    provenance.record_provenance(meta, "nres.calib.stack", method="sigma_clip")
    recs = provenance.read_provenance(meta)
    assert [r["step"] for r in recs] == ["nres.calib.process_ccd", "nres.calib.stack"]
    assert recs[0]["overscan"] == "rowwise" and recs[0]["sigma"] == 3.0
    assert recs[0]["legacy"] is False and "array" not in recs[0]
    assert recs[0]["version"] == nres.__version__
    assert meta["OBSTYPE"] == "BIAS"  # no collision with 8-character keywords


def test_provenance_records_non_finite_floats_as_text_so_headers_stay_writable():
    hdr = fits.Header()
    provenance.record_provenance(hdr, "nres.test", sigma=float("nan"), limit=np.inf, gain=1.5)
    hdr.tostring()  # astropy refuses NaN/inf values in a header: this would raise
    assert provenance.read_provenance(hdr)[0] | {"version": None} == {
        "step": "nres.test", "version": None, "sigma": "nan", "limit": "inf", "gain": 1.5
    }


def test_provenance_survives_fits_round_trip(tmp_path):
    hdr = fits.Header()
    provenance.record_provenance(hdr, "nres.extract.extract", method="optimal", niter=3)
    path = tmp_path / "p.fits"
    fits.PrimaryHDU(header=hdr).writeto(path)
    recs = provenance.read_provenance(fits.getheader(path))
    assert recs == [
        {"step": "nres.extract.extract", "version": nres.__version__, "method": "optimal", "niter": 3}
    ]


# ----- legacy options -------------------------------------------------------------------------
def test_legacy_resolve_defaults_legacy_and_explicit():
    legacy.register(
        "tests.fake",
        "median_rule",
        choices=("exact", "idl"),
        default="exact",
        legacy="idl",
        reference="test",
        summary="upper-middle median",
    )
    assert legacy.resolve("tests.fake") == {"median_rule": "exact"}
    assert legacy.resolve("tests.fake", legacy=True) == {"median_rule": "idl"}
    assert legacy.resolve("tests.fake", legacy=True, median_rule="exact") == {"median_rule": "exact"}
    with pytest.raises(InvalidParameterError, match="median_rule='upper'"):
        legacy.resolve("tests.fake", median_rule="upper")
    with pytest.raises(InvalidParameterError, match="unknown legacy option"):
        legacy.resolve("tests.fake", colour="red")


def test_every_registered_legacy_option_is_in_docs_legacy_md():
    import importlib
    import pkgutil
    from pathlib import Path

    # every module, not only the subpackages: options register when their module is imported
    for info in pkgutil.walk_packages(nres.__path__, prefix="nres."):
        importlib.import_module(info.name)
    text = (Path(__file__).parents[1] / "docs" / "legacy.md").read_text()
    missing = [
        f"{e.function}({e.option})"
        for e in legacy.registry()
        if not e.function.startswith("tests.") and f"`{e.option}=" not in text
    ]
    assert not missing, f"docs/legacy.md does not list: {missing}"


# ----- numba policy and cheap import ----------------------------------------------------------
def test_jit_options_only_in_jit_module():
    from pathlib import Path

    root = Path(nres.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "_jit.py":
            continue
        text = path.read_text()
        for word in ("cache=", "fastmath=", "parallel=True", "numba.njit(", "@njit(", "numba.jit("):
            if word in text and ("numba" in text):
                offenders.append(f"{path.relative_to(root)}: {word}")
    assert not offenders, offenders
    from nres import _jit

    assert _jit.JIT["cache"] is True and "fastmath" not in _jit.JIT


def test_import_nres_is_cheap():
    code = "import sys, nres; print(int('numba' in sys.modules), int('nres.instrument' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0"]

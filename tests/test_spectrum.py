"""Tests of nres.spectrum.EchelleSpectrum: validation, flags -> mask, slicing, conversions,
normalisation, FITS round trip and specutils export, each against a known answer."""

import sys
import types

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty, UnknownUncertainty, VarianceUncertainty

import nres.instrument
from nres import doppler
from nres.errors import InvalidInputFileError, InvalidParameterError, NRESWarning
from nres.flags import Flag
from nres.provenance import read_provenance, record_provenance
from nres.spectrum import EchelleSpectrum

SHAPE = (3, 4, 16)  # (n_fiber, n_order, n_pixel)
ORDERS = np.array([61, 60, 58, 57])  # descending, with a gap: nothing may assume contiguity
FIBERS = np.array([0, 1, 2])
X0 = 2000  # window origin: the default pixel is arange(n_pixel) + X0


def _wavelength_nm():
    """A smooth, strictly increasing-in-x wavelength per (fiber, order), distinct everywhere."""
    f, o, x = np.meshgrid(np.arange(3), ORDERS, np.arange(16), indexing="ij")
    return 1.0e5 / o + 0.003 * x + 0.0001 * f


def _inputs():
    rng = np.random.default_rng(20240501)
    data = rng.normal(1000.0, 30.0, SHAPE)
    var = rng.uniform(900.0, 1100.0, SHAPE)
    flags = np.zeros(SHAPE, dtype=np.uint16)
    flags[0, 0, 3] = Flag.SATURATED
    flags[1, 2, 5] = Flag.NONLINEAR  # informational: must not mask
    flags[2, 3, 7] = Flag.COSMIC_RAY | Flag.NONLINEAR
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2, 1, 9] = True  # a user mask without a flag reason
    blaze = rng.uniform(0.5, 1.0, SHAPE)
    continuum = rng.uniform(900.0, 1100.0, SHAPE)
    meta = {"OBJECT": "HD 1234", "NRESX0": X0, "NRESY0": 0}
    record_provenance(meta, "nres.extract.extract", method="optimal")
    return dict(
        data=data,
        var=var,
        flags=flags,
        mask=mask,
        blaze=blaze,
        continuum=continuum,
        meta=meta,
        wavelength=_wavelength_nm() * u.nm,
    )


def _build(inp, **over):
    kw = dict(
        uncertainty=VarianceUncertainty(inp["var"]),
        mask=inp["mask"],
        flags=inp["flags"],
        wavelength=inp["wavelength"],
        orders=ORDERS,
        fibers=FIBERS,
        blaze=inp["blaze"],
        continuum=inp["continuum"],
        meta=inp["meta"],
    )
    kw.update(over)
    return EchelleSpectrum(inp["data"], **kw)


@pytest.fixture(scope="module")
def inp():
    return _inputs()


@pytest.fixture(scope="module")
def spec(inp):
    return _build(inp)


# ----- construction -------------------------------------------------------------------------------
def test_attributes_and_defaults(spec, inp):
    assert spec.shape == SHAPE and spec.unit == u.electron
    assert isinstance(spec.uncertainty, VarianceUncertainty) and spec.uncertainty.unit == u.electron**2
    np.testing.assert_array_equal(spec.data, inp["data"])
    np.testing.assert_array_equal(spec.variance, inp["var"])
    np.testing.assert_array_equal(spec.orders, ORDERS)
    np.testing.assert_array_equal(spec.fibers, FIBERS)
    np.testing.assert_array_equal(spec.pixel, np.arange(16) + X0)
    assert spec.wavelength.unit == u.nm and spec.wavelength.dtype == np.float64
    assert (spec.wavelength_medium, spec.wavelength_frame) == ("vacuum", "topocentric")
    assert spec.flags.dtype == np.uint16 and spec.mask.dtype == bool
    assert "57" in repr(spec) and "61" in repr(spec) and str(spec) == repr(spec)


def test_flags_to_mask_rule(spec):
    expected = np.zeros(SHAPE, dtype=bool)
    expected[0, 0, 3] = True  # SATURATED
    expected[2, 3, 7] = True  # COSMIC_RAY (with the informational NONLINEAR)
    expected[2, 1, 9] = True  # the given mask, OR-ed in
    np.testing.assert_array_equal(spec.mask, expected)  # NONLINEAR alone at [1, 2, 5] is not bad
    assert spec.flags[1, 2, 5] == Flag.NONLINEAR and spec.flags[2, 1, 9] == 0


def test_nonfinite_data_variance_wavelength_are_flagged(inp):
    data, var, wl = inp["data"].copy(), inp["var"].copy(), inp["wavelength"].copy()
    data[0, 1, 1] = np.nan
    var[1, 1, 2] = np.inf
    wl[2, 0, 0] = np.nan * u.nm
    s = EchelleSpectrum(
        data, uncertainty=VarianceUncertainty(var), wavelength=wl, orders=ORDERS, fibers=FIBERS
    )
    assert s.flags[0, 1, 1] == Flag.NONFINITE and s.flags[1, 1, 2] == Flag.NONFINITE
    assert s.flags[2, 0, 0] == Flag.BAD_WAVELENGTH
    assert s.mask.sum() == 3 and s.mask[0, 1, 1] and s.mask[1, 1, 2] and s.mask[2, 0, 0]


def test_uncertainty_types_converted_to_variance(inp):
    sd = np.sqrt(inp["var"])
    s = EchelleSpectrum(inp["data"], uncertainty=StdDevUncertainty(sd), orders=ORDERS, fibers=FIBERS)
    np.testing.assert_allclose(s.variance, sd**2, rtol=1e-15)  # squaring: one rounding
    s = EchelleSpectrum(
        inp["data"], uncertainty=InverseVariance(1.0 / inp["var"]), orders=ORDERS, fibers=FIBERS
    )
    np.testing.assert_allclose(s.variance, inp["var"], rtol=1e-15)  # two reciprocals: 2 ulp
    assert isinstance(s.uncertainty, VarianceUncertainty)
    # units: a Quantity in kilo-electrons with a variance in ke^2 keeps its unit
    s = EchelleSpectrum(
        inp["data"] * u.Unit("1000 electron"),
        uncertainty=VarianceUncertainty(inp["var"], unit=u.Unit("1000 electron") ** 2),
        orders=ORDERS,
        fibers=FIBERS,
    )
    np.testing.assert_allclose(s.variance, inp["var"], rtol=1e-15)
    assert EchelleSpectrum(inp["data"], orders=ORDERS, fibers=FIBERS).uncertainty is None  # never invented


def test_wavelength_in_angstrom_is_stored_in_nm(inp):
    wl_aa = _wavelength_nm() * 10.0 * u.AA
    s = _build(inp, wavelength=wl_aa)
    np.testing.assert_allclose(s.wavelength.value, _wavelength_nm(), rtol=2e-16)  # x10 then /10


def test_inputs_are_copied_not_aliased(inp):
    data = inp["data"].copy()
    s = EchelleSpectrum(data, orders=ORDERS, fibers=FIBERS)
    data[0, 0, 0] = -1.0
    assert s.data[0, 0, 0] == inp["data"][0, 0, 0]
    flags = inp["flags"].copy()
    _build(inp, flags=flags)
    np.testing.assert_array_equal(flags, inp["flags"])  # NONFINITE bits are not written back


def test_explicit_pixel_1d_and_3d(inp):
    px = np.arange(16) * 2.0 + 5.0
    assert _build(inp, pixel=px).pixel.tolist() == px.tolist()
    px3 = np.broadcast_to(px, SHAPE) + np.arange(3)[:, None, None]
    np.testing.assert_array_equal(_build(inp, pixel=px3).pixel, px3)


BAD = [
    ("data", dict(data=np.zeros((4, 16))), "data"),
    ("data", dict(data=np.zeros((2, 4, 16))), "data shape"),
    ("data", dict(data=np.full(SHAPE, "a")), "data"),
    ("orders", dict(orders=[61, 60, 58]), "data shape"),
    ("orders", dict(orders=[61.0, 60.0, 58.0, 57.0]), "orders"),
    ("orders", dict(orders=[61, 61, 58, 57]), "orders"),
    ("fibers", dict(fibers=[0, 1, 1]), "fibers"),
    ("fibers", dict(fibers=[-1, 0, 1]), "fibers"),
    ("mask", dict(mask=np.zeros((3, 4, 15), bool)), "mask"),
    ("mask", dict(mask=np.zeros(SHAPE, float)), "mask"),
    ("flags", dict(flags=np.zeros(SHAPE)), "flags"),
    ("flags", dict(flags=np.full(SHAPE, 70000)), "flags"),
    ("wavelength", dict(wavelength=_wavelength_nm()), "wavelength"),
    ("wavelength", dict(wavelength=_wavelength_nm() * u.kg), "wavelength"),
    ("wavelength", dict(wavelength=_wavelength_nm()[:, :2] * u.nm), "wavelength"),
    ("wavelength_medium", dict(wavelength_medium="water"), "wavelength_medium"),
    ("wavelength_frame", dict(wavelength_frame="heliocentric"), "wavelength_frame"),
    ("pixel", dict(pixel=np.arange(15)), "pixel"),
    ("pixel", dict(pixel=np.full(16, np.nan)), "pixel"),
    ("blaze", dict(blaze=np.ones((3, 4))), "blaze"),
    ("continuum", dict(continuum=np.ones(SHAPE) * u.m), "continuum"),
    ("uncertainty", dict(uncertainty=np.ones(SHAPE)), "uncertainty"),
    ("uncertainty", dict(uncertainty=UnknownUncertainty(np.ones(SHAPE))), "uncertainty"),
    ("uncertainty", dict(uncertainty=VarianceUncertainty(-np.ones(SHAPE))), "uncertainty"),
    ("uncertainty", dict(uncertainty=VarianceUncertainty(np.ones(SHAPE), unit=u.m**2)), "uncertainty"),
    ("uncertainty", dict(uncertainty=VarianceUncertainty(np.ones((3, 4)))), "uncertainty"),
]


@pytest.mark.parametrize(("param", "over", "match"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_inputs_raise_invalid_parameter(inp, param, over, match):
    kw = dict(orders=ORDERS, fibers=FIBERS)
    kw.update(over)
    data = kw.pop("data", inp["data"])
    with pytest.raises(InvalidParameterError, match=match):
        EchelleSpectrum(data, **kw)


def test_data_as_nddata_is_refused(spec):
    with pytest.raises(InvalidParameterError, match="NDData"):
        EchelleSpectrum(spec, orders=ORDERS, fibers=FIBERS)


# ----- slicing ------------------------------------------------------------------------------------
def _assert_crop(sub, spec, fi, oi, pi):
    """Every plane of ``sub`` equals the np.ix_ crop of ``spec`` at positions (fi, oi, pi)."""
    ix = np.ix_(fi, oi, pi)
    np.testing.assert_array_equal(sub.data, spec.data[ix])
    np.testing.assert_array_equal(sub.variance, spec.variance[ix])
    np.testing.assert_array_equal(sub.mask, spec.mask[ix])
    np.testing.assert_array_equal(sub.flags, spec.flags[ix])
    np.testing.assert_array_equal(sub.wavelength.value, spec.wavelength.value[ix])
    np.testing.assert_array_equal(sub.blaze, spec.blaze[ix])
    np.testing.assert_array_equal(sub.continuum, spec.continuum[ix])
    np.testing.assert_array_equal(sub.orders, spec.orders[oi])
    np.testing.assert_array_equal(sub.fibers, spec.fibers[fi])
    px = spec.pixel[pi] if spec.pixel.ndim == 1 else spec.pixel[ix]
    np.testing.assert_array_equal(sub.pixel, px)
    assert sub.unit == spec.unit and sub.meta["OBJECT"] == spec.meta["OBJECT"]
    assert (sub.wavelength_medium, sub.wavelength_frame) == (spec.wavelength_medium, spec.wavelength_frame)


@pytest.mark.parametrize(
    ("item", "fi", "oi", "pi"),
    [
        ((1, slice(1, 3), slice(4, 10)), [1], [1, 2], range(4, 10)),
        ((slice(None), 2), [0, 1, 2], [2], range(16)),
        ((Ellipsis, slice(None, None, 5)), [0, 1, 2], [0, 1, 2, 3], [0, 5, 10, 15]),
        ((-1, Ellipsis), [2], [0, 1, 2, 3], range(16)),
        ((np.array([True, False, True]), [3, 0], 7), [0, 2], [3, 0], [7]),
        (0, [0], [0, 1, 2, 3], range(16)),
    ],
)
def test_getitem_keeps_everything_together(spec, item, fi, oi, pi):
    sub = spec[item]
    assert isinstance(sub, EchelleSpectrum) and sub.data.ndim == 3
    assert sub.shape == (len(fi), len(oi), len(pi))
    _assert_crop(sub, spec, np.array(fi), np.array(oi), np.array(list(pi)))


def test_getitem_with_3d_pixel(inp):
    px3 = np.arange(np.prod(SHAPE), dtype=float).reshape(SHAPE)
    s = _build(inp, pixel=px3)
    _assert_crop(s[1:, ::2, 3:6], s, np.array([1, 2]), np.array([0, 2]), np.arange(3, 6))


@pytest.mark.parametrize("item", [(0, 0, 0, 0), (5,), (slice(2, 2),), (None,), (Ellipsis, Ellipsis)])
def test_getitem_bad_index_raises_index_error(spec, item):
    with pytest.raises(IndexError):
        spec[item]


def test_select_by_ids_keeps_row_order(spec):
    sub = spec.select(orders=[57, 61], fibers=2)
    assert sub.orders.tolist() == [61, 57] and sub.fibers.tolist() == [2]
    _assert_crop(sub, spec, np.array([2]), np.array([0, 3]), np.arange(16))
    assert spec.select().shape == SHAPE
    with pytest.raises(KeyError, match="59"):
        spec.select(orders=[59, 60])
    with pytest.raises(KeyError, match="fibers"):
        spec.select(fibers=3)
    with pytest.raises(InvalidParameterError, match="fibers"):
        spec.select(fibers=1.5)


def test_fiber_and_order_records(spec):
    rec = spec.order(1, 58)
    assert rec.fiber == 1 and rec.order == 58 and rec.unit == u.electron
    np.testing.assert_array_equal(rec.flux, spec.data[1, 2])
    np.testing.assert_array_equal(rec.variance, spec.variance[1, 2])
    np.testing.assert_array_equal(rec.wavelength.value, spec.wavelength.value[1, 2])
    np.testing.assert_array_equal(rec.pixel, np.arange(16) + X0)
    with pytest.raises(ValueError, match="read-only"):
        rec.flux[0] = 0.0
    fib = spec.fiber(2)
    assert fib.flux.shape == (4, 16) and fib.order.tolist() == ORDERS.tolist()
    np.testing.assert_array_equal(fib.blaze, spec.blaze[2])
    assert spec.index(2, 57) == (2, 3)
    with pytest.raises(KeyError, match="order 59"):
        spec.order(0, 59)


# ----- wavelength frame and medium ---------------------------------------------------------------
def test_to_frame_direction_from_doppler_rule(spec):
    # a star at rest in the barycentric frame (z_star = 0): a line emitted at lam0 is observed at
    # the telescope at lam0 (1 + z_obs), z_obs from nres.doppler; moving the observed spectrum to the
    # barycentric frame must give back lam0.
    z_b = doppler.z_from_velocity(-23.4 * u.km / u.s)
    lam0 = spec.wavelength.value
    observed = spec.with_wavelength(
        lam0 * (1 + doppler.observed_z(0.0, z_b)) * u.nm, medium="vacuum", frame="topocentric"
    )
    bary = observed.to_frame("barycentric", z_b=z_b)
    assert bary.wavelength_frame == "barycentric"
    # two multiplications by factors within 1e-4 of 1: a few ulp
    np.testing.assert_allclose(bary.wavelength.value, lam0, rtol=1e-15)


def test_to_frame_exact_factor_round_trip_and_velocity(spec):
    z_b = 1.0e-4
    bary = spec.to_frame("barycentric", z_b=z_b)
    # one multiplication: correctly rounded, so exactly lam * (1 + z_b) in float64
    np.testing.assert_array_equal(bary.wavelength.value, spec.wavelength.value * (1.0 + z_b))
    back = bary.to_frame("topocentric", z_b=z_b)
    np.testing.assert_allclose(back.wavelength.value, spec.wavelength.value, rtol=1e-12, atol=0)
    v = bary.to_frame("topocentric", v_corr=z_b * doppler.C_M_S * u.m / u.s)
    np.testing.assert_allclose(v.wavelength.value, spec.wavelength.value, rtol=1e-12, atol=0)
    assert read_provenance(bary.meta)[-1]["step"] == "nres.EchelleSpectrum.to_frame"
    assert spec.wavelength_frame == "topocentric"  # input unchanged


def test_to_frame_per_fiber(spec):
    z = np.array([1e-4, 0.0, -5e-5])
    bary = spec.to_frame("barycentric", z_b=z)
    for k in range(3):
        np.testing.assert_array_equal(bary.wavelength.value[k], spec.wavelength.value[k] * (1.0 + z[k]))


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(z_b=1e-4, v_corr=1 * u.km / u.s),
        dict(z_b=-1.0),
        dict(z_b=[1e-4, 0.0]),
        dict(v_corr=30.0),
        dict(v_corr=1 * u.m),
        dict(z_b=np.nan),
    ],
)
def test_to_frame_bad_arguments(spec, kw):
    with pytest.raises(InvalidParameterError, match="to_frame"):
        spec.to_frame("barycentric", **kw)


def test_conversions_need_wavelength_and_valid_labels(inp, spec):
    bare = _build(inp, wavelength=None)
    with pytest.raises(InvalidParameterError, match="no wavelength"):
        bare.to_frame("barycentric", z_b=0.0)
    with pytest.raises(InvalidParameterError, match="no wavelength"):
        bare.to_medium("air")
    with pytest.raises(InvalidParameterError, match="frame"):
        spec.to_frame("heliocentric", z_b=0.0)
    with pytest.raises(InvalidParameterError, match="medium"):
        spec.to_medium("glass")
    same = spec.to_frame("topocentric", z_b=1e-4)  # already topocentric: unchanged copy
    np.testing.assert_array_equal(same.wavelength.value, spec.wavelength.value)


def test_with_wavelength_sets_labels(inp):
    bare = _build(inp, wavelength=None)
    s = bare.with_wavelength(_wavelength_nm() * 10 * u.AA, medium="air", frame="barycentric")
    assert (s.wavelength_medium, s.wavelength_frame) == ("air", "barycentric")
    np.testing.assert_allclose(s.wavelength.to_value(u.nm), _wavelength_nm(), rtol=2e-16)
    assert (
        bare.wavelength is None
        and s.with_wavelength(None, medium="air", frame="topocentric").wavelength is None
    )


@pytest.fixture
def fake_airvac(monkeypatch):
    """Stand-in for nres.instrument.airvac with an analytic index n = 1.0003 (records formula)."""
    calls = []

    def vacuum_to_air(wavelength, *, formula="edlen1966"):
        calls.append(("vacuum_to_air", formula))
        return wavelength / 1.0003

    def air_to_vacuum(wavelength, *, formula="edlen1966"):
        calls.append(("air_to_vacuum", formula))
        return wavelength * 1.0003

    fake = types.SimpleNamespace(vacuum_to_air=vacuum_to_air, air_to_vacuum=air_to_vacuum)
    monkeypatch.setitem(sys.modules, "nres.instrument.airvac", fake)
    monkeypatch.setattr(nres.instrument, "airvac", fake, raising=False)
    return calls


def test_to_medium_calls_the_right_conversion(spec, fake_airvac):
    air = spec.to_medium("air")
    assert air.wavelength_medium == "air" and fake_airvac == [("vacuum_to_air", "edlen1966")]
    np.testing.assert_array_equal(air.wavelength.value, spec.wavelength.value / 1.0003)
    vac = air.to_medium("vacuum", formula="ciddor1996")
    assert fake_airvac[-1] == ("air_to_vacuum", "ciddor1996")
    np.testing.assert_allclose(vac.wavelength.value, spec.wavelength.value, rtol=4e-16)
    assert read_provenance(vac.meta)[-1] == {
        "step": "nres.EchelleSpectrum.to_medium",
        "version": nres.__version__,
        "medium": "vacuum",
        "formula": "ciddor1996",
    }
    n_calls = len(fake_airvac)
    same = spec.to_medium("vacuum")  # already vacuum: no conversion called
    assert len(fake_airvac) == n_calls
    np.testing.assert_array_equal(same.wavelength.value, spec.wavelength.value)


def test_to_medium_with_the_real_airvac_module(spec):
    # Edlen (1966): n - 1 = 1e-8 (8342.13 + 2406030 / (130 - s2) + 15997 / (38.9 - s2)), s2 = (1/lam_um)^2;
    # at 500 nm vacuum s2 = 4, n - 1 = 2.7895973e-4, so lam_air = 499.8605590 nm (hand-evaluated).
    # 1e-6 nm tolerance: far below the 4e-4 nm step to Edlen's 1953 formula, far above rounding.
    wl = np.full(SHAPE, 500.0) * u.nm
    air = spec.with_wavelength(wl, medium="vacuum", frame="topocentric").to_medium("air")
    np.testing.assert_allclose(air.wavelength.value, 499.860559034, rtol=0, atol=1e-6)
    back = air.to_medium("vacuum")
    np.testing.assert_allclose(back.wavelength.value, 500.0, rtol=0, atol=1e-9)  # inverse is iterated


# ----- normalisation ------------------------------------------------------------------------------
def test_normalized_by_continuum_and_blaze(spec, inp):
    c = spec.normalized()  # default: the continuum, which this spectrum has
    np.testing.assert_array_equal(c.data, inp["data"] / inp["continuum"])
    np.testing.assert_array_equal(c.variance, inp["var"] / inp["continuum"] ** 2)
    assert c.unit == u.dimensionless_unscaled and c.uncertainty.unit == u.dimensionless_unscaled
    assert c.blaze is None and c.continuum is None
    b = spec.normalized(by="blaze")
    np.testing.assert_array_equal(b.data, inp["data"] / inp["blaze"])
    np.testing.assert_array_equal(b.variance, inp["var"] / inp["blaze"] ** 2)
    np.testing.assert_array_equal(b.continuum, inp["continuum"] / inp["blaze"])
    assert b.unit == u.electron and b.blaze is None
    # then by the (de-blazed) continuum: the same as by the continuum directly, to rounding
    np.testing.assert_allclose(b.normalized().data, c.data, rtol=4e-16)
    np.testing.assert_array_equal(spec.data, inp["data"])  # input unchanged
    assert read_provenance(b.meta)[-1]["by"] == "blaze"


def test_normalized_bad_divisor_flags_no_weight(inp):
    blaze = inp["blaze"].copy()
    blaze[0, 2, 4] = 0.0
    blaze[1, 0, 0] = np.nan
    s = _build(inp, blaze=blaze, continuum=None).normalized()
    for idx in ((0, 2, 4), (1, 0, 0)):
        assert np.isnan(s.data[idx]) and np.isnan(s.variance[idx]) and s.mask[idx]
        assert s.flags[idx] & Flag.NO_WEIGHT and s.flags[idx] & Flag.NONFINITE
    assert s.mask.sum() == 5  # 3 bad before, 2 new
    with pytest.raises(InvalidParameterError, match="no blaze"):
        s.normalized(by="blaze")
    with pytest.raises(InvalidParameterError, match="by"):
        s.normalized(by="flat")


# ----- FITS ---------------------------------------------------------------------------------------
def _assert_same(a, b):
    for name in ("data", "variance", "mask", "flags", "pixel", "blaze", "continuum", "orders", "fibers"):
        va, vb = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(va, vb, err_msg=name)
        assert va.dtype == vb.dtype, name
    assert np.array_equal(a.wavelength.value, b.wavelength.value) and b.wavelength.unit == u.nm
    assert (a.unit, a.uncertainty.unit) == (b.unit, b.uncertainty.unit)
    assert (a.wavelength_medium, a.wavelength_frame) == (b.wavelength_medium, b.wavelength_frame)


def test_fits_round_trip_float64_is_bit_exact(spec, tmp_path):
    s = spec.with_wavelength(spec.wavelength, medium="air", frame="barycentric")
    path = tmp_path / "spec.fits"
    s.write(path, precision="float64")
    back = EchelleSpectrum.read(path)
    _assert_same(s, back)
    assert back.meta["OBJECT"] == "HD 1234" and back.meta["NRESX0"] == X0
    assert read_provenance(back.meta) == read_provenance(s.meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.fits"]  # no temp file left
    with fits.open(path) as hdul:
        names = [h.name for h in hdul]
        assert names == [
            "PRIMARY",
            "SPECTRUM",
            "VARIANCE",
            "FLAGS",
            "MASK",
            "WAVELENGTH",
            "PIXEL",
            "BLAZE",
            "CONTINUUM",
            "FIBERS",
            "ORDERS",
        ]
        assert hdul["WAVELENGTH"].data.dtype == np.dtype(">f8") and hdul["WAVELENGTH"].header["BUNIT"] == "nm"


def test_fits_round_trip_float32_default(spec, tmp_path):
    path = tmp_path / "spec32.fits.gz"
    spec.write(path)
    back = EchelleSpectrum.read(path)
    f32 = np.float32
    # float32 on disk: the read values are exactly the float32-rounded originals
    np.testing.assert_array_equal(back.data, spec.data.astype(f32).astype(np.float64))
    np.testing.assert_array_equal(back.variance, spec.variance.astype(f32).astype(np.float64))
    np.testing.assert_array_equal(back.blaze, spec.blaze.astype(f32).astype(np.float64))
    np.testing.assert_array_equal(back.wavelength.value, spec.wavelength.value)  # float64 always
    np.testing.assert_array_equal(back.flags, spec.flags)
    np.testing.assert_array_equal(back.mask, spec.mask)
    with fits.open(path) as hdul:
        assert hdul["SPECTRUM"].data.dtype == np.dtype(">f4")


def test_fits_round_trip_minimal_and_3d_pixel(inp, tmp_path):
    px3 = np.arange(np.prod(SHAPE), dtype=float).reshape(SHAPE) + 0.25
    s = EchelleSpectrum(
        inp["data"] * u.dimensionless_unscaled,
        orders=ORDERS,
        fibers=FIBERS,
        pixel=px3,
        meta=fits.Header({"OBJECT": "x"}),
    )
    s.write(tmp_path / "m.fits", precision="float64")
    back = EchelleSpectrum.read(tmp_path / "m.fits")
    assert (
        back.uncertainty is None and back.wavelength is None and back.blaze is None and back.continuum is None
    )
    assert back.unit == u.dimensionless_unscaled
    np.testing.assert_array_equal(back.pixel, px3)
    np.testing.assert_array_equal(back.data, inp["data"])


def test_write_refuses_existing_and_missing_directory(spec, tmp_path):
    path = tmp_path / "s.fits"
    spec.write(path)
    with pytest.raises(InvalidInputFileError, match="already exists") as err:
        spec.write(path)
    assert str(path) in str(err.value)
    spec.normalized().write(path, overwrite=True)
    assert EchelleSpectrum.read(path).unit == u.dimensionless_unscaled
    with pytest.raises(InvalidInputFileError, match="directory"):
        spec.write(tmp_path / "nope" / "s.fits")
    with pytest.raises(InvalidParameterError, match="precision"):
        spec.write(tmp_path / "t.fits", precision="float16")


def test_write_warns_about_unwritable_meta(inp, tmp_path):
    s = _build(inp, meta={"OBJECT": "x", "TABLE": [1, 2]})
    with pytest.warns(NRESWarning, match="TABLE"):
        s.write(tmp_path / "w.fits")
    assert "TABLE" not in EchelleSpectrum.read(tmp_path / "w.fits").meta


def _corrupt(spec, tmp_path, edit):
    hdul = spec.to_hdulist()
    edit(hdul)
    path = tmp_path / "bad.fits"
    hdul.writeto(path)
    return path


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h[0].header.remove("NRESTYPE"), "not an nres EchelleSpectrum"),
        (lambda h: h.pop(h.index_of("ORDERS")), "ORDERS"),
        (lambda h: h.pop(h.index_of("SPECTRUM")), "SPECTRUM"),
        (lambda h: h[0].header.remove("NRESWMED"), "NRESWMED"),
        (lambda h: h[0].header.set("NRESWFRM", "galactic"), "wavelength_frame"),
        (
            lambda h: h.__setitem__(
                h.index_of("FLAGS"), fits.ImageHDU(np.zeros((2, 2), np.uint16), name="FLAGS")
            ),
            "flags",
        ),
        (lambda h: h["SPECTRUM"].header.set("BUNIT", "not a unit at all"), "BUNIT"),
    ],
)
def test_read_bad_files_raise_invalid_input_file(spec, tmp_path, edit, match):
    path = _corrupt(spec, tmp_path, edit)
    with pytest.raises(InvalidInputFileError, match=match) as err:
        EchelleSpectrum.read(path)
    assert str(path) in str(err.value)


def test_read_missing_and_non_fits(tmp_path):
    with pytest.raises(InvalidInputFileError, match="does not exist"):
        EchelleSpectrum.read(tmp_path / "absent.fits")
    text = tmp_path / "notes.fits"
    text.write_text("this is not FITS\n" * 20)
    with pytest.raises(InvalidInputFileError, match="not a readable FITS") as err:
        EchelleSpectrum.read(text)
    assert str(text) in str(err.value)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_read_truncated_file(spec, tmp_path, keep):
    path = tmp_path / "full.fits"
    spec.write(path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(raw[: int(len(raw) * keep)])  # 0.99 cuts into the last block (table padding)
    with pytest.raises(InvalidInputFileError, match="truncated|not a readable") as err:
        EchelleSpectrum.read(cut)
    assert str(cut) in str(err.value)


# ----- specutils ----------------------------------------------------------------------------------
def test_to_spectrum_collection_values(spec):
    sc = spec.to_spectrum_collection(1)
    assert sc.shape == (4,) and sc.flux.unit == u.electron and sc.spectral_axis.unit == u.nm
    np.testing.assert_array_equal(sc.flux.value, spec.data[1])
    np.testing.assert_array_equal(sc.spectral_axis.value, spec.wavelength.value[1])
    assert isinstance(sc.uncertainty, VarianceUncertainty) and sc.uncertainty.unit == u.electron**2
    np.testing.assert_array_equal(sc.uncertainty.array, spec.variance[1])
    np.testing.assert_array_equal(sc.mask, spec.mask[1])
    assert sc.meta["orders"].tolist() == ORDERS.tolist() and sc.meta["fiber"] == 1
    assert sc.meta["wavelength_medium"] == "vacuum" and sc.meta["wavelength_frame"] == "topocentric"
    one = sc[2]  # order 58
    np.testing.assert_array_equal(one.flux.value, spec.data[1, 2])


def test_to_spectrum_values_and_errors(spec, inp):
    from specutils import Spectrum

    s = spec.to_spectrum(2, 57)
    assert isinstance(s, Spectrum)
    np.testing.assert_array_equal(s.flux.value, spec.data[2, 3])
    np.testing.assert_array_equal(s.spectral_axis.value, spec.wavelength.value[2, 3])
    np.testing.assert_array_equal(s.uncertainty.array, spec.variance[2, 3])
    np.testing.assert_array_equal(s.mask, spec.mask[2, 3])
    assert s.meta["order"] == 57 and s.meta["pixel"].tolist() == (np.arange(16) + X0).tolist()
    wl = _wavelength_nm()
    wl[0, 0, 5] = wl[0, 0, 4]  # not strictly monotonic
    bad = _build(inp, wavelength=wl * u.nm)
    with pytest.raises(InvalidParameterError, match="monotonic"):
        bad.to_spectrum(0, 61)
    with pytest.raises(InvalidParameterError, match="no wavelength"):
        _build(inp, wavelength=None).to_spectrum_collection(0)
    with pytest.raises(KeyError, match="fiber 5"):
        spec.to_spectrum_collection(5)


def test_pickle_round_trip_for_process_pools(spec):
    import pickle

    back = pickle.loads(pickle.dumps(spec))
    _assert_same(spec, back)
    assert back.uncertainty.parent_nddata is back

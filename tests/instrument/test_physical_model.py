"""PhysicalModel (port of lambda3ofx): IDL oracles, analytic grating equation, inverse, selection."""

import dataclasses
import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from nres import legacy
from nres.errors import InvalidParameterError, MissingCalibrationError
from nres.instrument import PhysicalModel, spectrograph_table
from nres.instrument.physical_model import glass_index

DATA = Path(__file__).parents[1] / "data"

# the spectrographs.csv rows behind the GDL oracle sets (idl_reference/lambda3ofx/README.md)
ORACLE_ROWS = {"D": 4, "E": 8}  # lsc 57920.01 and lsc 58190.0

# idl-wavecal.md 16.1: the fitted lsc solution of the archived e91 example header
HEADER_PARAMS = dict(
    sinalp=0.971752791943,
    fl=375.148150860,
    y0=-22.1609437182,
    z0=0.000267987291401,
    grspc=24.0442,
    glass="PBM2",
    apex=55.0,
    lamcen=0.479,
    rot=1.4,
    pixsiz=0.015,
    nx=4096,
    nord=67,
    ord0=52,
    coefs=(
        0.00340326,
        -0.00187633,
        -0.0360488,
        -0.00910170,
        0.0450354,
        0.143455,
        0.0336166,
        -0.00217271,
        -0.0308000,
        0.0301350,
        -0.00449405,
        0.0134021,
        -0.00732926,
        -0.00803556,
        -0.00622579,
    ),
    fibcoefs=(
        (
            5.99252653122,
            0.174400657415,
            9.44467145018e-4,
            2.29340348596e-5,
            1.53816898819e-3,
            1.20484585864e-7,
            1.24920561007e-7,
            2.96445468173e-9,
            3.92722443107e-12,
            9.24733649299e-6,
        ),
        (0.0,) * 10,
    ),
)


@pytest.fixture(scope="module")
def table():
    return spectrograph_table()


@pytest.fixture(scope="module", params=["D", "E"])
def oracle(request):
    with np.load(DATA / f"lambda3ofx_{request.param}.npz") as f:
        return request.param, {k: f[k] for k in f.files}


# ----- the spectrograph table -------------------------------------------------------------------
def test_spectrograph_table_is_the_csv_with_glass_stripped(table):
    assert len(table) == 10 and len(table.colnames) == 59
    assert list(table["Site"]) == ["bpl", "lsc", "lsc", "lsc", "lsc", "bpl", "elp", "cpt", "lsc", "tlv"]
    assert set(table["Glass"]) == {"PBM2"}  # the file has "PBM2    " in 9 of 10 rows
    assert table["MJD"][2] == 57807.852951389272 and table["GrInc"][3] == 76.35733667
    assert table["C5"][8] == 0.138826 and table["F19"][8] == 9.247336492990000e-06
    table["Site"][0] = "xxx"  # a copy: the packaged table is not changed
    assert spectrograph_table()["Site"][0] == "bpl"


# ----- IDL oracles ------------------------------------------------------------------------------
@pytest.mark.parametrize("fiber_shift", ["quadratic", "exact"])
def test_oracle_lambda3ofx(table, oracle, fiber_shift):
    name, ref = oracle
    x, orders = ref["x"], ref["mm"]
    model = PhysicalModel.from_csv_row(
        table[ORACLE_ROWS[name]], sinalp_precision="float32", fiber_shift=fiber_shift
    )
    # order heights are pure float64 arithmetic in both: 1e-9 mm is ~1e-7 px
    assert np.abs(model.order_heights().to_value(u.mm) - ref["y0m"][1]).max() < 1e-9
    lam = model.wavelength(x[None, None, :], orders[None, :, None], np.arange(3)[:, None, None])
    assert lam.unit == u.nm and lam.shape == ref["lam"].shape
    # spec tolerance 1e-6 nm (the README's independent port agrees to 2e-8 nm; the remainder is the
    # original's float32 Legendre basis, which we evaluate in float64)
    assert np.abs(lam.to_value(u.nm) - ref["lam"]).max() < 1e-6
    grid = model.wavelength_grid().to_value(u.nm)[:, :, x]
    assert np.abs(grid - ref["lam"]).max() < 1e-6
    # the corrected defaults (double-precision pi in sin(GrInc)) move lambda by <= 1e-5 nm
    fixed = PhysicalModel.from_csv_row(table[ORACLE_ROWS[name]])
    diff = np.abs(fixed.wavelength_grid().to_value(u.nm)[:, :, x] - ref["lam"]).max()
    assert 1e-6 < diff < 2e-5


def test_oracle_through_for_site_row_selection(oracle):
    name, ref = oracle
    x = ref["x"]
    # data of MJD 58000 at lsc: the valid row is 57920.01 (set D); the original took 58190.0 (set E)
    model = (
        PhysicalModel.for_site("lsc", mjd=58000.0, sinalp_precision="float32")
        if name == "D"
        else PhysicalModel.for_site("lsc", mjd=58000.0, legacy=True)
    )
    assert np.abs(model.wavelength_grid().to_value(u.nm)[:, :, x] - ref["lam"]).max() < 1e-6


def test_from_header_reproduces_lamcen_lamran():
    hdr = fits.Header.fromtextfile(DATA / "header_e91_example.txt")
    model = PhysicalModel.from_header(hdr)
    assert model.sinalp == hdr["SINALP"] and model.fibcoefs[0][9] == hdr["FIBC9"]

    def lam(x, iord, fiber=0):
        return model.wavelength_index(x, iord, fiber).to_value(u.nm)

    # LAMCEN/LAMRAN are taken from fiber 0 (IDL plane 0); idl-wavecal.md 9.3 and 16.1
    for key, iord in (("LAMCENR", 5), ("LAMCENG", 38), ("LAMCENB", 60)):
        assert lam(2048, iord) == pytest.approx(hdr[key], abs=1e-6)
    for key, iord, (x0, x1) in (
        ("LAMRANR", 5, (512, 3584)),
        ("LAMRANG", 38, (1024, 3276)),
        ("LAMRANB", 60, (1638, 2867)),
    ):
        assert lam(x1, iord) - lam(x0, iord) == pytest.approx(hdr[key], abs=2e-6)
    # fiber 1 with the same inputs (idl-wavecal.md 16.1, quoted to 1e-8 nm)
    for iord, ref in ((5, 819.31072897), (38, 518.43798138), (60, 415.82567618)):
        assert lam(2048, iord, 1) == pytest.approx(ref, abs=1e-6)
    # the same model built directly from the parameters
    direct = PhysicalModel(**HEADER_PARAMS)
    assert direct.wavelength(2048, 57, 0).to_value(u.nm) == pytest.approx(819.302627259, abs=1e-6)
    assert direct.wavelength(2048, 90, 0).to_value(u.nm) == pytest.approx(518.420809109, abs=1e-6)
    assert direct.wavelength(2048, 112, 0).to_value(u.nm) == pytest.approx(415.800943616, abs=1e-6)


def test_from_header_star_fiber_2_and_missing_keyword():
    hdr = fits.Header.fromtextfile(DATA / "header_e91_example.txt")
    hdr["OBJECTS"] = "none&thar&GJ166"
    model = PhysicalModel.from_header(hdr)
    assert model.fibcoefs[1][0] == hdr["FIBC0"]
    assert model.fibcoefs[0][0] == pytest.approx(5.99252653122)  # fiber 0 from the csv row
    del hdr["C07"]
    with pytest.raises(InvalidParameterError, match="C07"):
        PhysicalModel.from_header(hdr)


# ----- analytic checks --------------------------------------------------------------------------
def test_glass_index_reference_values():
    # idl-wavecal.md 3.2 (values quoted to 1e-7)
    for lam_um, n in ((0.400, 1.6522304), (0.479, 1.6333047), (0.5876, 1.6200380), (0.800, 1.6083583)):
        assert float(glass_index("PBM2", lam_um)) == pytest.approx(n, abs=1e-7)
    assert float(glass_index("bk7 ", 0.5876)) == pytest.approx(1.5163285, abs=1e-7)
    with pytest.raises(InvalidParameterError, match="'F2'"):
        glass_index("F2", 0.5)


def test_grating_equation_at_one_point():
    # no rotation, no correction: lambda = d/m (sin a + sin(a + theta)) cos(gamma) / (1 + z0), with
    # theta = atan(xo / fl), xo = (x - nx/2) pixsiz, and gamma from the prism (written out here)
    sinalp, fl, y0, z0, d, m, x = 0.9717, 375.0, -22.0, 2e-4, 24.0442, 90, 3000.0
    model = PhysicalModel(sinalp=sinalp, fl=fl, y0=y0, z0=z0, grspc=d, rot=0.0)
    b, c = (1.39446503, 0.159230985, 0.245470216), (1.10571872e-2, 5.07194882e-2, 31.4440142)

    def n_pbm2(lam):
        return math.sqrt(1 + sum(bk * lam**2 / (lam**2 - ck) for bk, ck in zip(b, c, strict=True)))

    half_apex = math.radians(55.0) / 2
    delta = math.asin(n_pbm2(0.479) * math.sin(half_apex)) - half_apex
    y0m = 4 * fl * delta * (n_pbm2(2 * d * sinalp / m) - n_pbm2(0.479))
    cos_gamma = math.cos(math.asin((y0m - y0) / fl))
    alpha, theta = math.asin(sinalp), math.atan((x - 2048) * 0.015 / fl)
    expected = d / m * (math.sin(alpha) + math.sin(alpha + theta)) * cos_gamma / (1 + z0) * 1e3
    # float64 evaluation of the same formula in another arrangement: 1e-10 nm is ~1e3 ulp
    assert model.wavelength(x, m).to_value(u.nm) == pytest.approx(expected, abs=1e-10)
    littrow = 2 * d * sinalp * cos_gamma / (m * (1 + z0)) * 1e3
    assert model.blaze_wavelength(m).to_value(u.nm) == pytest.approx(littrow, abs=1e-10)
    assert model.wavelength(2048, m).to_value(u.nm) == pytest.approx(littrow, abs=1e-10)
    assert model.order_heights()[m - 52].to_value(u.mm) == pytest.approx(y0m, abs=1e-10)


def test_fiber_shift_definition():
    # a line at x1 in fiber 1 lands at x1 + dx in fiber 0: dx = F00 for a constant polynomial
    params = dict(HEADER_PARAMS, fibcoefs=((6.5,) + (0.0,) * 9, (-3.25,) + (0.0,) * 9))
    for shift in ("exact", "quadratic"):
        model = PhysicalModel(**params, fiber_shift=shift)
        lam1 = model.wavelength(2000.0, 80, 1)
        # the quadratic interpolation of a smooth order is exact to ~1e-11 nm (third derivative)
        assert model.wavelength(2006.5, 80, 0).to_value(u.nm) == pytest.approx(lam1.value, abs=1e-9)
        assert model.wavelength(1996.75, 80, 2).to_value(u.nm) == pytest.approx(lam1.value, abs=1e-9)


# ----- inverse and coverage ---------------------------------------------------------------------
@pytest.mark.parametrize("fiber_shift", ["exact", "quadratic"])
def test_pixel_inverts_wavelength(fiber_shift):
    model = PhysicalModel(**HEADER_PARAMS, fiber_shift=fiber_shift)
    rng = np.random.default_rng(3)
    x = rng.uniform(-10, 4105, size=(3, 67))
    orders = np.arange(52, 119)[None, :]
    fibers = np.arange(3)[:, None]
    lam = model.wavelength(x, orders, fibers)
    back = model.pixel(lam, orders, fibers)
    assert back.shape == x.shape
    assert np.abs(back - x).max() < 1e-6  # spec: to 1e-6 px (Newton stops at 1e-9 px)
    assert model.pixel(lam[1, 10].to(u.AA), 62, 1) == pytest.approx(x[1, 10], abs=1e-6)


def test_orders_containing():
    model = PhysicalModel(**HEADER_PARAMS)
    lam = model.wavelength(1000.0, 80, 1)
    found = model.orders_containing(lam)
    assert 80 in list(found["order"])
    assert found["pixel"][list(found["order"]).index(80)] == pytest.approx(1000.0, abs=1e-6)
    # every order must be listed exactly when its end wavelengths bracket lam
    ends = model.wavelength(np.array([0.0, 4095.0])[None, :], model.orders[:, None]).to_value(u.nm)
    expect = model.orders[(ends[:, 0] <= lam.value) & (lam.value <= ends[:, 1])]
    assert list(found["order"]) == list(expect)
    # 520 nm: neighbouring orders overlap (idl-wavecal.md 3.9), so two orders contain it
    both = model.orders_containing(520.0 * u.nm, fiber=0)
    assert len(both) == 2 and np.all((both["pixel"] >= 0) & (both["pixel"] <= 4095))
    back = model.wavelength(both["pixel"], both["order"], 0).to_value(u.nm)
    assert np.abs(back - 520.0).max() < 1e-9
    assert len(model.orders_containing(300.0)) == 0


def test_non_length_wavelength_is_an_invalid_parameter():
    model = PhysicalModel(**HEADER_PARAMS)
    with pytest.raises(InvalidParameterError, match="wavelength.*Hz"):
        model.pixel(5.0 * u.Hz, 80)
    with pytest.raises(InvalidParameterError, match="wavelength.*Hz"):
        model.orders_containing(5.0 * u.Hz)


def test_order_index_conversions_and_errors():
    model = PhysicalModel(**HEADER_PARAMS)
    assert model.order_index(52) == 0 and model.order_from_index(66) == 118
    assert list(model.order_index([60, 61])) == [8, 9]
    assert model.wavelength_index(100.0, 8).value == model.wavelength(100.0, 60).value
    for bad in (51, 119, 60.5):
        with pytest.raises(InvalidParameterError, match="order"):
            model.wavelength(100.0, bad)
    with pytest.raises(InvalidParameterError, match="fiber"):
        model.wavelength(100.0, 60, 3)
    with pytest.raises(InvalidParameterError, match="order_index"):
        model.order_from_index(67)
    with pytest.raises(InvalidParameterError, match="medium"):
        model.wavelength(100.0, 60, medium="water")


def test_wavelength_grid_matches_pointwise_and_is_ordered():
    model = PhysicalModel(**HEADER_PARAMS)
    grid = model.wavelength_grid()
    assert grid.shape == (3, 67, 4096) and grid.unit == u.nm
    x = np.array([0, 1234, 4095])
    pointwise = model.wavelength(x[None, None, :], model.orders[None, :, None], np.arange(3)[:, None, None])
    assert np.array_equal(grid.value[:, :, x], pointwise.value)
    # wavelength rises with x in every order; order index 0 is the reddest
    assert np.all(np.diff(grid.value, axis=2) > 0)
    assert np.all(np.diff(grid.value[:, :, 2048], axis=1) < 0)
    # coverage (idl-wavecal.md 3.9): iord 0 ~888-906 nm, iord 66 ~389.5-397.8 nm
    assert 886 < grid.value[1, 0, 0] < 890 and 904 < grid.value[1, 0, -1] < 908
    assert 388.5 < grid.value[1, 66, 0] < 390.5 and 397 < grid.value[1, 66, -1] < 399


# ----- selection, legacy options, construction --------------------------------------------------
def test_row_selection_valid_vs_latest():
    assert PhysicalModel.for_site("lsc", mjd=57900.0).mjd == 57865.875
    assert PhysicalModel.for_site("lsc", mjd=57900.0, row_selection="latest").mjd == 58190.0
    assert PhysicalModel.for_site("LSC", mjd=60000.0).mjd == 58190.0
    assert PhysicalModel.for_site("bpl", mjd=57300.0).mjd == 57282.84
    with pytest.raises(MissingCalibrationError, match="before the first.*'elp'"):
        PhysicalModel.for_site("elp", mjd=57999.0)
    # the original never refused: it took the newest row
    assert PhysicalModel.for_site("elp", mjd=57999.0, legacy=True).mjd == 58000.01
    with pytest.raises(InvalidParameterError, match="row_selection"):
        PhysicalModel.for_site("lsc", mjd=58000.0, row_selection="closest")
    with pytest.raises(InvalidParameterError, match="'xyz'"):
        PhysicalModel.for_site("xyz", mjd=58000.0)


def test_legacy_options_registered():
    entries = {(e.function, e.option): e for e in legacy.registry()}
    assert entries[("PhysicalModel.for_site", "row_selection")].legacy == "latest"
    assert entries[("PhysicalModel.for_site", "sinalp_precision")].legacy == "float32"
    assert entries[("PhysicalModel.for_site", "fiber_shift")].default == "exact"


def test_sinalp_precision(table):
    row = table[8]
    single = PhysicalModel.from_csv_row(row, sinalp_precision="float32").sinalp
    double = PhysicalModel.from_csv_row(row).sinalp
    assert double == math.sin(math.radians(76.35733667))
    assert single == math.sin(76.35733667 * float(np.float32(np.pi)) / 180.0) != double


def test_construction_validates_and_is_immutable():
    model = PhysicalModel(**HEADER_PARAMS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.fl = 1.0
    shifted = dataclasses.replace(model, fl=model.fl + 0.1)
    assert shifted.wavelength(100.0, 60).value != model.wavelength(100.0, 60).value
    assert PhysicalModel(**dict(HEADER_PARAMS, coefs=HEADER_PARAMS["coefs"][:10])).coefs[10:] == (0.0,) * 5
    for bad, match in (
        (dict(sinalp=1.2), "sinalp"),
        (dict(coefs=(0.0,) * 7), "coefs"),
        (dict(glass="XX"), "glass"),
        (dict(fibcoefs=((0.0,) * 10,)), "fibcoefs"),
        (dict(fiber_shift="cubic"), "fiber_shift"),
    ):
        with pytest.raises(InvalidParameterError, match=match):
            PhysicalModel(**dict(HEADER_PARAMS, **bad))
    x = np.array([1.0, 2.0])
    model.wavelength(x, 60)
    assert x.tolist() == [1.0, 2.0]


def test_air_output_is_explicit_edlen():
    model = PhysicalModel(**HEADER_PARAMS)
    vac = model.wavelength(2048.0, 90, 1)
    air = model.wavelength(2048.0, 90, 1, medium="air")
    # Edlen (1966) by hand at 0.5184 um: sigma^2 = 3.7211 um^-2,
    # (n - 1) 1e8 = 8342.13 + 2406030 / (130 - 3.7211) + 15997 / (38.9 - 3.7211) = 27850.2
    n_minus_1 = (vac / air).decompose().value - 1.0
    assert n_minus_1 == pytest.approx(2.78502e-4, abs=2e-9)
    grid_air = model.wavelength_grid(medium="air")
    assert grid_air[1, 38, 2048].value == pytest.approx(air.value, abs=1e-12)

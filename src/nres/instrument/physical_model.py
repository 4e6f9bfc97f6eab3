"""The physical wavelength model of NRES (a port of the original's ``lambda3ofx``).

A perfect collimator, an R4 echelle in quasi-Littrow with out-of-plane angle gamma per order, a
prism cross-disperser crossed twice, an ideal camera of focal length ``fl`` and a detector rotated
by ``rot``; then an empirical 15-term Legendre correction (C0..C14, nm) and, for the star fibers 0
and 2, a pixel shift polynomial (F00..F09, F10..F19). The parameters always describe the ThAr
fiber 1. Wavelengths are vacuum nm. See ``docs/physical_model.md`` and ``idl-wavecal.md`` section 3.

Pixel coordinate: ``x`` is the 0-based full-detector column (pixel centres at integers), exactly
the ``i`` of the original, which evaluates the optics at ``xx = (i - nx/2) * pixsiz`` (mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import astropy.units as u
import numpy as np

from .. import legacy as _legacy
from ..errors import FitError, InvalidParameterError, MissingCalibrationError

__all__ = ["PhysicalModel", "glass_index", "GLASSES", "FIBERS"]

#: Fiber ids of NRES (1 = ThAr calibration fiber, which the parameters describe).
FIBERS = (0, 1, 2)

_FOR_SITE = "PhysicalModel.for_site"
_legacy.register(
    _FOR_SITE,
    "row_selection",
    choices=("valid", "latest"),
    default="valid",
    legacy="latest",
    reference="idl-wavecal.md 2 and 13 (fix 1)",
    summary="get_specdat took the site's newest csv row even when dated after the data",
)
_legacy.register(
    _FOR_SITE,
    "sinalp_precision",
    choices=("float64", "float32"),
    default="float64",
    legacy="float32",
    reference="idl_reference/lambda3ofx/README.md; idl-wavecal.md 2",
    summary="sin(GrInc) computed with single-precision !pi (changes lambda by up to 1e-5 nm)",
)
_legacy.register(
    _FOR_SITE,
    "fiber_shift",
    choices=("exact", "quadratic"),
    default="exact",
    legacy="quadratic",
    reference="idl-wavecal.md 3.8 and 13 (replicate 13)",
    summary="fibers 0/2 by 3-point (INTERPOL /QUADRATIC) interpolation of fiber 1 on integer pixels",
)

#: Dispersion formulae of the cross-disperser glasses (idl-wavecal.md 3.2; lambda in micrometres).
#: "schott": n^2 = a0 + a1 l^2 + a2 l^-2 + a3 l^-4 + a4 l^-6 + a5 l^-8;
#: "sellmeier": n^2 = 1 + sum B_k l^2 / (l^2 - C_k), C in um^2.
GLASSES = {
    "BK7": ("schott", (2.2697665, -9.6395197e-3, 1.1025458e-2, 7.9465126e-5, 1.0120957e-5, -4.4096694e-7)),
    "SF2": ("schott", (2.6360314, -8.9450876e-3, 2.5228056e-2, 1.1120943e-3, -3.7887387e-5, 6.3760973e-6)),
    "SIO2": ("sellmeier", (0.67071081, 0.433322857, 0.877379057), (0.00449192312, 0.0132812976, 95.8899878)),
    "LLF1": ("sellmeier", (1.21640125, 0.133664540, 0.883399468), (8.57807248e-3, 4.20143003e-2, 107.593060)),
    "PBM2": ("sellmeier", (1.39446503, 0.159230985, 0.245470216), (1.10571872e-2, 5.07194882e-2, 31.4440142)),
    "LF5": ("sellmeier", (1.28035628, 0.16350597, 0.893930112), (9.29854416e-3, 4.49135769e-2, 110.493685)),
}

# IDL's single-precision !pi, which get_specdat used for sin(GrInc) (the legacy float32 path)
_PI_FLOAT32 = float(np.float32(np.pi))
_NCOEFS = 15
_NFIBCOEFS = 10


def glass_index(glass: str, wavelength_um):
    """Refractive index of a cross-disperser glass.

    Parameters
    ----------
    glass : str
        One of :data:`GLASSES` (case-insensitive, blanks ignored): BK7, SF2, SiO2, LLF1, PBM2, LF5.
    wavelength_um : array_like
        Vacuum wavelength, micrometres.

    Returns
    -------
    ndarray
        Refractive index, same shape as ``wavelength_um``.
    """
    key = str(glass).strip().upper()
    if key not in GLASSES:
        msg = f"glass: unknown prism glass {glass!r}; expected one of {', '.join(GLASSES)}"
        raise InvalidParameterError(msg)
    lam2 = np.asarray(wavelength_um, dtype=np.float64) ** 2
    kind, *coef = GLASSES[key]
    if kind == "schott":
        a = coef[0]
        n2 = a[0] + a[1] * lam2 + a[2] / lam2 + a[3] / lam2**2 + a[4] / lam2**3 + a[5] / lam2**4
    else:
        b, c = coef
        n2 = 1.0 + sum(bk * lam2 / (lam2 - ck) for bk, ck in zip(b, c, strict=True))
    return np.sqrt(n2)


def _nm(wavelength, name="wavelength"):
    """Float64 nm of a length Quantity (a plain number is taken as nm)."""
    if not isinstance(wavelength, u.Quantity):
        return np.asarray(wavelength, dtype=np.float64)
    try:
        return np.asarray(wavelength.to_value(u.nm), dtype=np.float64)
    except u.UnitConversionError as err:
        msg = f"{name}: expected a length (e.g. 500 * u.nm) or a number in nm, got unit {wavelength.unit}"
        raise InvalidParameterError(msg) from err


def _as_int_array(values, name):
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            msg = f"{name}: expected integers, got {values!r}"
            raise InvalidParameterError(msg)
    return arr.astype(np.int64)


@dataclass(frozen=True)
class PhysicalModel:
    """The NRES physical wavelength model (port of ``lambda3ofx``), parameterised in sin(alpha).

    Build it from a site and date (:meth:`for_site`), a row of the spectrograph table
    (:meth:`from_csv_row`), an archived product header (:meth:`from_header`) or directly from the
    parameters below. Instances are immutable; ``dataclasses.replace`` makes a perturbed copy.

    Parameters
    ----------
    sinalp : float
        Sine of the grating incidence angle alpha.
    fl : float
        Camera focal length, mm.
    y0 : float
        Detector y (mm from the CCD centre) where the out-of-plane angle gamma is zero.
    z0 : float
        "n - 1" of the spectrograph medium; wavelengths are divided by ``1 + z0``.
    grspc : float
        Grating groove spacing, micrometres (24.0442: the 41.6 gr/mm R4 echelle).
    glass : str
        Cross-disperser prism glass (see :data:`GLASSES`).
    apex : float
        Prism apex angle, degrees.
    lamcen : float
        Wavelength of zero net prism deviation, micrometres.
    rot : float
        Detector rotation, degrees.
    pixsiz : float
        Pixel size, mm.
    nx : int
        Pixels along the dispersion.
    ord0 : int
        Diffraction order of order index 0 (the reddest order).
    nord : int
        Number of orders.
    coefs : sequence of float
        The 15 (or 10) Legendre correction coefficients C0..C14, nm (fiber 1).
    fibcoefs : pair of sequences of float
        The pixel-shift polynomials ``dx = x_fiber - x_fiber1`` of fiber 0 (F00..F09) and fiber 2
        (F10..F19), pixels.
    fiber_shift : {"exact", "quadratic"}
        How fibers 0/2 follow from fiber 1: "exact" evaluates fiber 1 at ``x - dx(x)``; "quadratic"
        is the original's 3-point Lagrange interpolation of fiber 1 sampled at integer pixels (the
        two differ by ~1e-11 nm; legacy option, see ``docs/legacy.md``).
    site : str or None
        Site code the parameters belong to (informational).
    mjd : float or None
        MJD tag of the table row the parameters came from (informational).
    """

    sinalp: float
    fl: float
    y0: float
    z0: float
    grspc: float = 24.0442
    glass: str = "PBM2"
    apex: float = 55.0
    lamcen: float = 0.479
    rot: float = 1.4
    pixsiz: float = 0.015
    nx: int = 4096
    ord0: int = 52
    nord: int = 67
    coefs: tuple = (0.0,) * _NCOEFS
    fibcoefs: tuple = ((0.0,) * _NFIBCOEFS, (0.0,) * _NFIBCOEFS)
    fiber_shift: str = "exact"
    site: str | None = None
    mjd: float | None = None
    _y0m: np.ndarray = field(init=False, repr=False, compare=False)
    _cosgam: np.ndarray = field(init=False, repr=False, compare=False)
    _xrot: np.ndarray = field(init=False, repr=False, compare=False)
    _scale: np.ndarray = field(init=False, repr=False, compare=False)
    _corr: np.ndarray = field(init=False, repr=False, compare=False)
    _shiftc: np.ndarray = field(init=False, repr=False, compare=False)

    # ----- construction ---------------------------------------------------------------------
    def __post_init__(self):
        set_ = object.__setattr__
        for name in ("sinalp", "fl", "y0", "z0", "grspc", "apex", "lamcen", "rot", "pixsiz"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                msg = f"PhysicalModel: {name} must be finite, got {value!r}"
                raise InvalidParameterError(msg)
            set_(self, name, value)
        if not 0.0 < self.sinalp < 1.0:
            msg = f"PhysicalModel: sinalp must be in (0, 1), got {self.sinalp!r}"
            raise InvalidParameterError(msg)
        for name in ("fl", "grspc", "pixsiz"):
            if getattr(self, name) <= 0:
                msg = f"PhysicalModel: {name} must be positive, got {getattr(self, name)!r}"
                raise InvalidParameterError(msg)
        for name in ("nx", "ord0", "nord"):
            value = getattr(self, name)
            if int(value) != value or int(value) <= 0:
                msg = f"PhysicalModel: {name} must be a positive integer, got {value!r}"
                raise InvalidParameterError(msg)
            set_(self, name, int(value))
        glass = str(self.glass).strip().upper()
        if glass not in GLASSES:
            msg = f"PhysicalModel: glass {self.glass!r} unknown; expected one of {', '.join(GLASSES)}"
            raise InvalidParameterError(msg)
        set_(self, "glass", glass)
        coefs = tuple(float(c) for c in np.ravel(self.coefs))
        if len(coefs) == 10:  # the original's 10-term variant = the first 10 basis functions
            coefs = coefs + (0.0,) * 5
        if len(coefs) != _NCOEFS:
            msg = f"PhysicalModel: coefs must have 10 or 15 values (C0..C14), got {len(coefs)}"
            raise InvalidParameterError(msg)
        set_(self, "coefs", coefs)
        fib = np.asarray(self.fibcoefs, dtype=np.float64)
        if fib.shape != (2, _NFIBCOEFS):
            msg = f"PhysicalModel: fibcoefs must have shape (2, 10) (F00..F09, F10..F19), got {fib.shape}"
            raise InvalidParameterError(msg)
        set_(self, "fibcoefs", tuple(tuple(float(v) for v in row) for row in fib))
        if self.fiber_shift not in ("exact", "quadratic"):
            msg = f"PhysicalModel: fiber_shift={self.fiber_shift!r}; expected 'exact' or 'quadratic'"
            raise InvalidParameterError(msg)
        # per-order geometry (idl-wavecal.md 3.3-3.4): prism order height y0m and cos(gamma)
        radian = 180.0 / np.pi
        n_mid = float(glass_index(glass, self.lamcen))
        half_apex = self.apex / (2.0 * radian)
        delta = math.asin(n_mid * math.sin(half_apex)) - half_apex
        m = self.ord0 + np.arange(self.nord)
        lam_c = self.grspc * 2.0 * self.sinalp / m  # blaze (Littrow) wavelength of each order, um
        y0m = 4.0 * self.fl * delta * (glass_index(glass, lam_c) - n_mid)  # factor 4: kept as the original
        cosgam = np.cos(np.arcsin((y0m - self.y0) / self.fl))
        set_(self, "_y0m", y0m)
        set_(self, "_cosgam", cosgam)
        # per-order factors of the evaluation (see _fiber1): the rotation term y0m sin(rot), and
        # 1e3 (d / m) cos(gamma) / (1 + z0), nm
        set_(self, "_xrot", y0m * math.sin(self.rot / radian))
        set_(self, "_scale", self.grspc / m * cosgam / (1.0 + self.z0) * 1e3)
        set_(self, "_corr", self._correction_polynomials())
        set_(self, "_shiftc", self._shift_polynomials())
        for name in ("_y0m", "_cosgam", "_xrot", "_scale", "_corr", "_shiftc"):
            getattr(self, name).setflags(write=False)

    # the 15 Legendre basis functions P_a(ux) P_b(uo) as (a, b) (idl-wavecal.md 3.7)
    _BASIS = (
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
        (2, 1),
        (3, 0),
        (0, 4),
        (1, 3),
        (2, 2),
        (3, 1),
        (4, 0),
    )

    def _correction_polynomials(self):
        """(5, nord): the correction of each order as monomial coefficients in ux = 2 jx / nx."""
        from numpy.polynomial import legendre as L

        uo = 2.0 * (np.arange(self.nord) - self.nord / 2.0) / self.nord  # nord/2 = 33.5, as the original
        po = [L.legval(uo, np.eye(5)[b]) for b in range(5)]
        g = np.zeros((5, self.nord))  # g[a] = sum_k C_k P_b(uo): the coefficient of P_a(ux)
        for ck, (a, b) in zip(self.coefs, self._BASIS, strict=True):
            g[a] += ck * po[b]
        out = np.zeros((5, self.nord))
        for i in range(self.nord):
            mono = L.leg2poly(g[:, i])
            out[: mono.size, i] = mono
        return out

    def _shift_polynomials(self):
        """(2, 4, nord): the fiber 0 / fiber 2 shift of each order as a cubic in jx (monomials)."""
        jo = np.arange(self.nord) - self.nord / 2.0
        out = np.empty((2, 4, self.nord))
        for c, f in enumerate(self.fibcoefs):
            out[c, 0] = f[0] + f[1] * jo + f[4] * jo**2 + f[9] * jo**3
            out[c, 1] = f[2] + f[3] * jo + f[5] * jo**2
            out[c, 2] = f[6] + f[7] * jo
            out[c, 3] = f[8]
        return out

    @classmethod
    def from_csv_row(cls, row, *, sinalp_precision=None, fiber_shift=None, legacy=False) -> PhysicalModel:
        """Model from one row of :func:`~nres.instrument.spectrograph_table` (or a dict with its columns).

        Parameters
        ----------
        row : astropy.table.Row or mapping
            Columns Site, MJD, Ord0, GrSpc, GrInc, FL, Y0, Z0, Glass, Apex, LamCen, Rot, PixSiz, Nx,
            Nord, C0..C14, F00..F19.
        sinalp_precision : {"float64", "float32"}, optional
            ``sinalp = sin(GrInc)`` with double pi (default) or, as the original, single-precision pi.
        fiber_shift : {"exact", "quadratic"}, optional
            See :class:`PhysicalModel`.
        legacy : bool
            Shorthand for every legacy option of :meth:`for_site`.
        """
        opts = _legacy.resolve(_FOR_SITE, legacy, sinalp_precision=sinalp_precision, fiber_shift=fiber_shift)
        try:
            grinc = float(row["GrInc"])
            if opts["sinalp_precision"] == "float32":
                sinalp = math.sin(grinc / (180.0 / _PI_FLOAT32))
            else:
                sinalp = math.sin(math.radians(grinc))
            return cls(
                sinalp=sinalp,
                fl=float(row["FL"]),
                y0=float(row["Y0"]),
                z0=float(row["Z0"]),
                grspc=float(row["GrSpc"]),
                glass=str(row["Glass"]).strip(),
                apex=float(row["Apex"]),
                lamcen=float(row["LamCen"]),
                rot=float(row["Rot"]),
                pixsiz=float(row["PixSiz"]),
                nx=int(row["Nx"]),
                ord0=int(row["Ord0"]),
                nord=int(row["Nord"]),
                coefs=tuple(float(row[f"C{k}"]) for k in range(_NCOEFS)),
                fibcoefs=(
                    tuple(float(row[f"F0{k}"]) for k in range(_NFIBCOEFS)),
                    tuple(float(row[f"F1{k}"]) for k in range(_NFIBCOEFS)),
                ),
                fiber_shift=opts["fiber_shift"],
                site=str(row["Site"]).strip().strip('"').lower(),
                mjd=float(row["MJD"]),
            )
        except KeyError as err:
            msg = f"row: missing spectrographs.csv column {err.args[0]!r}"
            raise InvalidParameterError(msg) from err

    @classmethod
    def for_site(
        cls, site, *, mjd, row_selection=None, sinalp_precision=None, fiber_shift=None, legacy=False
    ) -> PhysicalModel:
        """The model of a site's spectrograph at a date, from the packaged spectrograph table.

        Parameters
        ----------
        site : str or Site
            lsc, elp, cpt, tlv or bpl.
        mjd : float
            MJD of the data.
        row_selection : {"valid", "latest"}, optional
            "valid" (default): the newest row with MJD <= ``mjd``. "latest": the site's newest row
            regardless of ``mjd`` (the original's ``get_specdat``).
        sinalp_precision : {"float64", "float32"}, optional
            See :meth:`from_csv_row`.
        fiber_shift : {"exact", "quadratic"}, optional
            See :class:`PhysicalModel`.
        legacy : bool
            All three options at the original's behaviour, unless given explicitly.

        Raises
        ------
        MissingCalibrationError
            No row for the site, or (with "valid") ``mjd`` is before the site's first row.
        """
        from .sites import get_site
        from .spectrograph import spectrograph_table

        opts = _legacy.resolve(
            _FOR_SITE,
            legacy,
            row_selection=row_selection,
            sinalp_precision=sinalp_precision,
            fiber_shift=fiber_shift,
        )
        code = get_site(site).code
        mjd = float(mjd)
        table = spectrograph_table()
        rows = [r for r in table if r["Site"] == code]
        if not rows:
            msg = f"site: spectrographs.csv has no row for site {code!r}"
            raise MissingCalibrationError(msg)
        if opts["row_selection"] == "valid":
            usable = [r for r in rows if r["MJD"] <= mjd]
            if not usable:
                first = min(r["MJD"] for r in rows)
                msg = (
                    f"mjd: {mjd} is before the first spectrographs.csv row of site {code!r} "
                    f"(MJD {first}); no physical model is valid then"
                )
                raise MissingCalibrationError(msg)
            rows = usable
        # newest row; on equal MJD the later row of the file wins
        best = max(range(len(rows)), key=lambda k: (float(rows[k]["MJD"]), k))
        return cls.from_csv_row(
            rows[best], sinalp_precision=opts["sinalp_precision"], fiber_shift=opts["fiber_shift"]
        )

    @classmethod
    def from_header(cls, header, *, base=None, star_fiber=None) -> PhysicalModel:
        """Model from an archived IDL product header (the e91 file's SINALP, FL, Y0, Z0, Cnn, FIBCn).

        The header carries the fitted fiber-1 parameters and the star fiber's shift polynomial
        only; the fixed optics (grating, prism, pixel size...) and the other star fiber's shift
        come from ``base``.

        Parameters
        ----------
        header : mapping
            FITS header (or dict) with SINALP, FL, Y0, Z0, C00..C14 and FIBC0..FIBC9.
        base : PhysicalModel, optional
            Source of the parameters the header lacks. Default: :meth:`for_site` of the header's
            SITEID at its MJD-OBS.
        star_fiber : {0, 2}, optional
            Fiber that FIBC0..9 describe. Default from OBJECTS as the original wrote it: fiber 2 if
            the first fiber's object is 'none', else fiber 0.
        """

        def get(key):
            if key not in header:
                msg = f"header: missing keyword {key} (expected an nres-pipe e91/THAR product header)"
                raise InvalidParameterError(msg)
            return header[key]

        if base is None:
            if "SITEID" not in header or "MJD-OBS" not in header:
                msg = "header: no SITEID/MJD-OBS to choose the base model; pass base=PhysicalModel(...)"
                raise InvalidParameterError(msg)
            base = cls.for_site(str(header["SITEID"]), mjd=float(header["MJD-OBS"]))
        if star_fiber is None:
            words = str(header.get("OBJECTS", "")).split("&")
            star_fiber = 2 if words and words[0].strip().lower() == "none" else 0
        if star_fiber not in (0, 2):
            msg = f"star_fiber: expected 0 or 2, got {star_fiber!r}"
            raise InvalidParameterError(msg)
        fib = [list(base.fibcoefs[0]), list(base.fibcoefs[1])]
        fib[star_fiber // 2] = [float(get(f"FIBC{k}")) for k in range(_NFIBCOEFS)]
        params = {f.name: getattr(base, f.name) for f in fields(cls) if f.init}
        params.update(
            sinalp=float(get("SINALP")),
            fl=float(get("FL")),
            y0=float(get("Y0")),
            z0=float(get("Z0")),
            coefs=tuple(float(get(f"C{k:02d}")) for k in range(_NCOEFS)),
            fibcoefs=tuple(fib),
            mjd=float(header["MJD-OBS"]) if "MJD-OBS" in header else base.mjd,
        )
        return cls(**params)

    # ----- orders ---------------------------------------------------------------------------
    @property
    def orders(self) -> np.ndarray:
        """Physical diffraction orders m, in order-index order (``ord0 .. ord0 + nord - 1``)."""
        return self.ord0 + np.arange(self.nord)

    def order_index(self, order):
        """Order index (0 = reddest, ``m - ord0``) of physical order(s) ``order``."""
        m = _as_int_array(order, "order")
        if np.any((m < self.ord0) | (m >= self.ord0 + self.nord)):
            msg = f"order: expected physical orders {self.ord0}..{self.ord0 + self.nord - 1}, got {order!r}"
            raise InvalidParameterError(msg)
        return m - self.ord0

    def order_from_index(self, order_index):
        """Physical order m of order index(es) ``order_index`` (0 .. nord - 1)."""
        i = _as_int_array(order_index, "order_index")
        if np.any((i < 0) | (i >= self.nord)):
            msg = f"order_index: expected 0..{self.nord - 1}, got {order_index!r}"
            raise InvalidParameterError(msg)
        return i + self.ord0

    def order_heights(self):
        """Prism order-centre height y0m of every order (order-index order), Quantity mm, (nord,)."""
        return self._y0m.copy() * u.mm

    def blaze_wavelength(self, order):
        """Model wavelength at the Littrow point (beta = -alpha) of order(s) m, fiber 1, Quantity nm.

        ``2 grspc sinalp cos(gamma_m) / (m (1 + z0))``: the centre of the order's blaze function
        when the blaze angle equals alpha (the Legendre correction, <= 0.15 nm, not included).
        """
        io = self.order_index(order)
        m = io + self.ord0
        lam = 2.0 * self.grspc * self.sinalp * self._cosgam[io] / m / (1.0 + self.z0) * 1e3
        return lam * u.nm

    # ----- evaluation (plain float64 arrays, nm) --------------------------------------------
    def _fiber1(self, jx, io):
        """Fiber-1 wavelength (nm) at pixel offsets ``jx = x - nx/2`` and order indices ``io``."""
        xo = jx * self.pixsiz + self._xrot[io]
        # grating equation lam = (d/m)(sin a - sin b) cos g with b = -a - atan(xo/fl), written with
        # one square root instead of atan and sin (identical to rounding, ~1e-13 nm; 3x faster)
        r = np.sqrt(self.fl * self.fl + xo * xo)
        sin_a = self.sinalp
        cos_a = math.sqrt(1.0 - sin_a * sin_a)
        lam = (sin_a + (sin_a * self.fl + cos_a * xo) / r) * self._scale[io]
        # Legendre correction: per order a quartic in ux = 2 jx / nx (Horner)
        c = self._corr
        ux = jx * (2.0 / self.nx)
        return lam + (((c[4][io] * ux + c[3][io]) * ux + c[2][io]) * ux + c[1][io]) * ux + c[0][io]

    def _shift(self, jx, io, fiber):
        """Pixel shift dx = x_fiber - x_fiber1 of star fiber 0 or 2 (idl-wavecal.md 3.8): per order a
        cubic in jx (Horner)."""
        a = self._shiftc[fiber // 2]
        return ((a[3][io] * jx + a[2][io]) * jx + a[1][io]) * jx + a[0][io]

    def _quadratic(self, u, io, sampled=None):
        """3-point Lagrange interpolation of fiber 1 sampled at integer jx, evaluated at ``u``.

        As IDL INTERPOL /QUADRATIC on the original's grid padded by 20 pixels: the parabola through
        the samples at i - 1, i, i + 1 where i = floor(u), clamped to the padded grid.
        """
        half = self.nx // 2
        lo, hi = -half - 20, self.nx - half - 1 + 20  # jx of the padded grid's ends
        i = np.clip(np.floor(u), lo + 1, hi - 1)
        t = u - i
        if sampled is None:
            fm, f0, fp = self._fiber1(i - 1, io), self._fiber1(i, io), self._fiber1(i + 1, io)
        else:  # sampled[io, k] = fiber 1 at jx = lo + k
            k = (i - lo).astype(np.int64)
            fm, f0, fp = sampled[io, k - 1], sampled[io, k], sampled[io, k + 1]
        return 0.5 * t * (t - 1.0) * fm - (t + 1.0) * (t - 1.0) * f0 + 0.5 * (t + 1.0) * t * fp

    def _evaluate(self, x, io, fiber):
        """Wavelength (nm, float64) for broadcast arrays x (pixels), io (order index), fiber."""
        x, io, fiber = np.broadcast_arrays(np.asarray(x, dtype=np.float64), io, fiber)
        jx = x - self.nx / 2.0
        out = np.empty(x.shape, dtype=np.float64)
        for fib in FIBERS:
            sel = fiber == fib
            if not np.any(sel):
                continue
            jxs, ios = jx[sel], io[sel]
            if fib == 1:
                out[sel] = self._fiber1(jxs, ios)
            elif self.fiber_shift == "exact":
                out[sel] = self._fiber1(jxs - self._shift(jxs, ios, fib), ios)
            else:
                out[sel] = self._quadratic(jxs - self._shift(jxs, ios, fib), ios)
        return out

    @staticmethod
    def _fiber_array(fiber):
        f = _as_int_array(fiber, "fiber")
        if np.any((f < 0) | (f > 2)):
            msg = f"fiber: expected fiber ids 0, 1 or 2, got {fiber!r}"
            raise InvalidParameterError(msg)
        return f

    # ----- public evaluation ----------------------------------------------------------------
    def wavelength(self, x, order, fiber=1, *, medium="vacuum"):
        """Wavelength at full-detector pixel(s) ``x`` of physical order(s) and fiber(s).

        Parameters
        ----------
        x : array_like of float
            0-based full-detector column (pixel centres at integers); any real value.
        order : array_like of int
            Physical diffraction order m (``ord0 .. ord0 + nord - 1``, 52..118 on NRES).
        fiber : array_like of int, optional
            Fiber id 0, 1 (ThAr, default) or 2.
        medium : {"vacuum", "air"}
            "air" converts with :func:`nres.instrument.vacuum_to_air` (the original never did).

        Returns
        -------
        Quantity
            Wavelength in nm, shape of ``broadcast(x, order, fiber)``.
        """
        return self.wavelength_index(x, self.order_index(order), fiber, medium=medium)

    def wavelength_index(self, x, order_index, fiber=1, *, medium="vacuum"):
        """As :meth:`wavelength`, with orders given by index (0 = reddest, m = ord0 + index)."""
        io = _as_int_array(order_index, "order_index")
        if np.any((io < 0) | (io >= self.nord)):
            msg = f"order_index: expected 0..{self.nord - 1}, got {order_index!r}"
            raise InvalidParameterError(msg)
        lam = self._evaluate(x, io, self._fiber_array(fiber)) * u.nm
        return self._to_medium(lam, medium)

    @staticmethod
    def _to_medium(lam, medium):
        if medium == "vacuum":
            return lam
        if medium == "air":
            from .airvac import vacuum_to_air

            return vacuum_to_air(lam)
        msg = f"medium: expected 'vacuum' or 'air', got {medium!r}"
        raise InvalidParameterError(msg)

    def wavelength_grid(self, *, medium="vacuum"):
        """Wavelength of every pixel, order and fiber.

        Returns
        -------
        Quantity, shape (3, nord, nx)
            ``[fiber, order_index, x]`` in nm (fibers 0, 1, 2; order index 0 = order ``ord0``).
        """
        half = self.nx // 2
        io = np.arange(self.nord)[:, None]
        jx = (np.arange(self.nx) - half).astype(np.float64)[None, :]
        out = np.empty((3, self.nord, self.nx))
        if self.fiber_shift == "quadratic":
            # fiber 1 on the padded grid once, then gather (as the original)
            jxe = np.arange(-half - 20, self.nx - half + 20, dtype=np.float64)[None, :]
            sampled = self._fiber1(jxe, io)
            out[1] = sampled[:, 20:-20]
            for fib in (0, 2):
                u_ = jx - self._shift(jx, io, fib)
                out[fib] = self._quadratic(u_, np.broadcast_to(io, u_.shape), sampled)
        else:
            out[1] = self._fiber1(jx, io)
            for fib in (0, 2):
                out[fib] = self._fiber1(jx - self._shift(jx, io, fib), io)
        return self._to_medium(out * u.nm, medium)

    def pixel(self, wavelength, order, fiber=1, *, tol=1e-9, max_iter=50):
        """Inverse of :meth:`wavelength`: the full-detector pixel x where the model gives ``wavelength``.

        Parameters
        ----------
        wavelength : Quantity or array_like
            Vacuum wavelength (a plain number is taken as nm).
        order, fiber : array_like of int
            Physical order(s) and fiber id(s), broadcast with ``wavelength``.
        tol : float
            Convergence tolerance on x, pixels.

        Returns
        -------
        ndarray of float
            Pixel x (may lie off the detector when the wavelength is outside the order's range).

        Raises
        ------
        FitError
            Newton's iteration did not converge (should not happen for a physical model).
        """
        w = _nm(wavelength)
        io = self.order_index(order)
        fib = self._fiber_array(fiber)
        w, io, fib = np.broadcast_arrays(np.asarray(w, dtype=np.float64), io, fib)
        x = np.full(w.shape, self.nx / 2.0)
        h = 0.5  # px; the dispersion changes by <1e-3 relative over a pixel, so the slope is accurate
        for _ in range(max_iter):
            lam = self._evaluate(x, io, fib)
            slope = (self._evaluate(x + h, io, fib) - self._evaluate(x - h, io, fib)) / (2 * h)
            step = (lam - w) / slope
            x = x - step
            if np.all(np.abs(step) < tol):
                return x
        msg = f"pixel: Newton iteration did not reach {tol} px in {max_iter} steps"
        raise FitError(msg)

    def orders_containing(self, wavelength, *, fiber=1):
        """The orders whose detector range (x = 0 .. nx - 1) contains a wavelength.

        Parameters
        ----------
        wavelength : Quantity or float
            One vacuum wavelength (a plain number is taken as nm).
        fiber : int
            Fiber id.

        Returns
        -------
        astropy.table.Table
            Columns ``order`` (m), ``order_index`` and ``pixel`` (x of the wavelength), reddest first;
            empty when no order contains it.
        """
        from astropy.table import Table

        w = float(_nm(wavelength))
        io = np.arange(self.nord)
        fib = np.full(self.nord, int(self._fiber_array(fiber)))
        lo = self._evaluate(np.zeros(self.nord), io, fib)
        hi = self._evaluate(np.full(self.nord, self.nx - 1.0), io, fib)
        sel = io[(lo <= w) & (w <= hi)]
        pixels = (
            self.pixel(np.full(sel.size, w), sel + self.ord0, fib[: sel.size]) if sel.size else (np.zeros(0))
        )
        return Table(
            {
                "order": (sel + self.ord0).astype(np.int64),
                "order_index": sel.astype(np.int64),
                "pixel": np.asarray(pixels, dtype=np.float64),
            }
        )

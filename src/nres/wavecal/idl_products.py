"""The original pipeline's wavelength products: THAR and TRIP files, and the e91 wavelength grids.

Layouts (idl-wavecal.md 9.3, 9.4 and 10.3; IDL arrays (nx, nord[, nfib]) read in numpy as
([nfib,] nord, nx)):

* THAR ``reduced/thar/THAR<site><yyyyddd.fffff>.fits``: primary = every fiber's wavelengths
  (float64 nm, plane p = fiber p); header SINALP, FL, Y0, Z0, C00..C14 (fiber 1), FIBC0..FIBC9
  (the star fiber), LAMCEN*/LAMRAN*; extension 1 = per-fiber SINALP, FL, Y0, Z0 (0 for unfitted
  fibers), extension 2 = per-fiber C00..C14 (float32), extension 3 = the matched lines of the
  last fitted fiber (matchlam, matchamp, matchwid, matchline, matchxpos, matchord, matcherr,
  matchdif, matchwts, matchbest).
* TRIP ``reduced/trip/TRIP<site><date>.fits``: primary = fiber 1's wavelengths (nord, nx) of the
  averaged model; header ORD0, GRSPC, SINALP, FL, Y0, Z0, GLASS, APEX, LAMCEN, ROT, PIXSIZ, NX,
  NORD, NCOEFS, COEFS00..COEFS14, FIBCOE<j><c> (j = 0..9, column c = 0 for fiber 0, 1 for fiber
  2), NFRAVGD, ORGNAMnn.
* e91 (final product): extensions WAVESPEC (the star fiber) and WAVETHAR (fiber 1), float64 nm
  (nord, nx); the main header as the THAR header's fitted values (SINALP.., C00..C14, FIBC0..9).

No real THAR or TRIP file is available to this project; the readers follow the documented layout
and are tested on files built to it (tests/wavecal/test_idl_products.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from ..errors import InvalidInputFileError, InvalidParameterError

__all__ = [
    "IDLThar",
    "IDLTriple",
    "read_thar",
    "read_trip",
    "read_e91_wavelengths",
    "recompute_idl_wavelengths",
    "compare_idl_wavelengths",
]

_NCOEFS = 15
_NFIB = 10


def _card(header, key, path):
    if key not in header:
        raise InvalidInputFileError(path, f"missing keyword {key}")
    return header[key]


@dataclass(frozen=True, eq=False)
class IDLTriple:
    """A TRIP file of the original pipeline.

    Attributes
    ----------
    wavelength : Quantity (nord, nx)
        Fiber 1's wavelengths of the averaged model, nm (vacuum).
    header : astropy.io.fits.Header
        Primary header.
    path : str
    """

    wavelength: u.Quantity
    header: fits.Header
    path: str = ""

    @property
    def n_averaged(self) -> int:
        """NFRAVGD: DOUBLE files averaged."""
        return int(self.header.get("NFRAVGD", 1))

    @property
    def originals(self) -> list:
        """ORGNAMnn: the DOUBLE files averaged."""
        return [str(v) for k, v in self.header.items() if k.startswith("ORGNAM")]

    def fibcoefs(self, *, fiber0_sign=1):
        """The shift polynomials ((F00..F09), (F10..F19)) of fibers 0 and 2 (FIBCOE<j><c>), px.

        ``fiber0_sign=-1`` flips fiber 0's column: the original's three-fiber path (alternating
        0+1 and 1+2 DOUBLEs) wrote x_1 - x_0 there instead of x_0 - x_1 (idl-wavecal.md 10.4);
        the file does not record which path made it.
        """
        if fiber0_sign not in (1, -1):
            msg = f"fiber0_sign: expected 1 or -1, got {fiber0_sign!r}"
            raise InvalidParameterError(msg)
        cols = []
        for c in (0, 1):
            cols.append(tuple(float(_card(self.header, f"FIBCOE{j}{c}", self.path)) for j in range(_NFIB)))
        return (tuple(fiber0_sign * v for v in cols[0]), cols[1])

    def model(self, *, fiber0_sign=1, fiber_shift=None):
        """The TRIPLE's physical model (every optical constant from its header).

        Parameters
        ----------
        fiber0_sign : {1, -1}
            See :meth:`fibcoefs`.
        fiber_shift : {"exact", "quadratic"} or None
            See :class:`~nres.instrument.PhysicalModel` (default "exact").
        """
        from ..instrument import PhysicalModel

        h, p = self.header, self.path
        ncoefs = int(h.get("NCOEFS", _NCOEFS))
        params = dict(
            sinalp=float(_card(h, "SINALP", p)),
            fl=float(_card(h, "FL", p)),
            y0=float(_card(h, "Y0", p)),
            z0=float(_card(h, "Z0", p)),
            grspc=float(_card(h, "GRSPC", p)),
            glass=str(_card(h, "GLASS", p)).strip(),
            apex=float(_card(h, "APEX", p)),
            lamcen=float(_card(h, "LAMCEN", p)),
            rot=float(_card(h, "ROT", p)),
            pixsiz=float(_card(h, "PIXSIZ", p)),
            nx=int(_card(h, "NX", p)),
            ord0=int(_card(h, "ORD0", p)),
            nord=int(_card(h, "NORD", p)),
            coefs=tuple(float(_card(h, f"COEFS{k:02d}", p)) for k in range(ncoefs)),
            fibcoefs=self.fibcoefs(fiber0_sign=fiber0_sign),
            mjd=float(h["MJD"]) if "MJD" in h else None,
        )
        if fiber_shift is not None:
            params["fiber_shift"] = fiber_shift
        return PhysicalModel(**params)

    def unpack(self, base, *, physical=False, fiber_offsets=False, fiber0_sign=1):
        """``base`` with the TRIPLE's parts chosen explicitly (the original's ``trip_unpack``).

        The original's ``trp`` argument: 0/absent (production) = nothing replaced; 1 or 3 =
        ``physical=True, fiber_offsets=True``; 2 = ``fiber_offsets=True`` (idl-wavecal.md 10.7).

        Parameters
        ----------
        base : PhysicalModel
            The model to update (e.g. ``PhysicalModel.for_site(site, mjd=...)``).
        physical : bool
            Take sinalp, fl, y0, z0 and C0..C14 from the TRIPLE.
        fiber_offsets : bool
            Take F00..F19 from the TRIPLE.
        """
        import dataclasses

        trip = self.model(fiber0_sign=fiber0_sign)
        changes = {}
        if physical:
            changes.update(sinalp=trip.sinalp, fl=trip.fl, y0=trip.y0, z0=trip.z0, coefs=trip.coefs)
        if fiber_offsets:
            changes["fibcoefs"] = trip.fibcoefs
        return dataclasses.replace(base, **changes)


@dataclass(frozen=True, eq=False)
class IDLThar:
    """A THAR file of the original pipeline.

    Attributes
    ----------
    wavelength : Quantity (nfib, nord, nx)
        Every fiber's wavelengths, nm (vacuum); plane p is fiber p.
    header : astropy.io.fits.Header
        Primary header (fiber-1 SINALP..Z0, C00..C14, the star fiber's FIBC0..9).
    parameters : QTable
        Extension 1: ``fiber``, SINALP, FL, Y0, Z0 per fiber (0 = not fitted).
    coefs : ndarray (nfib, 15) float32
        Extension 2: each fiber's C00..C14 as IDL stored them.
    lines : QTable or None
        Extension 3: the last fitted fiber's matched lines (lower-case column names).
    path : str
    """

    wavelength: u.Quantity
    header: fits.Header
    parameters: QTable
    coefs: np.ndarray
    lines: QTable | None = None
    path: str = ""

    @property
    def fitted_fibers(self) -> tuple:
        """Fibers with a fitted solution (non-zero SINALP in extension 1)."""
        return tuple(
            int(f) for f, s in zip(self.parameters["fiber"], self.parameters["SINALP"], strict=True) if s
        )

    def model(self, *, base=None, star_fiber=None, exact_coefs=True):
        """The fiber-1 model of this THAR file (optics from ``base``).

        ``exact_coefs`` takes C00..C14 from extension 2 (IDL's float32 values, exact) instead of
        the header cards (rounded to ~6 digits; up to ~5e-6 nm at the order ends,
        idl-wavecal.md 16.7).
        """
        import dataclasses

        from ..instrument import PhysicalModel

        model = PhysicalModel.from_header(self.header, base=_base_model(base), star_fiber=star_fiber)
        if exact_coefs:
            model = dataclasses.replace(model, coefs=tuple(float(c) for c in self.coefs[1]))
        return model


def _open(path, what):
    try:
        return fits.open(path)
    except FileNotFoundError as err:
        raise InvalidInputFileError(path, "file not found") from err
    except OSError as err:
        raise InvalidInputFileError(
            path, f"not a FITS file ({err}); expected an nres-pipe {what} file"
        ) from err


def read_trip(path) -> IDLTriple:
    """Read a TRIP file (idl-wavecal.md 10.3).

    Returns
    -------
    IDLTriple

    Raises
    ------
    InvalidInputFileError
        Missing file, no (nord, nx) primary image, or missing keywords.
    """
    with _open(path, "TRIP") as hdul:
        data = hdul[0].data
        header = hdul[0].header.copy()
    if data is None or data.ndim != 2:
        raise InvalidInputFileError(path, "primary image must be fiber 1's wavelengths (nord, nx)")
    nord, nx = int(_card(header, "NORD", path)), int(_card(header, "NX", path))
    if data.shape != (nord, nx):
        raise InvalidInputFileError(path, f"primary image is {data.shape}; NORD, NX say {(nord, nx)}")
    return IDLTriple(wavelength=np.array(data, dtype=np.float64) * u.nm, header=header, path=str(path))


def _lower(table):
    out = QTable(table)
    for name in list(out.colnames):
        out.rename_column(name, name.lower())
    return out


def read_thar(path) -> IDLThar:
    """Read a THAR file (idl-wavecal.md 9.3).

    Returns
    -------
    IDLThar

    Raises
    ------
    InvalidInputFileError
        Missing file, wrong primary shape, or missing extensions/columns.
    """
    with _open(path, "THAR") as hdul:
        if len(hdul) < 3:
            raise InvalidInputFileError(
                path, f"{len(hdul)} HDUs; a THAR file has the primary and extensions 1-3"
            )
        data = hdul[0].data
        header = hdul[0].header.copy()
        if data is None or data.ndim != 3:
            raise InvalidInputFileError(
                path, "primary image must be every fiber's wavelengths (nfib, nord, nx)"
            )
        nfib = data.shape[0]
        ext1 = Table.read(hdul[1])
        ext2 = Table.read(hdul[2])
        ext3 = Table.read(hdul[3]) if len(hdul) > 3 else None
    params = QTable()
    params["fiber"] = np.arange(len(ext1))
    for key in ("SINALP", "FL", "Y0", "Z0"):
        col = next((c for c in ext1.colnames if c.upper() == key), None)
        if col is None:
            raise InvalidInputFileError(path, f"extension 1 lacks column {key}")
        params[key] = np.asarray(ext1[col], dtype=np.float64)
    names = {c.upper(): c for c in ext2.colnames}
    missing = [f"C{k:02d}" for k in range(_NCOEFS) if f"C{k:02d}" not in names]
    if missing:
        raise InvalidInputFileError(path, f"extension 2 lacks column(s) {missing}")
    coefs = np.stack([np.asarray(ext2[names[f"C{k:02d}"]], dtype=np.float32) for k in range(_NCOEFS)], axis=1)
    if len(params) != nfib or coefs.shape[0] != nfib:
        raise InvalidInputFileError(
            path, f"extensions 1-2 have {len(params)}/{coefs.shape[0]} rows; expected {nfib}"
        )
    return IDLThar(
        wavelength=np.array(data, dtype=np.float64) * u.nm,
        header=header,
        parameters=params,
        coefs=coefs,
        lines=None if ext3 is None else _lower(ext3),
        path=str(path),
    )


def read_e91_wavelengths(path):
    """The archived wavelengths of an e91 product: (header, WAVESPEC, WAVETHAR).

    Returns
    -------
    header : astropy.io.fits.Header
        Primary header (SINALP.., C00..C14, FIBC0..9, OBJECTS, SITEID, MJD-OBS).
    wavespec, wavethar : Quantity (nord, nx)
        The star fiber's and fiber 1's wavelengths, nm.

    Raises
    ------
    InvalidInputFileError
        Missing file or no WAVESPEC/WAVETHAR extension.
    """
    with _open(path, "e91") as hdul:
        names = [h.name for h in hdul]
        for ext in ("WAVESPEC", "WAVETHAR"):
            if ext not in names:
                raise InvalidInputFileError(path, f"no {ext} extension (an nres-pipe e91 product has one)")
        header = hdul[0].header.copy()
        spec = np.array(hdul["WAVESPEC"].data, dtype=np.float64) * u.nm
        thar = np.array(hdul["WAVETHAR"].data, dtype=np.float64) * u.nm
    return header, spec, thar


def _base_model(base):
    if base is None or isinstance(base, IDLTriple):
        return base.model() if isinstance(base, IDLTriple) else None
    from ..instrument import PhysicalModel

    if not isinstance(base, PhysicalModel):
        msg = f"base: expected a PhysicalModel, an IDLTriple or None, got {type(base).__name__}"
        raise InvalidParameterError(msg)
    return base


def _star_fiber(header, star_fiber):
    if star_fiber is not None:
        return int(star_fiber)
    words = str(header.get("OBJECTS", "")).split("&")
    return 2 if words and words[0].strip().lower() == "none" else 0


def recompute_idl_wavelengths(header, *, base=None, thar=None, star_fiber=None, x=None):
    """Recompute an archived product's wavelength grids from its header with nres's physical model.

    Parameters
    ----------
    header : mapping
        An e91 (or THAR) primary header: SINALP, FL, Y0, Z0, C00..C14, FIBC0..9.
    base : PhysicalModel, IDLTriple or None
        Source of the optics the header lacks (grating, prism, pixel size, the other star fiber's
        shift): a model, a TRIP file (its header carries them all) or, by default, the packaged
        spectrographs.csv row of the header's SITEID at MJD-OBS.
    thar : IDLThar or None
        If given, C00..C14 come from its extension 2 (exact float32 values) instead of the
        header's rounded cards (idl-wavecal.md 16.7: 1e-6 nm instead of ~5e-6 nm).
    star_fiber : {0, 2} or None
        The fiber of WAVESPEC (default from OBJECTS: 2 if the first object is 'none').
    x : array_like or None
        Full-detector columns to evaluate (default all ``nx``).

    Returns
    -------
    dict
        ``{"WAVESPEC": Quantity (nord, n_x), "WAVETHAR": Quantity (nord, n_x), "star_fiber": int,
        "model": PhysicalModel}``.
    """
    import dataclasses

    from ..instrument import PhysicalModel

    fiber = _star_fiber(header, star_fiber)
    model = PhysicalModel.from_header(header, base=_base_model(base), star_fiber=fiber)
    if thar is not None:
        if not isinstance(thar, IDLThar):
            msg = f"thar: expected an IDLThar (read_thar), got {type(thar).__name__}"
            raise InvalidParameterError(msg)
        model = dataclasses.replace(model, coefs=tuple(float(c) for c in thar.coefs[1]))
    cols = np.arange(model.nx, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    orders = model.orders[:, None]
    return {
        "WAVESPEC": model.wavelength(cols[None, :], orders, fiber),
        "WAVETHAR": model.wavelength(cols[None, :], orders, 1),
        "star_fiber": fiber,
        "model": model,
    }


def compare_idl_wavelengths(header, wavespec, wavethar, *, base=None, thar=None, star_fiber=None, x=None):
    """Per-order differences between archived IDL wavelengths and nres's recomputation.

    Parameters
    ----------
    header : mapping
        The product's primary header.
    wavespec, wavethar : Quantity or array (nord, n_x)
        The archived star-fiber and fiber-1 wavelengths (nm if plain arrays), e.g. from
        :func:`read_e91_wavelengths`.
    base, thar, star_fiber : see :func:`recompute_idl_wavelengths`.
    x : array_like or None
        The columns of ``wavespec``/``wavethar`` (default all ``nx``).

    Returns
    -------
    QTable
        One row per fiber and order: ``fiber``, ``order``, ``max_abs`` and ``rms`` of
        nres - archived (nm).
    """
    new = recompute_idl_wavelengths(header, base=base, thar=thar, star_fiber=star_fiber, x=x)
    model = new["model"]
    rows = {k: [] for k in ("fiber", "order", "max_abs", "rms")}
    for key, fiber, old in (("WAVESPEC", new["star_fiber"], wavespec), ("WAVETHAR", 1, wavethar)):
        old = u.Quantity(old, u.nm).to_value(u.nm)
        ref = new[key].to_value(u.nm)
        if old.shape != ref.shape:
            msg = f"{key.lower()}: shape {old.shape}; expected {ref.shape} (nord, columns)"
            raise InvalidParameterError(msg)
        diff = ref - old
        for j, m in enumerate(model.orders):
            rows["fiber"].append(fiber)
            rows["order"].append(int(m))
            rows["max_abs"].append(float(np.max(np.abs(diff[j]))))
            rows["rms"].append(float(np.sqrt(np.mean(diff[j] ** 2))))
    table = QTable(rows)
    table["max_abs"] = table["max_abs"] * u.nm
    table["rms"] = table["rms"] * u.nm
    return table

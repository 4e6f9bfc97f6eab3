"""``WavelengthSolution``: physical model + smooth correction per fiber, with covariance, lines and QC.

lambda(x, m, f) = model.wavelength(x - x_shift, m, f) + (1/m) sum_jk a_fjk P_j(u) P_k(v)

with u = (x - 2047.5) / 2047.5, v = (m - 85) / 33 and Legendre polynomials P. ``model`` is the
fitted physical model (fiber 1 parameters; fibers 0/2 follow by its shift polynomial), the
correction coefficients ``a`` belong to each fitted fiber; a fiber that was not fitted uses fiber
1's correction (or the first fitted fiber's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from numpy.polynomial import legendre as L

from ..doppler import C_M_S
from ..errors import InvalidInputFileError, InvalidParameterError

__all__ = [
    "WavelengthSolution",
    "correction_basis",
    "legendre_basis",
    "idl_basis",
    "IDL_TERMS",
    "X_CENTRE",
    "ORDER_CENTRE",
    "ORDER_HALF",
    "MIN_EDGE_LINES",
]

X_CENTRE = 2047.5
ORDER_CENTRE = 85.0
ORDER_HALF = 33.0
#: Used lines an order needs to bound a fiber's calibrated range: orders beyond the outermost
#: orders with this many lines of their own are extrapolations of the correction
#: (:meth:`WavelengthSolution.calibrated_orders`; :func:`~nres.wavecal.apply_solution` flags them).
MIN_EDGE_LINES = 3


def legendre_basis(x, order, x_degree, order_degree):
    """Design matrix (n, (x_degree + 1)(order_degree + 1)) of P_j(u) P_k(v), j-major.

    ``u = (x - 2047.5) / 2047.5`` (x: full-detector px), ``v = (m - 85) / 33`` (m: physical order).
    The basis of the fiber offsets and the drift; :func:`correction_basis` divides it by m.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    m = np.asarray(order, dtype=np.float64).ravel()
    px = L.legvander((x - X_CENTRE) / X_CENTRE, x_degree)
    po = L.legvander((m - ORDER_CENTRE) / ORDER_HALF, order_degree)
    return (px[:, :, None] * po[:, None, :]).reshape(x.size, -1)


def correction_basis(x, order, x_degree, order_degree):
    """Design matrix (n, (x_degree + 1)(order_degree + 1)) of P_j(u) P_k(v) / m, j-major.

    The wavelength correction's basis: :func:`legendre_basis` divided by the physical order m.
    """
    m = np.asarray(order, dtype=np.float64).ravel()
    return legendre_basis(x, order, x_degree, order_degree) / m[:, None]


#: The original's C0..C14 terms as (x degree, order degree) of P_a(ux) P_b(uo) (idl-wavecal.md 3.7).
IDL_TERMS = (
    (0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0),
    (2, 1), (3, 0), (0, 4), (1, 3), (2, 2), (3, 1), (4, 0),
)  # fmt: skip


def idl_basis(x, order, *, nx=4096, nord=67, ord0=52):
    """Design matrix (n, 15) of the original's C0..C14 correction (nm per unit coefficient).

    ``ux = 2 (x - nx/2) / nx`` and ``uo = 2 (m - ord0 - nord/2) / nord`` (nord/2 = 33.5, as the
    original); no 1/m factor.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    m = np.asarray(order, dtype=np.float64).ravel()
    px = L.legvander(2.0 * (x - nx / 2.0) / nx, 4)
    po = L.legvander(2.0 * (m - ord0 - nord / 2.0) / nord, 4)
    return np.stack([px[:, a] * po[:, b] for a, b in IDL_TERMS], axis=1)


def _basis(kind, x, order, x_degree, order_degree):
    if kind == "idl":
        return idl_basis(x, order)
    return correction_basis(x, order, x_degree, order_degree)


@dataclass(frozen=True, eq=False)
class WavelengthSolution:
    """A fitted ThAr wavelength solution (vacuum, topocentric nm).

    Attributes
    ----------
    model : PhysicalModel
        Physical model after the fit of (sinalp, fl, y0[, z0]).
    fibers : tuple of int
        Fibers with a fitted correction.
    coefficients : ndarray (n_fiber, x_degree + 1, order_degree + 1)
        Correction coefficients a_fjk, nm (times m); with ``correction="idl"`` shape (n_fiber, 15,
        1): increments of the original's C0..C14 (nm).
    covariance : ndarray (n_fiber, p, p)
        Covariance of the flattened coefficients from the line-centre errors (not rescaled).
    order_shift : int
        True order = the arc spectrum's order label + order_shift.
    x_shift : float
        Global start offset found by cross-correlation (px); kept 0 in the model evaluation when
        the physical fit absorbed it (see ``qc``).
    lines : QTable
        Matched lines: fiber, order, x, x_err, wavelength (list), fit (solution), residual (nm and
        m/s), used (not clipped).
    qc : dict
        Scalars: n_found, n_matched, n_used, rms_nm, rms_m_s, chi2_dof, noise_floor_m_s,
        condition_number, x_degree, order_degree, iterations, start shifts; ``per_order`` QTable.
    correction : str
        "legendre" (default) or "idl" (the original's C0..C14 basis, :func:`idl_basis`).
    """

    model: object
    fibers: tuple
    coefficients: np.ndarray
    covariance: np.ndarray
    order_shift: int = 0
    x_shift: float = 0.0
    lines: QTable | None = None
    qc: dict = field(default_factory=dict)
    per_order: QTable | None = None
    correction: str = "legendre"

    @property
    def x_degree(self) -> int:
        return self.coefficients.shape[1] - 1

    @property
    def order_degree(self) -> int:
        return self.coefficients.shape[2] - 1

    def _fiber_slot(self, fiber):
        fibers = list(self.fibers)
        if fiber in fibers:
            return fibers.index(fiber)
        return fibers.index(1) if 1 in fibers else 0

    def _evaluate(self, x, order, fiber):
        x, order, fiber = np.broadcast_arrays(
            np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64), np.asarray(fiber)
        )
        out = self.model.wavelength(x - self.x_shift, order, fiber).to_value(u.nm)
        corr = np.zeros(x.shape)
        for f in np.unique(fiber):
            sel = fiber == f
            basis = _basis(self.correction, x[sel], order[sel], self.x_degree, self.order_degree)
            corr[sel] = basis @ self.coefficients[self._fiber_slot(int(f))].ravel()
        return out + corr

    def wavelength(self, x, order, fiber=1):
        """Wavelength (Quantity nm, vacuum, topocentric) at full-detector x, physical order, fiber."""
        return self._evaluate(x, order, fiber) * u.nm

    def wavelength_error(self, x, order, fiber=1):
        """Standard error of :meth:`wavelength` from the correction's covariance, Quantity nm."""
        x, order, fiber = np.broadcast_arrays(
            np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64), np.asarray(fiber)
        )
        out = np.empty(x.shape)
        for f in np.unique(fiber):
            sel = fiber == f
            basis = _basis(self.correction, x[sel], order[sel], self.x_degree, self.order_degree)
            cov = self.covariance[self._fiber_slot(int(f))]
            out[sel] = np.sqrt(np.einsum("ij,jk,ik->i", basis, cov, basis))
        return out * u.nm

    def velocity_error(self, x, order, fiber=1):
        """:meth:`wavelength_error` as a velocity, Quantity m/s."""
        return (
            (self.wavelength_error(x, order, fiber) / self.wavelength(x, order, fiber)).value
            * C_M_S
            * (u.m / u.s)
        )

    def mean_velocity_error(self, x, orders, fiber=1):
        """Standard error of each order's mean wavelength over the columns ``x``, as a velocity.

        The error an RV measured over those columns inherits as its zero point: the correction's
        covariance propagated to ``mean_x (delta lambda / lambda)``, which is smaller than the
        pointwise errors when they are anticorrelated along the order.

        Parameters
        ----------
        x : array_like (n,)
            Full-detector columns.
        orders : array_like of int (k,)
            Physical orders.
        fiber : int

        Returns
        -------
        Quantity (k,), m/s
        """
        x = np.asarray(x, dtype=np.float64).ravel()
        orders = np.atleast_1d(np.asarray(orders, dtype=np.int64))
        cov = self.covariance[self._fiber_slot(int(fiber))]
        out = np.empty(orders.size)
        for k, m in enumerate(orders):
            mm = np.full(x.size, m)
            lam = self._evaluate(x, mm, np.full(x.size, int(fiber)))
            mean_row = np.mean(
                _basis(self.correction, x, mm, self.x_degree, self.order_degree) / lam[:, None], axis=0
            )
            out[k] = np.sqrt(max(float(mean_row @ cov @ mean_row), 0.0)) * C_M_S
        return out * (u.m / u.s)

    def calibrated_orders(self, fiber=1):
        """(lowest, highest) physical order the correction of ``fiber`` interpolates, or None.

        The outermost orders with at least :data:`MIN_EDGE_LINES` used lines of the fiber (of
        the fiber whose correction it borrows, see :meth:`wavelength`); between them the
        two-dimensional correction is constrained on both sides, beyond them it is extrapolated
        along the order axis. None when the solution carries no matched lines to judge by.
        """
        if self.lines is None or len(self.lines) == 0 or "used" not in self.lines.colnames:
            return None
        owner = int(fiber) if int(fiber) in self.fibers else self.fibers[self._fiber_slot(int(fiber))]
        lf = np.asarray(self.lines["fiber"])
        lo = np.asarray(self.lines["order"])
        used = np.asarray(self.lines["used"], dtype=bool)
        orders, counts = np.unique(lo[used & (lf == owner)], return_counts=True)
        enough = orders[counts >= MIN_EDGE_LINES]
        if enough.size == 0:
            return (1, 0)  # an empty range: nothing is calibrated
        return int(enough.min()), int(enough.max())

    def fiber_offset(self, x, order, fiber, *, reference=1):
        """Pixel offset ``dx = x_fiber - x_reference`` of the same wavelength (px).

        ``wavelength(x, order, fiber) == wavelength(x - dx, order, reference)``; the original's
        fiber-shift convention (idl-wavecal.md 3.8), here derived from the two fibers' solutions.
        """
        x, order = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(order, dtype=np.int64))
        target = self._evaluate(x, order, fiber)
        x1 = x.copy()
        h = 0.5
        for _ in range(6):  # Newton on a smooth, nearly linear map: converges to 1e-9 px in 3-4 steps
            lam = self._evaluate(x1, order, reference)
            slope = (self._evaluate(x1 + h, order, reference) - self._evaluate(x1 - h, order, reference)) / (
                2 * h
            )
            x1 = x1 - (lam - target) / slope
        return x - x1

    # ----- FITS -------------------------------------------------------------------------------
    def to_hdulist(self) -> fits.HDUList:
        """Primary (model parameters and scalars), COEFFS, COVAR, LINES and PER_ORDER extensions."""
        hdr = fits.Header()
        hdr["NRESTYPE"] = ("WAVESOL", "nres wavelength solution")
        params = {f.name: getattr(self.model, f.name) for f in fields(self.model) if f.init}
        hdr["HIERARCH NRES MODEL"] = json.dumps(params)
        hdr["HIERARCH NRES QC"] = json.dumps({k: v for k, v in self.qc.items() if np.isscalar(v)})
        hdr["FIBERS"] = ",".join(str(f) for f in self.fibers)
        hdr["ORDSHIFT"] = int(self.order_shift)
        hdr["XSHIFT"] = float(self.x_shift)
        hdr["CORRECTN"] = self.correction
        hdus = [fits.PrimaryHDU(header=hdr)]
        hdus.append(fits.ImageHDU(np.asarray(self.coefficients, dtype=np.float64), name="COEFFS"))
        hdus.append(fits.ImageHDU(np.asarray(self.covariance, dtype=np.float64), name="COVAR"))
        if self.lines is not None:
            hdus.append(fits.table_to_hdu(Table(self.lines)))
            hdus[-1].name = "LINES"
        if self.per_order is not None:
            hdus.append(fits.table_to_hdu(Table(self.per_order)))
            hdus[-1].name = "PER_ORDER"
        return fits.HDUList(hdus)

    def write(self, path, *, overwrite=False) -> None:
        """Write the solution to a FITS file."""
        self.to_hdulist().writeto(path, overwrite=overwrite)

    @classmethod
    def read(cls, path) -> WavelengthSolution:
        """Read a solution written by :meth:`write`.

        Raises
        ------
        InvalidInputFileError
            Missing file or not an nres wavelength solution.
        """
        from ..instrument import PhysicalModel

        try:
            with fits.open(path) as hdul:
                hdr = hdul[0].header
                if hdr.get("NRESTYPE") != "WAVESOL":
                    raise InvalidInputFileError(path, "not an nres wavelength solution (NRESTYPE != WAVESOL)")
                params = json.loads(hdr["HIERARCH NRES MODEL"])
                params["coefs"] = tuple(params["coefs"])
                params["fibcoefs"] = tuple(tuple(r) for r in params["fibcoefs"])
                names = [h.name for h in hdul]
                lines = QTable(Table.read(hdul["LINES"])) if "LINES" in names else None
                per = QTable(Table.read(hdul["PER_ORDER"])) if "PER_ORDER" in names else None
                return cls(
                    model=PhysicalModel(**params),
                    fibers=tuple(int(f) for f in str(hdr["FIBERS"]).split(",")),
                    coefficients=np.array(hdul["COEFFS"].data, dtype=np.float64),
                    covariance=np.array(hdul["COVAR"].data, dtype=np.float64),
                    order_shift=int(hdr["ORDSHIFT"]),
                    x_shift=float(hdr["XSHIFT"]),
                    lines=lines,
                    qc=json.loads(hdr["HIERARCH NRES QC"]),
                    per_order=per,
                    correction=str(hdr["CORRECTN"]),
                )
        except FileNotFoundError as err:
            raise InvalidInputFileError(path, "file not found") from err
        except (KeyError, ValueError, OSError) as err:
            if isinstance(err, InvalidInputFileError):
                raise
            raise InvalidInputFileError(path, f"not a readable nres wavelength solution ({err})") from err

    def __post_init__(self):
        coef = np.asarray(self.coefficients, dtype=np.float64)
        if coef.ndim != 3 or coef.shape[0] != len(self.fibers):
            msg = f"WavelengthSolution: coefficients must be (n_fiber, nx+1, no+1), got {coef.shape}"
            raise InvalidParameterError(msg)
        object.__setattr__(self, "coefficients", coef)

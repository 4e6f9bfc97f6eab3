"""1-D source models of the simulator: blaze, tungsten SED, stellar and ThAr spectra per pixel."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["blaze_function", "tungsten_sed", "pixel_edges", "line_brightness"]

#: Colour temperature (K) of the simulated tungsten flat lamp.
TUNGSTEN_K = 3000.0


def blaze_function(wavelength_nm, order, center_nm):
    """Echelle blaze ``sinc^2(m (1 - lambda_c / lambda))`` (peak 1 at ``lambda_c``).

    Parameters
    ----------
    wavelength_nm : ndarray, shape (..., n)
    order : int or ndarray broadcasting to ``wavelength_nm``
        Physical order m.
    center_nm : float or ndarray broadcasting to ``wavelength_nm``
        Blaze wavelength of the order.
    """
    return np.sinc(np.asarray(order) * (1.0 - np.asarray(center_nm) / np.asarray(wavelength_nm))) ** 2


def tungsten_sed(wavelength_nm):
    """Relative photon SED of a 3000 K tungsten lamp, normalised to 1 at 700 nm."""
    lam = np.asarray(wavelength_nm, dtype=float) * 1e-9
    hc_k = 6.62607015e-34 * 299792458.0 / 1.380649e-23

    # photon counts ~ lambda^-4 / (exp(hc / lambda k T) - 1)
    def planck(lam_m):
        return lam_m**-4 / np.expm1(hc_k / (lam_m * TUNGSTEN_K))

    return planck(lam) / planck(700e-9)


def pixel_edges(centres):
    """Edges (..., n + 1) of pixels from their centre values (..., n): midpoints, ends extrapolated."""
    c = np.asarray(centres, dtype=float)
    mid = 0.5 * (c[..., 1:] + c[..., :-1])
    first = c[..., :1] - (mid[..., :1] - c[..., :1])
    last = c[..., -1:] + (c[..., -1:] - mid[..., -1:])
    return np.concatenate([first, mid, last], axis=-1)


def line_brightness(line_list):
    """Relative brightness of every line of a ThAr list: ``intensity / (99.8th percentile)``.

    Lines without a positive intensity get 0 (not rendered).

    Parameters
    ----------
    line_list : QTable
        With an ``intensity`` column (NaN = unknown).

    Returns
    -------
    ndarray, shape (n_lines,)

    Raises
    ------
    InvalidParameterError
        No line has a positive intensity (e.g. the ESO atlas, which lists none): nothing could
        be rendered, so the simulator refuses instead of making a frame without lines.
    """
    bright = np.nan_to_num(np.asarray(line_list["intensity"], dtype=float), nan=0.0)
    positive = bright[bright > 0]
    if positive.size == 0:
        msg = (
            "line_list: no line has a positive 'intensity', so no ThAr line can be rendered "
            "(the ESO atlas lists none; use thar_lines('redman') or add intensities)"
        )
        raise InvalidParameterError(msg)
    return np.where(bright > 0, bright, 0.0) / np.percentile(positive, 99.8)

"""measure_profiles: the oversampled, normalised cross-dispersion profile of noiseless flats."""

import numpy as np
import pytest
from scipy.special import erf

from nres.errors import InvalidParameterError
from nres.extract import Profiles, measure_profiles

from ._extract_synth import make_traces, render, sigma_of, to_frame

NX, X0, NY = 768, 1600, 160


@pytest.fixture(scope="module")
def flat_and_traces():
    tr = make_traces(n_orders=3, tilt=40.0)
    flux = np.full((len(tr), NX), 3.0e4)
    return to_frame(render(tr, flux, shape=(NY, NX), x0=X0), read_noise=5.0, x0=X0), tr


def pixel_gauss(d, s):
    """Fraction of a unit-flux Gaussian (sigma s) in a pixel centred d px from its centre."""
    return 0.5 * (erf((d + 0.5) / (np.sqrt(2) * s)) - erf((d - 0.5) / (np.sqrt(2) * s)))


def test_profile_matches_pixel_integrated_gaussian(flat_and_traces):
    flat, tr = flat_and_traces
    prof = measure_profiles(flat, tr, n_blocks=6)
    assert isinstance(prof, Profiles)
    assert prof.data.shape == (2, 3, 6, prof.dy.size)
    step = prof.dy[1] - prof.dy[0]
    # normalised over its full extent
    np.testing.assert_allclose(prof.data.sum(axis=-1) * step, 1.0, rtol=1e-12)
    for b in range(prof.block_x.size):
        # a block averages a profile whose sigma varies quadratically along x: compare with the mean
        # of the analytic profile over the block's columns; 3e-4 of the peak covers the spline and the
        # binning (both O(1e-5) here) and the truncation of the Gaussian at half_extent
        xs = np.arange(NX)[int(b * NX / 6) : int((b + 1) * NX / 6)] + X0
        truth = np.mean([pixel_gauss(prof.dy, s) for s in sigma_of(xs)], axis=0)
        truth /= truth.sum() * step
        for fi in range(2):
            for oi in range(3):
                err = np.abs(prof.data[fi, oi, b] - truth).max() / truth.max()
                assert err < 3e-4, (b, fi, oi, err)
    assert prof.block_x[-1] == pytest.approx(X0 + NX - NX / 12 - 0.5, abs=0.6)


def test_profile_anchor_idl_uses_left_edges(flat_and_traces):
    flat, tr = flat_and_traces
    prof = measure_profiles(flat, tr, n_blocks=4, profile_anchor="idl")
    assert prof.interpolation == "idl_rebin"
    left = prof.block_x - 0.5 * (prof.block_width - 1)
    k, f = prof.block_weights(left[1:3])
    np.testing.assert_array_equal(k, [1, 2])
    np.testing.assert_allclose(f, 0.0, atol=1e-12)
    assert prof.block_weights(X0 + NX - 1)[1][0] == pytest.approx(1.0)  # last block held
    legacy = measure_profiles(flat, tr, n_blocks=4, legacy=True)
    assert legacy.interpolation == "idl_rebin"
    assert measure_profiles(flat, tr, n_blocks=4).interpolation == "linear"


def test_for_traces_order_and_missing(flat_and_traces):
    flat, tr = flat_and_traces
    prof = measure_profiles(flat, tr.select(fibers=[0]), n_blocks=2)
    arr = prof.for_traces(tr)
    assert arr.shape == (len(tr), 2, prof.dy.size)
    fib1 = tr.fibers == 1
    assert np.all(arr[fib1] == 0)
    assert np.all(arr[~fib1].sum(axis=-1) > 0)


@pytest.mark.parametrize(
    ("kw", "err"),
    [
        ({"n_blocks": 0}, InvalidParameterError),
        ({"step": 0.5, "knot_spacing": 0.25}, InvalidParameterError),
        ({"half_extent": 0.5}, InvalidParameterError),
        ({"profile_anchor": "left"}, InvalidParameterError),
    ],
)
def test_bad_parameters(flat_and_traces, kw, err):
    flat, tr = flat_and_traces
    with pytest.raises(err):
        measure_profiles(flat, tr, **kw)


def test_not_an_image_is_refused(flat_and_traces):
    _, tr = flat_and_traces
    with pytest.raises(InvalidParameterError, match="flat"):
        measure_profiles(np.zeros(5), tr)

"""``SimConfig``: the knobs of the frame simulator, gathered in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SimConfig", "SITE_INSTRUMENTS", "DEFAULT_EXPTIME"]

#: site -> (TELESCOP spectrograph id, INSTRUME camera) of the simulated frames.
SITE_INSTRUMENTS = {"lsc": ("nres01", "fa09"), "elp": ("nres02", "fa17"), "cpt": ("nres03", "fa13")}

#: Default exposure time (s) per OBSTYPE; source levels below are for these times.
DEFAULT_EXPTIME = {"BIAS": 0.0, "DARK": 900.0, "LAMPFLAT": 60.0, "DOUBLE": 120.0, "TARGET": 600.0}


@dataclass(frozen=True)
class SimConfig:
    """Physical and detector parameters of a simulated frame (defaults are NRES-like).

    Geometry (px unless stated): ``trace_shift`` moves every trace in y, ``trace_rotation`` (rad)
    and ``trace_scale`` rotate and scale the reference trace table about the detector centre, so
    a tracer cannot pass by returning the table. The cross-dispersion profile is a split normal
    of sigma ``profile_sigma`` (varying by ``profile_sigma_variation`` quadratically along the
    order and with order), asymmetry ``profile_asymmetry`` (sigma (1 -/+ a) below/above the
    mode), plus a Gaussian wing of weight ``wing_fraction`` and sigma ``wing_sigma``; it is
    deposited over ``profile_half`` rows each side. ThAr lines have Gaussian sigma ``lsf_sigma``
    along x. The true wavelength at column x is the physical model's at ``x - dx`` with a cubic
    field distortion ``distortion`` and lateral colour ``lateral_colour`` (px) outside the model's
    family. Scattered light is ``scattered_fraction`` (min, max) of the smoothed local flux.

    Sources (electrons summed across the profile per column at the blaze peak, for the default
    exposure time of the OBSTYPE; scaled linearly with exptime): ``flat_level``, ``star_level``;
    ThAr lines get ``thar_level`` times their relative brightness over the 99.8th percentile of
    the list, so the brightest lines saturate and bleed.

    Detector: ``camera`` (default from the site), ``gain`` (e-/ADU) and ``read_noise`` (e-)
    default to ``nres.instrument.camera_info(camera)``; ``bias_level`` (ADU), ``dark_current``
    (e-/s/px), ``saturate`` and ``maxlin`` (ADU, header SATURATE/MAXLIN; above MAXLIN the response
    loses up to ``nonlinearity`` of the excess at saturation), ``cosmic_rate`` (events per cm2
    per minute on 15 um pixels), ``n_bad_columns``, ``n_hot_pixels``; ``n_meter_samples``
    exposure-meter samples.

    ``star_integration``: "moments" (default) renders the star once at the flux-weighted mean
    Doppler factor, broadened by its rms over the exposure (error < 2e-5 m/s, see
    :func:`~nres.sim.doppler.mean_doppler_factor`); "samples" averages one spectrum per
    exposure-meter sample (``n_meter_samples`` times slower).
    """

    trace_shift: float = 1.3
    trace_rotation: float = 3.0e-4
    trace_scale: float = 1.0004
    profile_sigma: float = 1.6
    profile_sigma_variation: float = 0.08
    profile_asymmetry: float = 0.05
    wing_fraction: float = 0.03
    wing_sigma: float = 5.0
    profile_half: float = 30.0
    lsf_sigma: float = 1.1
    distortion: float = 0.12
    lateral_colour: float = 0.08
    scattered_fraction: tuple = (0.01, 0.03)
    flat_level: float = 3.0e5
    star_level: float = 1.0e5
    thar_level: float = 4.0e6
    camera: str | None = None
    gain: float | None = None
    read_noise: float | None = None
    bias_level: float = 1000.0
    dark_current: float = 0.002
    saturate: float = 47500.0
    maxlin: float = 40000.0
    nonlinearity: float = 0.05
    cosmic_rate: float = 2.0
    n_bad_columns: int = 6
    n_hot_pixels: int = 200
    n_meter_samples: int = 10
    star_integration: str = "moments"

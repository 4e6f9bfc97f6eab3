"""``nres make-zero``: build a ZERO template from extracted spectra of one star and write it.

``nres make-zero SPECTRA... --out ZERO.fits [--fiber F] [--star NAME] [--rv KM_S]`` reads every
extracted spectrum (:meth:`nres.spectrum.EchelleSpectrum.read`), keeps those of the star (``--star``
compared with each header's ``OBJECT``, case and spaces ignored; default: the first file's OBJECT),
co-adds them in the star's rest frame with :func:`nres.rv.Template.from_spectra` (barycentric
corrections from the headers) and writes the original's ZERO layout with :func:`nres.rv.write_zero`.
"""

from __future__ import annotations

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    """Add this command's options to its argparse ``parser``."""
    parser.add_argument("spectra", nargs="+", metavar="SPECTRUM", help="extracted spectrum files (FITS)")
    parser.add_argument("--out", required=True, metavar="ZERO.fits", help="output ZERO file")
    parser.add_argument("--fiber", type=int, default=None, help="fiber id (default: the only non-ThAr fiber)")
    parser.add_argument("--star", default=None, help="OBJECT to use (default: the first file's OBJECT)")
    parser.add_argument(
        "--rv",
        type=float,
        default=None,
        help="catalogue RV in km/s: the ZERO's zero point (default: header RADVEL, else 0)",
    )
    parser.add_argument("--iterations", type=int, default=3, help="bootstrap iterations (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _name(value) -> str:
    return "".join(str(value).split()).lower()


def run(args) -> int:
    """Run the command with the parsed ``args``; returns the exit status (0 = success)."""
    from pathlib import Path

    import astropy.units as u

    from ..errors import InvalidParameterError
    from ..rv import Template, write_zero
    from ..spectrum import EchelleSpectrum

    if Path(args.out).exists() and not args.overwrite:
        msg = f"--out: {args.out} exists (use --overwrite to replace it)"
        raise InvalidParameterError(msg)
    spectra = [(path, EchelleSpectrum.read(path)) for path in args.spectra]
    star = args.star if args.star is not None else spectra[0][1].meta.get("OBJECT")
    if star is not None:
        spectra = [(p, s) for p, s in spectra if _name(s.meta.get("OBJECT", "")) == _name(star)]
    if not spectra:
        msg = f"--star: no spectrum among {list(args.spectra)} has OBJECT {star!r}"
        raise InvalidParameterError(msg)
    meta0 = spectra[0][1].meta
    rv_kms = args.rv if args.rv is not None else float(meta0.get("RADVEL", 0.0))
    zero = Template.from_spectra(
        [s for _, s in spectra], fiber=args.fiber, rv=rv_kms * u.km / u.s, iterations=args.iterations
    )
    header = {"NRESCMD": "make-zero"}
    for key in ("OBJECT", "SITEID", "INSTRUME", "TELESCOP", "RA", "DEC"):
        if key in meta0:
            header[key] = meta0[key]
    if star is not None:
        header["OBJECT"] = str(star)
    write_zero(zero, args.out, header=header, overwrite=args.overwrite)
    print(f"{args.out}: ZERO of {header.get('OBJECT', 'the star')} from {len(spectra)} spectra")
    return 0

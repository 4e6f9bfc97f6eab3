"""Exceptions and warnings of nres.

Every exception subclasses :class:`NRESError` *and* the builtin a user would naturally catch, so
``except OSError`` around a file read or ``except ValueError`` around a bad argument works
without knowing nres. Messages name the file or parameter and say what was expected.
"""

from __future__ import annotations

__all__ = [
    "NRESError",
    "InvalidInputFileError",
    "InvalidParameterError",
    "MissingCalibrationError",
    "FitError",
    "NRESWarning",
    "NRESLegacyWarning",
]


class NRESError(Exception):
    """Base class of every error raised on purpose by nres."""


class InvalidInputFileError(NRESError, OSError):
    """A file is missing, unreadable, or not what the caller said it is.

    The message names the file and the problem. ``.path`` holds the offending path.
    """

    def __init__(self, path, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):  # keep picklable across process pools
        return (type(self), (self.path, self.problem))


class InvalidParameterError(NRESError, ValueError):
    """An argument has the wrong value, shape, type or unit; the message names it."""


class MissingCalibrationError(NRESError, LookupError):
    """No calibration (master frame, model row, template...) is available for the request."""


class FitError(NRESError, RuntimeError):
    """A fit failed to converge or is too poorly constrained to trust."""


class NRESWarning(UserWarning):
    """Base class of nres warnings."""


class NRESLegacyWarning(NRESWarning):
    """A legacy (IDL-parity) option reproduces a known defect of the original pipeline."""

"""Named legacy options: the IDL pipeline's quirks, kept only for parity with archived output.

Each quirk of the original that changes numbers is one keyword of the function that has it, with
a corrected default and a legacy value (e.g. ``sinalp_precision="float64" | "float32"``). A
function may also take ``legacy=True`` as shorthand for all of its quirks at once. Every quirk is
registered here with :func:`register` (function, option, choices, default, legacy value, reference
section) and listed in ``docs/legacy.md``; a test checks that the two agree.

Functions resolve their options with :func:`resolve`::

    opts = resolve("PhysicalModel.for_site", legacy, row_selection=row_selection)
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidParameterError

__all__ = ["LegacyOption", "register", "resolve", "registry"]


@dataclass(frozen=True)
class LegacyOption:
    """One IDL quirk kept behind a named option."""

    function: str  #: public function (or method) that takes the option, e.g. "PhysicalModel.for_site"
    option: str  #: keyword name
    choices: tuple  #: allowed values
    default: object  #: corrected behaviour
    legacy: object  #: the original's behaviour
    reference: str  #: where the quirk is documented, e.g. "idl-wavecal.md 2"
    summary: str  #: one line: what the original did


_REGISTRY: dict[tuple[str, str], LegacyOption] = {}


def register(function, option, *, choices, default, legacy, reference, summary) -> LegacyOption:
    """Register one legacy option (idempotent for identical entries)."""
    entry = LegacyOption(function, option, tuple(choices), default, legacy, reference, summary)
    if default not in entry.choices or legacy not in entry.choices:
        msg = f"legacy option {function}({option}=...): default and legacy must be among choices"
        raise InvalidParameterError(msg)
    old = _REGISTRY.get((function, option))
    if old is not None and old != entry:
        msg = f"legacy option {function}({option}=...) registered twice with different values"
        raise InvalidParameterError(msg)
    _REGISTRY[(function, option)] = entry
    return entry


def registry() -> list[LegacyOption]:
    """All registered legacy options (import the subpackages first to register theirs)."""
    return sorted(_REGISTRY.values(), key=lambda e: (e.function, e.option))


def resolve(function: str, legacy: bool = False, **given) -> dict:
    """Resolve a function's legacy options.

    Parameters
    ----------
    function : str
        Registered function name.
    legacy : bool
        If True, options left at ``None`` take the original's behaviour; else the corrected default.
    **given
        The caller's values (``None`` = not given). Explicit values win over ``legacy``.

    Returns
    -------
    dict
        Option name -> resolved value, for every option registered for ``function``.

    Raises
    ------
    InvalidParameterError
        An option is not registered for ``function`` or its value is not among the choices.
    """
    entries = {e.option: e for e in _REGISTRY.values() if e.function == function}
    unknown = set(given) - set(entries)
    if unknown:
        msg = f"{function}: unknown legacy option(s) {sorted(unknown)}"
        raise InvalidParameterError(msg)
    out = {}
    for name, entry in entries.items():
        value = given.get(name)
        if value is None:
            value = entry.legacy if legacy else entry.default
        if value not in entry.choices:
            msg = (
                f"{function}: {name}={value!r} is not allowed; expected one of "
                f"{', '.join(repr(c) for c in entry.choices)}"
            )
            raise InvalidParameterError(msg)
        out[name] = value
    return out

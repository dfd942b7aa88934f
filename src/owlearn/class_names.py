"""The rules for a new class's name, in one place for the model, the command line and the web service.

No heavy imports (no FastAPI, no PyTorch): the command line checks a name before any model is loaded.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

UNKNOWN = "unknown"  # the answer for refused images (owlearn.model.UNKNOWN)
MAX_CLASS_NAME = 64  # characters, after the spaces at either end are removed
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}  # Unicode categories: control, format, line and paragraph separators


class ClassNameError(ValueError):
    """A name that cannot be given to a new class; the message says why."""


class ClassNameTaken(ClassNameError):
    """The model already knows a class of that name."""


def check_class_name(name: str, existing: Iterable[str] = (), *, in_url: bool = False) -> str:
    """``name`` without the spaces at either end, or :class:`ClassNameError` saying what is wrong with it.

    A class name must not be blank (it could not be shown), must not be ``unknown`` in any case (the answer
    for refused images: the two could not be told apart, nor from a look-alike of it), must have at most
    :data:`MAX_CLASS_NAME` characters and no invisible character (a line break, a zero-width space, a direction
    override), and must not be one of ``existing`` (raised as
    :class:`ClassNameTaken`). With ``in_url`` (the web service, which addresses a class by its name in a URL
    path) it must contain no slash or backslash either, and not be ``.`` or ``..``; elsewhere ``T-shirt/top``
    is a fine name.

    >>> check_class_name("  hat ", ["shirt"])
    'hat'
    """
    if not isinstance(name, str):
        raise ClassNameError(f"a class name must be text, got {type(name).__name__}")
    name = name.strip()
    if not name:
        raise ClassNameError("a class name cannot be blank")
    if len(name) > MAX_CLASS_NAME:
        raise ClassNameError(f"a class name can have at most {MAX_CLASS_NAME} characters, got {len(name)}")
    # control and format characters (line breaks, zero-width spaces, direction overrides) change how a name
    # looks, or hide part of it: "unknown" + a zero-width space would show as the refusal
    bad = sorted({ch for ch in name if unicodedata.category(ch) in _INVISIBLE or (in_url and ch in "/\\")})
    if bad:
        what = "slashes, backslashes or invisible characters" if in_url else "invisible characters"
        raise ClassNameError(f"a class name cannot contain {what} such as line breaks; {name!r} contains "
                             f"{', '.join(repr(ch) for ch in bad)}")
    if unicodedata.normalize("NFKC", name).casefold() == UNKNOWN:  # also its full-width or other look-alikes
        raise ClassNameError(f"{UNKNOWN!r} is the answer for refused images; choose another class name")
    if in_url and name in (".", ".."):  # a URL path drops these segments
        raise ClassNameError(f"{name!r} cannot name a class addressed in a URL path")
    if name in set(existing):
        raise ClassNameTaken(f"the model already knows a class named {name!r}")
    return name

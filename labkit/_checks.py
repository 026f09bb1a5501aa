"""Argument checks shared by the whole package, each as ``check(name, value, ...)``.

Every public function of labkit refuses bad input with a ``ValueError`` that names the argument
and shows what it got. These are the checks that recur; a check used by one module only stays in
that module. Integers exclude ``bool`` (``True`` is an ``int`` to Python, never a count to a
person) and accept NumPy integers; numbers exclude ``bool`` and must be finite.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["check_flag", "check_int", "check_nonneg", "check_positive", "integer"]


def integer(value: object) -> int | None:
    """``value`` as an int if it is an integer (a Python or NumPy int, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` as an int if it is one (and ``>= minimum``), else a ValueError naming ``name``."""
    v = integer(value)
    if v is None or (minimum is not None and v < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an int{bound}; got {value!r}")
    return v


def check_flag(name: str, value: object) -> bool:
    """``value`` as a bool if it is one (Python or NumPy), else a ValueError naming ``name``.

    ``bool("False")`` is True: a flag given as a string would silently mean the opposite.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_nonneg(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and >= 0, else raise a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and > 0, else raise a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0; got {value!r}")
    return v

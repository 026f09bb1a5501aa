"""The shared argument checks: what they accept, and that each refusal names the argument."""

from __future__ import annotations

import numpy as np
import pytest

from labkit._checks import check_flag, check_int, check_nonneg, check_positive, integer


def test_integer_takes_python_and_numpy_ints_but_not_bools_or_floats() -> None:
    assert integer(3) == 3 and integer(np.int64(-2)) == -2
    assert type(integer(np.int32(5))) is int
    for bad in (True, False, 2.0, "2", None, np.float64(1.0)):
        assert integer(bad) is None, bad


def test_check_int_names_the_argument_and_its_bound() -> None:
    assert check_int("m", 4, minimum=1) == 4 and check_int("seed", np.uint8(7)) == 7
    with pytest.raises(ValueError, match=r"^m must be an int >= 1; got 0$"):
        check_int("m", 0, minimum=1)
    with pytest.raises(ValueError, match=r"^round must be an int >= 0; got True$"):
        check_int("round", True, minimum=0)
    with pytest.raises(ValueError, match=r"^seed must be an int; got 1\.5$"):
        check_int("seed", 1.5)


def test_flags_and_numbers() -> None:
    assert check_flag("renormalize", np.bool_(True)) is True
    with pytest.raises(ValueError, match="renormalize must be True or False; got 'False'"):
        check_flag("renormalize", "False")
    assert check_nonneg("guidance", 0) == 0.0 and check_positive("lr", 1e-3) == 1e-3
    for bad in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="guidance must be a finite number >= 0"):
            check_nonneg("guidance", bad)
    for bad in (0.0, float("inf")):
        with pytest.raises(ValueError, match="lr must be finite and > 0"):
            check_positive("lr", bad)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        check_positive("lr", "1")  # type: ignore[arg-type]

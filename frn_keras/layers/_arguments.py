"""Checks of scalar constructor arguments shared by the frn_keras layers."""

import math
import numbers


def check_positive_float(name, value):
    """Returns `value` as a float; raises `ValueError` unless it is a finite
    real number > 0 (`bool` is rejected)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"Argument `{name}` must be a finite float > 0. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_bool(name, value):
    """Returns `value`; raises `ValueError` unless it is a `bool`."""
    if not isinstance(value, bool):
        raise ValueError(
            f"Argument `{name}` must be a bool. Received: {name}={value!r}"
        )
    return value

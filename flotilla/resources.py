"""Kubernetes resource quantities as integers, so that arithmetic on them is exact.

Every quantity is held in milli-units (Kubernetes' MilliValue): ``"150m"`` cpu is 150,
``"1"`` cpu is 1000, ``"64Mi"`` memory is 64 * 2**20 * 1000. Using one unit for every
resource keeps the scheduler's vectors uniform whatever resources the config names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_QUANTITY = re.compile(r"^([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")

ResourceList = dict[str, int]
"""Resource name to quantity in milli-units."""


class InvalidQuantity(ValueError):
    def __init__(self, value: object) -> None:
        super().__init__(f"invalid resource quantity {value!r}")
        self.value = value


def parse_quantity(value: str | int | float) -> int:
    """Parse a Kubernetes quantity (``"1.5"``, ``"150m"``, ``"4Gi"``, ``"1e3"``) to milli-units.

    Rounds up, as Kubernetes does, so a request never shrinks in translation.
    """
    if isinstance(value, bool):
        raise InvalidQuantity(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidQuantity(value)
        amount = Fraction(value)
    else:
        match = _QUANTITY.match(value.strip())
        if not match:
            raise InvalidQuantity(value)
        number, suffix = match.groups()
        amount = Fraction(number) * _SUFFIXES[suffix or ""]
    if amount < 0:
        raise InvalidQuantity(value)
    return math.ceil(amount * 1000)


def parse_resource_list(values: Mapping[str, str | int | float]) -> ResourceList:
    """Parse a pod spec's ``requests`` or ``limits`` mapping."""
    return {name: parse_quantity(quantity) for name, quantity in values.items()}


def format_quantity(milli: int) -> str:
    """The shortest plain form of a milli-unit quantity: ``1500`` -> ``"1500m"``, ``2000`` -> ``"2"``."""
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def add_into(target: dict[str, int], amounts: Mapping[str, int], sign: int = 1) -> None:
    """Add ``amounts`` to ``target`` in place (``sign=-1`` takes them away); absent means zero.

    The one resource addition: the scheduler's allocations, node free resources and the
    executors' capacity all go through it (a few per-job hot loops inline it, and say so).
    """
    for name, quantity in amounts.items():
        target[name] = target.get(name, 0) + sign * quantity


def add(a: Mapping[str, int], b: Mapping[str, int]) -> ResourceList:
    """``a + b`` as a new list."""
    out = dict(a)
    add_into(out, b)
    return out


def subtract(a: Mapping[str, int], b: Mapping[str, int]) -> ResourceList:
    """``a - b`` as a new list (may go negative)."""
    out = dict(a)
    add_into(out, b, -1)
    return out


def fits(request: Mapping[str, int], free: Mapping[str, int]) -> bool:
    """True when every requested quantity is available in ``free`` (absent means zero)."""
    return all(quantity <= free.get(name, 0) for name, quantity in request.items() if quantity > 0)

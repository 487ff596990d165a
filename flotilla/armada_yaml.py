"""Reading Armada's YAML files field by field: the simulator's cluster and workload files and the
scheduling config file (:mod:`flotilla.scheduling.config_file`) share these rules.

Keys are matched as Armada's config loader (viper) matches them: case-insensitively; an
underscore is ignored too, so ``node_templates`` means ``nodeTemplates``. Keys a reader does
not use are accepted and listed in :attr:`FieldReader.ignored`; a value of the wrong kind is
refused with an :class:`ArmadaFileError` naming the file, the field and the value.

Durations are Go durations (``"5m"``, ``"1h30m"``, ``"250ms"``, ``"0"``) or plain numbers
of seconds, and are held as float seconds. Resource quantities are Kubernetes quantities held
in milli-units, as everywhere in Flotilla (:func:`flotilla.resources.parse_quantity`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flotilla.resources import InvalidQuantity, parse_quantity


class ArmadaFileError(ValueError):
    """An Armada YAML file that cannot be used: ``file``, the ``field`` and what is wrong."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")
        self.file = str(file)
        self.field = field
        self.problem = problem


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # noqa: RUF001 - Go accepts both micro signs
    "μs": 1e-6,  # noqa: RUF001
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")  # noqa: RUF001


def parse_duration(value: str | int | float) -> float:
    """A Go duration (``"1h30m"``, ``"5m"``, ``"0.5s"``, ``"0"``) or a number of seconds, in seconds.

    Negative durations are refused: nothing in a simulation can start before it begins.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}: must be a finite, non-negative number of seconds")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}")
    text = value.strip()
    if text.startswith("+"):
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"invalid duration {value!r}")
    seconds = 0.0
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: expected a Go duration such as '30s', '5m' or '1h30m'"
            )
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return seconds


def _normalise(key: object) -> str:
    return str(key).replace("_", "").replace("-", "").lower()


class FieldReader:
    """Typed access to one file's parsed YAML, raising errors that name the file and field.

    Each method takes the raw value and ``where`` it is (a field path such as
    ``clusters[0].pool``); a missing value (``None``) gives the method's default.
    """

    def __init__(self, file: str | Path) -> None:
        self.file = str(file)
        self.ignored: list[str] = []

    def fail(self, where: str, problem: str) -> ArmadaFileError:
        """The error to raise for ``problem`` with the field at ``where``."""
        return ArmadaFileError(self.file, where, problem)

    def mapping(self, value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
        """``value`` as a dict keyed by the names in ``known`` (matched loosely); other keys
        are recorded in ``ignored``."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {kind_of(value)}")
        by_norm = {_normalise(name): name for name in known}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = by_norm.get(_normalise(key))
            if name is None:
                self.ignored.append(field_path(where, str(key)))
            elif name in out:
                raise self.fail(field_path(where, str(key)), f"given twice (also as {name!r})")
            else:
                out[name] = item
        return out

    def sequence(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {kind_of(value)}")
        return value

    def string(self, value: Any, where: str, default: str = "") -> str:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(where, f"expected a string, got {kind_of(value)}")
        return str(value)

    def integer(self, value: Any, where: str, default: int = 0, minimum: int | None = 0) -> int:
        if value is None:
            return default
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            number = int(value)
        if number is None:
            raise self.fail(where, f"expected an integer, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.fail(where, f"must be at least {minimum}, got {number}")
        return number

    def number(
        self,
        value: Any,
        where: str,
        default: float = 0.0,
        minimum: float | None = 0.0,
        allow_infinite: bool = False,
    ) -> float:
        if value is None:
            return default
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or math.isnan(number):
            raise self.fail(where, f"expected a number, got {value!r}")
        if math.isinf(number) and not allow_infinite:
            raise self.fail(where, f"must be finite, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.fail(where, f"must be at least {minimum:g}, got {value!r}")
        return number

    def boolean(self, value: Any, where: str, default: bool = False) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise self.fail(where, f"expected true or false, got {value!r}")

    def duration(self, value: Any, where: str) -> float:
        if value is None:
            return 0.0
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def quantities(self, value: Any, where: str) -> dict[str, int]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping of resource quantities, got {kind_of(value)}")
        out: dict[str, int] = {}
        for name, quantity in value.items():
            try:
                out[str(name)] = parse_quantity(quantity)
            except (InvalidQuantity, TypeError, ValueError):
                raise self.fail(
                    field_path(where, str(name)), f"invalid resource quantity {quantity!r}"
                ) from None
        return out

    def fractions(self, value: Any, where: str) -> dict[str, float]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping of resource name to fraction, got {kind_of(value)}")
        return {str(name): self.number(item, field_path(where, str(name))) for name, item in value.items()}

    def string_map(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping of strings, got {kind_of(value)}")
        return {str(key): self.string(item, field_path(where, str(key))) for key, item in value.items()}

    def string_list(self, value: Any, where: str) -> tuple[str, ...]:
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(self.sequence(value, where)))


def field_path(where: str, key: str) -> str:
    """The path of field ``key`` inside the field at ``where`` (``""``: the top level)."""
    return f"{where}.{key}" if where else key


def kind_of(value: Any) -> str:
    """What ``value`` is, for an error message: "a mapping", "the number 3", ..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"{value!r}"


def read_document(path: str | Path) -> tuple[FieldReader, Mapping[str, Any]]:
    """The file's top-level mapping and a reader for it; a file that cannot be read, is not
    YAML, is empty or is not a mapping is refused."""
    path = Path(path)
    reader = FieldReader(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ArmadaFileError(path, "", f"cannot read file: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ArmadaFileError(path, "", f"not valid YAML: {exc}") from None
    if document is None:
        raise ArmadaFileError(path, "", "the file is empty")
    if not isinstance(document, Mapping):
        raise ArmadaFileError(path, "", f"expected a mapping at the top level, got {kind_of(document)}")
    return reader, document

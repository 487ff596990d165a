"""Failure categories: a failed run's signals (exit codes, container termination reasons such
as ``OOMKilled``, messages) mapped to a named category by configurable rules, as Armada's
executor categorizer does (its ``application.errorCategories`` config, same shape).

Rules are evaluated in config order across all categories; the first rule that matches
decides the category and the rule's optional subcategory. No match gives
``defaultCategory`` / ``defaultSubcategory``. Each rule has exactly one matcher:

* ``onConditions``: ``OOMKilled`` (a container's termination reason), ``Evicted`` or
  ``DeadlineExceeded`` (the pod's reason, the part of the run's failure reason before ``:``);
* ``onExitCodes``: ``{operator: In|NotIn, values: [...]}`` on a container's non-zero exit code;
* ``onTerminationMessage``: ``{pattern: REGEX}`` searched in a container's message;
* ``onPodError``: ``{pattern: REGEX}`` searched in the run's failure reason.

``containerName`` limits a container matcher to that container. Exit code 0 never matches,
and init containers count like the others. Pure: no I/O but :func:`load_failure_categories`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flotilla.log.schema import ContainerExit

OOM_KILLED = "OOMKilled"
EVICTED = "Evicted"
DEADLINE_EXCEEDED = "DeadlineExceeded"
KNOWN_CONDITIONS = (OOM_KILLED, EVICTED, DEADLINE_EXCEEDED)
POD_CONDITIONS = frozenset({EVICTED, DEADLINE_EXCEEDED})
EXIT_CODE_OPERATORS = ("In", "NotIn")


class FailureCategoriesError(ValueError):
    """A categories config that cannot be used, naming the field and the value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(f"errorCategories {field}={value!r}: {problem}")
        self.field = field
        self.value = value


@dataclass(frozen=True)
class ExitCodeMatcher:
    operator: str
    values: frozenset[int]

    def matches(self, exit_code: int) -> bool:
        if exit_code == 0:
            return False
        return (exit_code in self.values) == (self.operator == "In")


@dataclass(frozen=True)
class CategoryRule:
    container_name: str = ""
    on_conditions: tuple[str, ...] = ()
    on_exit_codes: ExitCodeMatcher | None = None
    on_termination_message: re.Pattern[str] | None = None
    on_pod_error: re.Pattern[str] | None = None
    subcategory: str = ""

    def matches(self, containers: Sequence[ContainerExit], pod_error: str) -> bool:
        if self.on_pod_error is not None:
            return self.on_pod_error.search(pod_error) is not None
        condition = pod_reason(pod_error)
        if condition in POD_CONDITIONS and condition in self.on_conditions:
            return True
        for container in containers:
            if self.container_name and container.name != self.container_name:
                continue
            if container.exit_code == 0 and container.reason != OOM_KILLED:
                continue
            if OOM_KILLED in self.on_conditions and container.reason == OOM_KILLED:
                return True
            if self.on_exit_codes is not None and self.on_exit_codes.matches(container.exit_code):
                return True
            pattern = self.on_termination_message
            if pattern is not None and pattern.search(container.message) is not None:
                return True
        return False


@dataclass(frozen=True)
class Category:
    name: str
    rules: tuple[CategoryRule, ...]


@dataclass(frozen=True)
class FailureCategories:
    default_category: str = ""
    default_subcategory: str = ""
    categories: tuple[Category, ...] = ()

    def classify(self, containers: Sequence[ContainerExit], pod_error: str = "") -> tuple[str, str]:
        """(category, subcategory) of a failed run: its containers' exits and its failure reason."""
        for category in self.categories:
            for rule in category.rules:
                if rule.matches(containers, pod_error):
                    return category.name, rule.subcategory
        return self.default_category, self.default_subcategory


def pod_reason(failure_reason: str) -> str:
    """The condition a run's failure reason starts with (``"Evicted: ..."`` -> ``Evicted``)."""
    head, sep, _ = failure_reason.partition(":")
    return head.strip() if sep else failure_reason.strip()


def _regex(field: str, value: Any) -> re.Pattern[str]:
    if not isinstance(value, Mapping) or not isinstance(value.get("pattern"), str):
        raise FailureCategoriesError(field, value, "expected {pattern: REGEX}")
    try:
        return re.compile(value["pattern"])
    except re.error as exc:
        raise FailureCategoriesError(f"{field}.pattern", value["pattern"], f"invalid regex: {exc}") from exc


def _exit_codes(field: str, value: Any) -> ExitCodeMatcher:
    if not isinstance(value, Mapping):
        raise FailureCategoriesError(field, value, "expected {operator: In|NotIn, values: [...]}")
    operator = value.get("operator")
    if operator not in EXIT_CODE_OPERATORS:
        raise FailureCategoriesError(f"{field}.operator", operator, "expected In or NotIn")
    values = value.get("values")
    if not isinstance(values, list) or not values:
        raise FailureCategoriesError(f"{field}.values", values, "expected a non-empty list of exit codes")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise FailureCategoriesError(f"{field}.values", values, "exit codes must be integers")
    return ExitCodeMatcher(operator, frozenset(values))


_MATCHERS = ("onConditions", "onExitCodes", "onTerminationMessage", "onPodError")
_RULE_FIELDS = frozenset({*_MATCHERS, "containerName", "subcategory", "hint"})


def _rule(field: str, value: Any) -> CategoryRule:
    if not isinstance(value, Mapping):
        raise FailureCategoriesError(field, value, "a rule is a mapping")
    unknown = sorted(set(value) - _RULE_FIELDS)
    if unknown:
        raise FailureCategoriesError(f"{field}.{unknown[0]}", value[unknown[0]], "unknown rule field")
    present = [m for m in _MATCHERS if value.get(m) not in (None, [], {})]
    if len(present) != 1:
        raise FailureCategoriesError(field, value, f"a rule needs exactly one of {', '.join(_MATCHERS)}")
    conditions: tuple[str, ...] = ()
    if "onConditions" in present:
        raw = value["onConditions"]
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise FailureCategoriesError(f"{field}.onConditions", raw, "expected a list of conditions")
        for condition in raw:
            if condition not in KNOWN_CONDITIONS:
                raise FailureCategoriesError(
                    f"{field}.onConditions",
                    condition,
                    f"unknown condition; known: {', '.join(KNOWN_CONDITIONS)}",
                )
        conditions = tuple(raw)
    return CategoryRule(
        container_name=str(value.get("containerName") or ""),
        on_conditions=conditions,
        on_exit_codes=_exit_codes(f"{field}.onExitCodes", value["onExitCodes"])
        if "onExitCodes" in present
        else None,
        on_termination_message=_regex(f"{field}.onTerminationMessage", value["onTerminationMessage"])
        if "onTerminationMessage" in present
        else None,
        on_pod_error=_regex(f"{field}.onPodError", value["onPodError"]) if "onPodError" in present else None,
        subcategory=str(value.get("subcategory") or ""),
    )


def parse_failure_categories(config: Mapping[str, Any]) -> FailureCategories:
    """Armada's ``errorCategories`` mapping (``defaultCategory``, ``defaultSubcategory``,
    ``categories: [{name, rules}]``; ``enabled`` is accepted and ``false`` turns it off)."""
    if not isinstance(config, Mapping):
        raise FailureCategoriesError("", config, "expected a mapping")
    if config.get("enabled") is False:
        return FailureCategories()
    categories: list[Category] = []
    raw_categories = config.get("categories") or []
    if not isinstance(raw_categories, list):
        raise FailureCategoriesError("categories", raw_categories, "expected a list")
    for i, raw in enumerate(raw_categories):
        field = f"categories[{i}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise FailureCategoriesError(f"{field}.name", raw, "a category needs a name")
        rules = raw.get("rules") or []
        if not isinstance(rules, list) or not rules:
            raise FailureCategoriesError(f"{field}.rules", rules, "a category needs a list of rules")
        categories.append(
            Category(raw["name"], tuple(_rule(f"{field}.rules[{j}]", r) for j, r in enumerate(rules)))
        )
    return FailureCategories(
        default_category=str(config.get("defaultCategory") or ""),
        default_subcategory=str(config.get("defaultSubcategory") or ""),
        categories=tuple(categories),
    )


def _nested(config: Mapping[str, Any], path: Iterable[str]) -> Any:
    value: Any = config
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def load_failure_categories(path: str | Path) -> FailureCategories:
    """From a YAML file: the ``errorCategories`` mapping itself, or an Armada executor config
    holding it under ``application.errorCategories`` (or a top-level ``errorCategories``)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FailureCategoriesError("file", str(path), str(exc)) from exc
    if not isinstance(loaded, Mapping):
        raise FailureCategoriesError("file", str(path), "expected a YAML mapping")
    for nesting in (("application", "errorCategories"), ("errorCategories",)):
        found = _nested(loaded, nesting)
        if found is not None:
            return parse_failure_categories(found)
    return parse_failure_categories(loaded)


ARMADA_LOCAL_DEFAULT: Mapping[str, Any] = {
    "defaultCategory": "uncategorized",
    "categories": [
        {"name": "oom", "rules": [{"onConditions": [OOM_KILLED]}]},
        {"name": "user_error", "rules": [{"onExitCodes": {"operator": "In", "values": [1, 2, 126, 127]}}]},
    ],
}
"""Armada's local development executor config (``_local/executor/config.yaml``)."""

DEFAULT_FAILURE_CATEGORIES = parse_failure_categories(ARMADA_LOCAL_DEFAULT)


def failure_categories_from_file(path: str) -> FailureCategories:
    """The categories of ``executor.failure_categories_file``; the embedded default when empty."""
    return load_failure_categories(path) if path else DEFAULT_FAILURE_CATEGORIES

"""Failure categories (flotilla.executor.failure_categories): Armada's errorCategories rules."""

from __future__ import annotations

import pytest

from flotilla.executor.failure_categories import (
    DEFAULT_FAILURE_CATEGORIES,
    FailureCategoriesError,
    load_failure_categories,
    parse_failure_categories,
)
from flotilla.log.schema import ContainerExit

OOM = ContainerExit("main", 137, reason="OOMKilled")


def exit_(code: int, name: str = "main", message: str = "") -> ContainerExit:
    return ContainerExit(name, code, message=message)


@pytest.mark.parametrize(
    ("containers", "reason", "expected"),
    [
        ((OOM,), "OOMKilled: container main exceeded its memory limit", "oom"),
        ((exit_(1),), "Error: container main exited with code 1", "user_error"),
        ((exit_(2),), "", "user_error"),
        ((exit_(126),), "", "user_error"),
        ((exit_(127),), "", "user_error"),
        ((exit_(3),), "", "uncategorized"),
        ((exit_(137),), "", "uncategorized"),  # SIGKILLed but not by the OOM killer
        ((exit_(0), exit_(1, "side")), "", "user_error"),
        ((exit_(1), OOM), "", "oom"),  # oom is listed first: the first matching rule wins
        ((), "Evicted: the node was low on memory", "uncategorized"),
    ],
)
def test_armadas_local_development_rules_are_the_default(containers, reason, expected):
    assert DEFAULT_FAILURE_CATEGORIES.classify(containers, reason) == (expected, "")


CONFIG = {
    "defaultCategory": "other",
    "defaultSubcategory": "unknown",
    "categories": [
        {
            "name": "infrastructure",
            "rules": [
                {"onConditions": ["OOMKilled"], "subcategory": "oom"},
                {"onConditions": ["Evicted"], "subcategory": "eviction"},
                {"onPodError": {"pattern": "ImagePull"}, "subcategory": "image"},
            ],
        },
        {
            "name": "user_code",
            "rules": [
                {"onExitCodes": {"operator": "In", "values": [74, 75]}, "subcategory": "cuda"},
                {"onTerminationMessage": {"pattern": "(?i)cuda.*error"}, "subcategory": "cuda"},
                {"containerName": "sidecar", "onExitCodes": {"operator": "NotIn", "values": [3]}},
            ],
        },
    ],
}


@pytest.mark.parametrize(
    ("containers", "reason", "expected"),
    [
        ((OOM,), "", ("infrastructure", "oom")),
        ((), "Evicted: low on memory", ("infrastructure", "eviction")),
        ((), "DeadlineExceeded: too long", ("other", "unknown")),
        ((), "ImagePullFailed: no such image", ("infrastructure", "image")),
        ((exit_(74),), "", ("user_code", "cuda")),
        ((exit_(1, message="CUDA runtime ERROR 12"),), "", ("user_code", "cuda")),
        ((exit_(4, "sidecar"),), "", ("user_code", "")),
        ((exit_(4, "main"),), "", ("other", "unknown")),  # the NotIn rule is for the sidecar only
        ((exit_(3, "sidecar"),), "", ("other", "unknown")),
        ((exit_(0, message="cuda error"),), "", ("other", "unknown")),  # exit code 0 never matches
    ],
)
def test_configured_rules_match_in_order_with_subcategories(containers, reason, expected):
    assert parse_failure_categories(CONFIG).classify(containers, reason) == expected


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            {"categories": [{"name": "x", "rules": [{"onConditions": ["Crashed"]}]}]},
            "categories[0].rules[0].onConditions",
        ),
        (
            {"categories": [{"name": "x", "rules": [{"onExitCodes": {"operator": "Is", "values": [1]}}]}]},
            "categories[0].rules[0].onExitCodes.operator",
        ),
        (
            {"categories": [{"name": "x", "rules": [{"onExitCodes": {"operator": "In", "values": []}}]}]},
            "categories[0].rules[0].onExitCodes.values",
        ),
        (
            {"categories": [{"name": "x", "rules": [{"onTerminationMessage": {"pattern": "("}}]}]},
            "categories[0].rules[0].onTerminationMessage.pattern",
        ),
        ({"categories": [{"name": "x", "rules": [{"subcategory": "y"}]}]}, "categories[0].rules[0]"),
        (
            {
                "categories": [
                    {"name": "x", "rules": [{"onConditions": ["OOMKilled"], "onPodError": {"pattern": "a"}}]}
                ]
            },
            "categories[0].rules[0]",
        ),
        ({"categories": [{"rules": [{"onConditions": ["OOMKilled"]}]}]}, "categories[0].name"),
        (
            {"categories": [{"name": "x", "rules": [{"onCondition": ["OOMKilled"]}]}]},
            "categories[0].rules[0].onCondition",
        ),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(config, field):
    with pytest.raises(FailureCategoriesError) as error:
        parse_failure_categories(config)
    assert error.value.field == field


def test_a_disabled_config_categorises_nothing():
    assert parse_failure_categories({**CONFIG, "enabled": False}).classify((OOM,)) == ("", "")


def test_an_armada_executor_config_file_is_read_from_application_error_categories(tmp_path):
    path = tmp_path / "executor.yaml"
    path.write_text(
        "application:\n"
        "  clusterId: local\n"
        "  errorCategories:\n"
        "    enabled: true\n"
        "    defaultCategory: rest\n"
        "    categories:\n"
        "      - name: fatal\n"
        "        rules:\n"
        "          - onExitCodes: {operator: In, values: [9]}\n"
    )
    categories = load_failure_categories(path)
    assert categories.classify((exit_(9),)) == ("fatal", "")
    assert categories.classify((exit_(1),)) == ("rest", "")

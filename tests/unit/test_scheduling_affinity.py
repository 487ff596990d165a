"""Required node affinity, as Kubernetes defines it."""

import pytest

from flotilla.scheduling import Queue, SchedulingConfig, matches_node_affinity, schedule
from tests.harness.builders import job, node, running

NODE = node("n1", 4, 0, labels={"zone": "a", "cores": "16"})


def expr(key, operator, *values):
    return (key, operator, tuple(values))


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        (expr("zone", "In", "a", "b"), True),
        (expr("zone", "In", "b"), False),
        (expr("zone", "NotIn", "b"), True),
        (expr("zone", "NotIn", "a"), False),
        (expr("rack", "NotIn", "a"), True),  # an absent label is "not in" anything
        (expr("zone", "Exists"), True),
        (expr("rack", "Exists"), False),
        (expr("rack", "DoesNotExist"), True),
        (expr("zone", "DoesNotExist"), False),
        (expr("cores", "Gt", "8"), True),
        (expr("cores", "Gt", "16"), False),
        (expr("cores", "Lt", "32"), True),
        (expr("cores", "Lt", "16"), False),
        (expr("zone", "Gt", "1"), False),  # not an integer
        (expr("rack", "Lt", "1"), False),  # absent
        (expr("zone", "Sometimes", "a"), False),  # unknown operator
    ],
)
def test_affinity_operator(expression, matches):
    assert matches_node_affinity(NODE, ((expression,),)) is matches


def test_affinity_expressions_in_a_term_must_all_hold():
    assert not matches_node_affinity(NODE, ((expr("zone", "In", "a"), expr("rack", "Exists")),))


def test_affinity_terms_are_alternatives():
    assert matches_node_affinity(NODE, ((expr("rack", "Exists"),), (expr("zone", "In", "a"),)))


def test_empty_affinity_term_matches_no_node():
    assert not matches_node_affinity(NODE, ((),))


def test_no_affinity_matches_every_node():
    assert matches_node_affinity(NODE, ())


def test_affinity_accepts_kubernetes_node_selector_terms():
    terms = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
    assert matches_node_affinity(NODE, terms)


def test_affinity_match_fields_on_node_name():
    terms = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    assert matches_node_affinity(NODE, terms)
    assert not matches_node_affinity(node("n2", 0, 0), terms)


def _nodes():
    return [
        node("x", 4, labels={"zone": "x"}),
        node("y", 4, labels={"zone": "y"}),
    ]


def test_affinity_steers_the_job_in_a_cycle():
    result = schedule(
        [job("j", "q", node_affinity=((expr("zone", "NotIn", "x"),),))],
        [],
        _nodes(),
        [Queue("q")],
        SchedulingConfig(),
    )
    assert [lease.node for lease in result.leases] == ["y"]


def test_affinity_matching_no_node_is_reported():
    result = schedule(
        [job("j", "q", node_affinity=((expr("zone", "In", "z"),),))],
        [],
        _nodes(),
        [Queue("q")],
        SchedulingConfig(),
    )
    assert result.unschedulable == {"j": "no node matches node affinity"}


def test_unfit_shape_cache_tells_affinities_apart():
    # Both jobs ask for 4 cpus; x is half full so the first is unfit, the second is not.
    runs = [running("r", "other", "x", 2, 0, run_id="r")]
    queued = [
        job("to-x", "q", 4, 0, node_affinity=((expr("zone", "In", "x"),),)),
        job("to-y", "q", 4, 0, submitted_at=1.0, node_affinity=((expr("zone", "In", "y"),),)),
    ]
    result = schedule(queued, runs, _nodes(), [Queue("q")], SchedulingConfig())
    assert [lease.job_id for lease in result.leases] == ["to-y"]
    assert result.unschedulable == {"to-x": "insufficient cpu"}

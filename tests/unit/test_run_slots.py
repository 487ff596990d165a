"""RunSlots: the executor never reserves more than its capacity."""

from __future__ import annotations

from flotilla.executor.capacity import capacity_from_config, machine_capacity
from flotilla.executor.run_slots import RunSlots


def test_refuses_a_run_that_does_not_fit_and_accepts_it_after_release():
    slots = RunSlots({"cpu": 2000, "memory": 4000})

    assert slots.try_reserve("a", {"cpu": 1500, "memory": 1000})
    assert not slots.try_reserve("b", {"cpu": 1000, "memory": 1000})
    assert slots.free == {"cpu": 500, "memory": 3000}

    slots.release("a")

    assert slots.try_reserve("b", {"cpu": 1000, "memory": 1000})
    assert slots.active == {"b": {"cpu": 1000, "memory": 1000}}
    assert slots.free == {"cpu": 1000, "memory": 3000}


def test_a_resized_node_offers_its_new_capacity_and_keeps_its_runs():
    slots = RunSlots({"cpu": 2000})
    assert slots.try_reserve("a", {"cpu": 1500})

    slots.resize({"cpu": 4000})

    assert slots.active == {"a": {"cpu": 1500}}
    assert slots.try_reserve("b", {"cpu": 2500})
    assert slots.free == {"cpu": 0}


def test_reserving_the_same_run_twice_counts_once():
    slots = RunSlots({"cpu": 2000})

    assert slots.try_reserve("a", {"cpu": 1500})
    assert slots.try_reserve("a", {"cpu": 1500})
    assert slots.free == {"cpu": 500}


def test_a_resource_missing_from_capacity_never_fits():
    slots = RunSlots({"cpu": 2000})

    assert not slots.try_reserve("gpu-run", {"cpu": 1000, "nvidia.com/gpu": 1000})
    assert not slots.ever_fits({"nvidia.com/gpu": 1000})
    assert slots.active == {}


def test_configured_capacity_is_parsed_to_milli_units_for_the_slots():
    slots = RunSlots(capacity_from_config({"cpu": "1500m", "memory": "1Gi"}))

    assert slots.capacity == {"cpu": 1500, "memory": 2**30 * 1000}
    assert set(machine_capacity()) == {"cpu", "memory"}
    assert machine_capacity()["cpu"] >= 1000

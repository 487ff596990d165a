"""Kubernetes resource quantities as exact milli-unit integers (flotilla.resources)."""

from __future__ import annotations

import pytest

from flotilla.resources import InvalidQuantity, add, fits, format_quantity, parse_quantity, subtract

MI = 2**20 * 1000


@pytest.mark.parametrize(
    ("quantity", "milli"),
    [
        ("150m", 150),
        ("1", 1000),
        ("1.5", 1500),
        ("64Mi", 64 * MI),
        ("1Gi", 2**30 * 1000),
        ("1e3", 1_000_000),
        ("2k", 2_000_000),
        ("1M", 10**9),
        ("0", 0),
        (" 250m ", 250),
    ],
)
def test_parse_quantity_reads_kubernetes_quantities_as_milli_units(quantity, milli):
    assert parse_quantity(quantity) == milli


@pytest.mark.parametrize(("number", "milli"), [(2, 2000), (0, 0), (0.5, 500)])
def test_parse_quantity_reads_plain_numbers_as_whole_units(number, milli):
    assert parse_quantity(number) == milli


def test_parse_quantity_returns_an_int():
    assert type(parse_quantity("1.5")) is int


def test_parse_quantity_rounds_a_fraction_of_a_milli_unit_up():
    assert parse_quantity("0.1m") == 1
    assert parse_quantity("1n") == 1


def test_parse_quantity_is_exact_for_large_binary_quantities():
    assert parse_quantity("1.5Ti") == 3 * 2**39 * 1000


@pytest.mark.parametrize(
    "bad", ["12xx", "", "-1", "-150m", "1.5.2", "m", "Mi", "1mi", True, False, float("nan")]
)
def test_parse_quantity_refuses_invalid_quantities_carrying_the_value(bad):
    with pytest.raises(InvalidQuantity) as caught:
        parse_quantity(bad)

    assert caught.value.value is bad
    assert isinstance(caught.value, ValueError)


def test_the_invalid_quantity_message_names_the_value():
    with pytest.raises(InvalidQuantity, match="12xx"):
        parse_quantity("12xx")


@pytest.mark.parametrize(("milli", "text"), [(1500, "1500m"), (2000, "2"), (0, "0"), (1, "1m")])
def test_format_quantity_gives_the_shortest_plain_form(milli, text):
    assert format_quantity(milli) == text
    assert parse_quantity(text) == milli


def test_fits_when_every_requested_resource_is_free():
    assert fits({"cpu": 1000, "memory": 64 * MI}, {"cpu": 1000, "memory": 128 * MI})


def test_does_not_fit_when_one_resource_is_short():
    assert not fits({"cpu": 1001, "memory": 64 * MI}, {"cpu": 1000, "memory": 128 * MI})


def test_a_resource_absent_from_free_counts_as_zero():
    assert not fits({"nvidia.com/gpu": 1000}, {"cpu": 8000})


def test_a_zero_request_fits_even_where_the_resource_is_absent():
    assert fits({"cpu": 500, "nvidia.com/gpu": 0}, {"cpu": 500})


def test_add_sums_per_resource_including_resources_only_one_side_has():
    assert add({"cpu": 1000, "memory": 5}, {"cpu": 500, "gpu": 1000}) == {
        "cpu": 1500,
        "memory": 5,
        "gpu": 1000,
    }


def test_subtract_takes_away_per_resource_and_may_go_negative():
    assert subtract({"cpu": 1000, "memory": 5}, {"cpu": 1500, "gpu": 1000}) == {
        "cpu": -500,
        "memory": 5,
        "gpu": -1000,
    }


def test_add_and_subtract_leave_their_arguments_unchanged():
    a, b = {"cpu": 1000}, {"cpu": 500}

    add(a, b)
    subtract(a, b)

    assert a == {"cpu": 1000} and b == {"cpu": 500}


def test_subtracting_what_was_added_gives_back_the_original():
    free = {"cpu": 8000, "memory": 16 * MI}
    request = {"cpu": 150, "memory": 64 * MI}

    assert subtract(add(free, request), request) == free

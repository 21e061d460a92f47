"""Chaos decisions: a pure function of (seed, point, key, occurrence), at the rate asked for."""

from __future__ import annotations

import pytest

from pipeline.faults import InjectedCrash
from pipeline.local.chaos import Chaos

POINT = "parser.after_send"
CALLS = [(point, f"key-{index % 40}") for index in range(400) for point in (POINT, "invoke.refused")]
"""Repeated keys, so later occurrences of the same (point, key) are decided too."""


def _decisions(chaos: Chaos, calls: list[tuple[str, str]]) -> list[bool]:
    return [chaos.decide(point, key) for point, key in calls]


def test_two_instances_with_the_same_seed_make_the_same_decisions() -> None:
    # Given / When
    first = _decisions(Chaos(0.2, seed=7), CALLS)
    second = _decisions(Chaos(0.2, seed=7), CALLS)

    # Then
    assert first == second
    assert any(first) and not all(first)


def test_a_decision_depends_on_its_own_occurrence_not_on_the_calls_around_it() -> None:
    # Given the same calls made in reverse order of keys (as worker threads might interleave them)
    keys = [f"key-{index}" for index in range(200)]
    forward, backward = Chaos(0.3, seed=11), Chaos(0.3, seed=11)

    # When each key is decided three times, interleaved differently
    ahead = {key: [forward.decide(POINT, key) for _ in range(3)] for key in keys}
    behind: dict[str, list[bool]] = {key: [] for key in keys}
    for _ in range(3):
        for key in reversed(keys):
            behind[key].append(backward.decide(POINT, key))

    # Then every key got the same decisions, occurrence by occurrence
    assert ahead == behind
    assert any(len(set(decisions)) > 1 for decisions in ahead.values())


def test_a_different_seed_makes_different_decisions() -> None:
    assert _decisions(Chaos(0.2, seed=1), CALLS) != _decisions(Chaos(0.2, seed=2), CALLS)


def test_rate_zero_never_injects() -> None:
    chaos = Chaos(0.0, seed=1)

    assert not any(_decisions(chaos, CALLS))
    for point, key in CALLS:
        chaos.reached(point, key)
    assert chaos.injected == {}


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_the_hit_ratio_over_many_keys_is_near_the_rate(rate: float) -> None:
    # Deterministic for a given seed, so the loose bound cannot flake.
    chaos = Chaos(rate, seed=3)

    hits = sum(chaos.decide(POINT, f"key-{index}") for index in range(10_000))

    assert abs(hits / 10_000 - rate) < 0.25 * rate
    assert chaos.injected == {POINT: hits}


def test_reached_raises_an_injected_crash_exactly_when_decide_says_so() -> None:
    # Given two instances with the same seed: one asked, one crashing
    oracle, crashing = Chaos(0.3, seed=5), Chaos(0.3, seed=5)

    # When
    crashed: list[bool] = []
    for point, key in CALLS:
        try:
            crashing.reached(point, key)
        except InjectedCrash as exc:
            assert point in str(exc) and key in str(exc)
            crashed.append(True)
        else:
            crashed.append(False)

    # Then
    assert crashed == _decisions(oracle, CALLS)
    assert any(crashed)
    assert crashing.injected == oracle.injected


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_a_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="chaos rate"):
        Chaos(rate, seed=1)

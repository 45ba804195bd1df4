"""The alternating-rounds timer shared by ``deepres bench`` and ``--runtime auto``
(``deepres.runtime.timing``): how many rounds, in which order. Fake work reports made-up
seconds; nothing here reads a clock."""

import pytest

from deepres.runtime.timing import alternating_rounds, timed


def recording(log: list[str], seconds: dict[str, float]) -> dict:
    """Work per name that records its call and 'takes' ``seconds[name]``."""

    def work(name: str):
        def run() -> float:
            log.append(name)
            return seconds[name]

        return run

    return {name: work(name) for name in seconds}


def test_fixed_rounds_run_every_variant_once_a_round_in_order():
    log: list[str] = []
    times = alternating_rounds(recording(log, {"a": 1.0, "b": 2.0, "c": 3.0}), 3)
    assert log == ["a", "b", "c"] * 3
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3, "c": [3.0] * 3}


def test_mirrored_rounds_reverse_every_other_round():
    log: list[str] = []
    times = alternating_rounds(recording(log, {"a": 1.0, "b": 2.0}), 4, mirror=True)
    assert log == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert list(times) == ["a", "b"] and all(len(t) == 4 for t in times.values())


@pytest.mark.parametrize(
    ("per_call", "budget", "rounds"),
    [
        (0.1, 2.0, 5),  # a round of 0.2 s: 10 would fit, at most 5
        (0.25, 2.0, 4),  # a round of 0.5 s: 4 fit
        (0.4, 2.0, 2),  # a round of 0.8 s: 2 fit
        (5.0, 2.0, 1),  # a round longer than the budget: the first only
        (0.0, 2.0, 5),  # work that takes no time: the most
    ],
)
def test_a_budget_caps_the_rounds_by_the_first_rounds_total(per_call, budget, rounds):
    log: list[str] = []
    times = alternating_rounds(
        recording(log, {"a": per_call, "b": per_call}), 5, budget_s=budget, mirror=True
    )
    assert len(log) == 2 * rounds and all(len(t) == rounds for t in times.values())


def test_no_rounds_and_no_variants():
    log: list[str] = []
    assert alternating_rounds(recording(log, {"a": 1.0}), 0) == {"a": []} and log == []
    assert alternating_rounds({}, 3, budget_s=1.0) == {}


def test_timed_counts_one_call_on_the_clock_it_is_given():
    ticks = iter([10.0, 10.5])
    calls: list[int] = []
    seconds = timed(lambda: calls.append(1), clock=lambda: next(ticks))()
    assert seconds == pytest.approx(0.5) and calls == [1]

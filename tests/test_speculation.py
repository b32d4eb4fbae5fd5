"""The speculation gate: outcomes per model, a sliding window, a threshold and probes."""

from __future__ import annotations

from agent.speculation import (
    DEFAULT_MIN_USED_SHARE,
    MAX_PROBE_EVERY_S,
    MAX_THRESHOLD,
    MIN_COST_SAMPLES,
    MIN_OUTCOMES,
    MIN_THRESHOLD,
    PROBE_EVERY_S,
    UNUSED_AFTER_REQUESTS,
    UNUSED_AFTER_S,
    WINDOW,
    SpeculationGate,
)


def test_a_completed_guess_nobody_uses_counts_as_wasted() -> None:
    counters: dict[str, int] = {}
    gate = SpeculationGate(counters)
    gate.issued("k", "m", now=0.0)
    gate.finished("k", complete=True, now=1.0)
    gate.sweep(now=1.0 + UNUSED_AFTER_S / 2)
    assert counters["prefetch_wasted"] == 0  # may still be used
    gate.sweep(now=1.0 + UNUSED_AFTER_S)
    assert counters["prefetch_wasted"] == 1
    assert gate.used("k") is False  # too late, and never counted twice
    assert counters["prefetch_used"] == 0


def test_a_used_guess_is_counted_once_and_a_cancelled_one_at_once() -> None:
    counters: dict[str, int] = {}
    gate = SpeculationGate(counters)
    gate.issued("a", "m", now=0.0)
    gate.finished("a", complete=True, now=1.0)
    assert gate.used("a") is True and gate.used("a") is False
    gate.issued("b", "m", now=2.0)
    gate.finished("b", complete=False, now=3.0)
    assert counters == {"prefetch_used": 1, "prefetch_wasted": 1, "prefetch_skipped": 0}
    assert gate.describe()["models"]["m"]["used_share"] == 0.5


def run(gate: SpeculationGate, model: str, used: list[bool], t0: float) -> float:
    t = t0
    for i, u in enumerate(used):
        key = f"{model}{t}{i}"
        gate.issued(key, model, now=t)
        gate.finished(key, complete=True, now=t)
        if u:
            gate.used(key)
        t += 1.0
    gate.sweep(now=t + UNUSED_AFTER_S)
    return t + UNUSED_AFTER_S


def test_speculation_pauses_below_the_threshold_probes_and_comes_back() -> None:
    gate = SpeculationGate({})
    assert gate.allow("m", now=0.0)  # learning
    t = run(gate, "m", [False] * WINDOW, 0.0)
    assert gate.allow("m", now=t)  # the first probe
    assert gate.models["m"].decision == "probe"
    assert not gate.allow("m", now=t + 1)  # paused until the next probe
    assert gate.models["m"].decision == "paused"
    assert gate.allow("m", now=t + PROBE_EVERY_S)
    # typing becomes predictable: the window fills with used guesses and speculation resumes
    t = run(gate, "m", [True] * WINDOW, t + PROBE_EVERY_S)
    assert gate.allow("m", now=t) and gate.models["m"].decision == "speculate"
    # per model: another model is still learning
    assert gate.allow("other", now=t) and gate.models["other"].decision == "learning"


def test_threshold_boundary() -> None:
    need = int(DEFAULT_MIN_USED_SHARE * WINDOW + 0.999)
    gate = SpeculationGate({})
    t = run(gate, "m", [True] * need + [False] * (WINDOW - need), 0.0)
    gate.models["m"].last_probe = t  # no probe due
    assert gate.allow("m", now=t)
    t = run(gate, "m", [False], t)
    assert not gate.allow("m", now=t)
    assert MIN_OUTCOMES <= WINDOW


def test_a_completed_guess_passed_over_by_requests_is_wasted_before_the_timeout() -> None:
    counters: dict[str, int] = {}
    gate = SpeculationGate(counters)
    gate.issued("g", "m", now=0.0)
    gate.served("m")  # still running: the request may join it later, not passed over
    gate.finished("g", complete=True, now=1.0)
    gate.served("other")  # another model's suggestion says nothing about this guess
    for _ in range(UNUSED_AFTER_REQUESTS - 1):
        gate.served("m")
    assert counters["prefetch_wasted"] == 0 and "g" in gate.open
    gate.served("m")
    assert counters["prefetch_wasted"] == 1 and "g" not in gate.open
    assert gate.models["m"].outcomes[-1] is False


def test_threshold_is_the_measured_break_even_share() -> None:
    gate = SpeculationGate({})
    assert gate.threshold("m") == DEFAULT_MIN_USED_SHARE  # nothing measured yet
    for _ in range(MIN_COST_SAMPLES):
        gate.cost("m", 0.3, guess=True)
        gate.cost("m", 1.5, guess=False)
    assert abs(gate.threshold("m") - 0.2) < 1e-9  # a guess costs a fifth of a suggestion
    assert gate.describe()["models"]["m"]["measured"] is True
    cheap = SpeculationGate({})
    dear = SpeculationGate({})
    for _ in range(MIN_COST_SAMPLES):
        cheap.cost("m", 0.01, guess=True)
        cheap.cost("m", 2.0, guess=False)
        dear.cost("m", 3.0, guess=True)
        dear.cost("m", 1.0, guess=False)
    assert cheap.threshold("m") == MIN_THRESHOLD and dear.threshold("m") == MAX_THRESHOLD
    # the decision follows the measured threshold: 2 of 12 used (17 %) does not pay when a
    # guess costs a fifth of a suggestion...
    t = run(gate, "m", [True] * 2 + [False] * (WINDOW - 2), 0.0)
    gate.models["m"].last_probe = t
    assert not gate.allow("m", now=t)
    t = run(cheap, "m", [True] * 2 + [False] * (WINDOW - 2), 0.0)
    cheap.models["m"].last_probe = t
    assert cheap.allow("m", now=t)  # ...and pays when they cost a two-hundredth
    fixed = SpeculationGate({})
    fixed.fixed_threshold = 0.0  # the bench's always-on contender
    t = run(fixed, "m", [False] * WINDOW, 0.0)
    fixed.models["m"].last_probe = t
    assert fixed.allow("m", now=t) and fixed.models["m"].decision == "speculate"


def test_while_learning_one_guess_at_a_time() -> None:
    counters: dict[str, int] = {}
    gate = SpeculationGate(counters)
    assert gate.allow("m", now=0.0)
    gate.issued("a", "m", now=0.0)
    assert not gate.allow("m", now=1.0)  # its outcome is not in yet
    assert gate.models["m"].decision == "learning" and counters["prefetch_skipped"] == 1
    assert gate.allow("other", now=1.0)  # per model
    gate.finished("a", complete=True, now=2.0)
    for _ in range(UNUSED_AFTER_REQUESTS):
        gate.served("m")
    assert gate.allow("m", now=3.0)  # wasted: the next guess may go
    # once guesses are known to pay, several may be open at once
    t = run(gate, "m", [True] * WINDOW, 4.0)
    gate.issued("b", "m", now=t)
    assert gate.allow("m", now=t) and gate.models["m"].decision == "speculate"


def test_wasted_probes_back_off_and_a_used_guess_resets_them() -> None:
    gate = SpeculationGate({})
    t = run(gate, "m", [False] * WINDOW, 0.0)
    every = PROBE_EVERY_S
    while every < MAX_PROBE_EVERY_S:
        assert gate.allow("m", now=t) and gate.models["m"].decision == "probe"
        gate.issued(f"p{t}", "m", now=t)
        gate.finished(f"p{t}", complete=False, now=t)  # the probe was wasted
        every = min(MAX_PROBE_EVERY_S, every * 2)
        assert gate.models["m"].probe_every == every
        assert not gate.allow("m", now=t + every - 1)
        t += every
    assert gate.models["m"].probe_every == MAX_PROBE_EVERY_S
    assert gate.allow("m", now=t)
    gate.issued("used", "m", now=t)
    gate.finished("used", complete=True, now=t)
    assert gate.used("used")
    assert gate.models["m"].probe_every == PROBE_EVERY_S

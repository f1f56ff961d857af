"""How long a canary must run: the group-sequential power of the KPI judge's harm test."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import stats

from controller.analysis_types import Verdict
from controller.errors import InputError
from controller.gates.kpi_judge import judge_kpi
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_power import (
    canary_duration,
    crossing_probability,
    fixed_sample_total,
    group_sequential_inflation,
    look_boundaries,
)
from controller.gates.kpi_samples import RateSample


def test_one_look_has_the_normal_power_in_closed_form() -> None:
    """With one look, crossing z_alpha with drift theta has probability Phi(theta - z_alpha)."""
    (z,) = look_boundaries(0.05, 1, "obrien-fleming")
    assert z == pytest.approx(stats.norm.ppf(0.95))
    assert crossing_probability(2.5, [z], [1.0]) == pytest.approx(stats.norm.cdf(2.5 - z))


def test_equal_arms_give_the_textbook_sample_size() -> None:
    """Two arms of equal size: n per arm = (z_a sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2))^2
    / delta^2 (Fleiss), for 4 % against 3.5 %: 17,851 per arm."""
    p1, p2, alpha, power = 0.035, 0.04, 0.05, 0.8
    pbar = (p1 + p2) / 2
    z_a, z_b = stats.norm.ppf(1 - alpha), stats.norm.ppf(power)
    per_arm = (
        z_a * math.sqrt(2 * pbar * (1 - pbar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    total = fixed_sample_total(0.04, 0.005, share=0.5, alpha=alpha, power=power)
    assert total / 2 == pytest.approx(per_arm, rel=1e-9)
    assert round(per_arm) == 17_851


def test_a_single_look_canary_needs_exactly_the_fixed_sample() -> None:
    """One look, no delay: the duration's requests are the closed form's at a 5 % share."""
    plan = canary_duration(0.04, 0.005, rps=100, share=0.05, max_looks=1)
    total = fixed_sample_total(0.04, 0.005, share=0.05, alpha=0.05, power=0.8)
    assert plan.duration_seconds * 100 == pytest.approx(total, rel=1e-4)
    assert plan.canary_samples == pytest.approx(0.05 * total, abs=2)
    assert plan.power == pytest.approx(0.8, abs=1e-4)


def test_the_recursion_agrees_with_simulated_paths() -> None:
    """Four O'Brien-Fleming looks: the integral matches 200,000 simulated Brownian paths, with
    drift (power) and without (the false-alarm rate, below alpha)."""
    bounds = look_boundaries(0.05, 4, "obrien-fleming")
    fractions = np.arange(1, 5) / 4
    rng = np.random.default_rng(3)
    for drift in (0.0, 2.5):
        steps = rng.normal(drift / 4, math.sqrt(1 / 4), size=(200_000, 4))
        z = steps.cumsum(axis=1) / np.sqrt(fractions)
        simulated = float((z >= np.asarray(bounds)).any(axis=1).mean())
        computed = crossing_probability(drift, bounds, list(fractions))
        assert computed == pytest.approx(simulated, abs=0.004)
    assert crossing_probability(0.0, bounds, list(fractions)) < 0.05


def test_a_floor_stops_paths_that_pass() -> None:
    """Paths stopped by a pass boundary are not caught later: less power than without it."""
    bounds = look_boundaries(0.05, 4, "pocock")
    fractions = [0.25, 0.5, 0.75, 1.0]
    free = crossing_probability(2.5, bounds, fractions)
    floored = crossing_probability(2.5, bounds, fractions, [0.0, 0.0, 0.0, -math.inf])
    assert floored < free
    assert crossing_probability(2.5, bounds, fractions, [math.inf] * 4) == pytest.approx(
        stats.norm.sf(bounds[0] - 2.5 * 0.5), abs=1e-9
    )


def test_more_looks_cost_more_requests_and_pocock_more_than_obrien_fleming() -> None:
    """One look inflates nothing; spreading alpha over looks inflates the sample."""
    assert group_sequential_inflation(0.05, 0.8, 1, "obrien-fleming") == pytest.approx(1.0)
    obf = group_sequential_inflation(0.05, 0.8, 4, "obrien-fleming")
    pocock = group_sequential_inflation(0.05, 0.8, 4, "pocock")
    assert 1.0 < obf < pocock < 2.0


def test_the_outcome_delay_and_traffic_set_the_duration() -> None:
    """Four times the traffic needs a quarter of the counted time; the delay adds its wait."""
    slow = canary_duration(0.04, 0.005, rps=100, max_looks=1)
    fast = canary_duration(0.04, 0.005, rps=400, max_looks=1)
    delayed = canary_duration(0.04, 0.005, rps=400, max_looks=1, outcome_delay=300)
    assert fast.duration_seconds == pytest.approx(slow.duration_seconds / 4, rel=1e-3)
    assert delayed.duration_seconds == pytest.approx(fast.duration_seconds + 300, rel=1e-3)


def test_looks_below_min_samples_cannot_decide() -> None:
    """A minSamples no early look reaches makes the plan as slow as waiting for the last."""
    early = canary_duration(0.04, 0.01, rps=200, max_looks=4)
    late = canary_duration(0.04, 0.01, rps=200, max_looks=4, min_samples=100_000)
    assert late.canary_samples >= 100_000 > early.canary_samples
    assert late.power >= 0.8


def simulated_detection(
    check: KpiCheck, *, rps: float, drop: float, interval: float, runs: int, seed: int
) -> float:
    """Share of ``runs`` canaries at 5 % of ``rps`` (CTR 4 %, the canary's ``drop`` lower)
    that the real judge fails at one of 4 looks ``interval`` apart: Poisson
    requests, Bernoulli clicks, each counted once ``outcomeDelay`` has passed."""
    rng = np.random.default_rng(seed)
    caught = 0
    for _ in range(runs):
        canary_n = canary_clicks = primary_n = primary_clicks = 0
        settled_before = 0.0
        for look in range(1, 5):
            settled = max(look * interval - check.outcome_delay_seconds, 0.0)
            new_canary = int(rng.poisson(rps * 0.05 * (settled - settled_before)))
            new_primary = int(rng.poisson(rps * 0.95 * (settled - settled_before)))
            canary_n, primary_n, settled_before = (
                canary_n + new_canary,
                primary_n + new_primary,
                settled,
            )
            canary_clicks += int(rng.binomial(new_canary, 0.04 - drop))
            primary_clicks += int(rng.binomial(new_primary, 0.04))
            verdict = judge_kpi(
                check,
                RateSample(canary_n, canary_clicks),
                RateSample(primary_n, primary_clicks),
                look=look,
            ).verdict
            if verdict is not Verdict.INCONCLUSIVE:
                caught += verdict is Verdict.FAIL
                break
    return caught / runs


def test_the_plan_counts_the_requests_that_come_not_the_ones_expected() -> None:
    """minSamples 5,000 at 1,000 rps for a 1-point drop: only the last look can reach it. The
    plan that decided by the expected count stopped where that look expects exactly 5,000
    canary requests and promised 0.97; half the canaries then have fewer and cannot be judged
    (2,000 simulated: 48 % caught). With the Poisson chance of reaching minSamples the plan
    runs longer and the real judge catches what it promises."""
    check = KpiCheck.model_validate(
        {"name": "ctr", "outcome": "click", "kind": "rate", "direction": "higher",
         "margin": 0.005, "minSamples": 5000, "outcomeDelay": 300, "maxLooks": 4}
    )  # fmt: skip
    plan = canary_duration(0.04, 0.01, rps=1000, outcome_delay=300, min_samples=5000, margin=0.005)
    detected = simulated_detection(
        check, rps=1000, drop=0.01, interval=plan.interval_seconds, runs=2000, seed=17
    )
    standard_error = math.sqrt(plan.power * (1 - plan.power) / 2000)
    assert detected == pytest.approx(plan.power, abs=3.5 * standard_error)
    assert plan.power == pytest.approx(0.8, abs=0.01)


def test_an_impossible_plan_is_an_input_error() -> None:
    """A drop as large as the rate, or no traffic, is refused in one line."""
    with pytest.raises(InputError, match="is not a plan"):
        canary_duration(0.04, 0.04, rps=100)
    with pytest.raises(InputError, match="not a traffic plan"):
        canary_duration(0.04, 0.005, rps=0)


def test_the_benchmark_ends_with_its_summary_line() -> None:
    """benchmarks/kpi_gate_power.py's last line is the one the issue asks for."""
    script = Path(__file__).parent.parent / "benchmarks/kpi_gate_power.py"
    result = subprocess.run(
        [sys.executable, str(script), "--runs", "10", "--mean-runs", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"A/A false rollbacks \d+\.\d% of 10, A/B detected \d+\.\d% of 10, median decision \d+ s",
        last,
    ), last


def benchmark_module() -> ModuleType:
    """benchmarks/kpi_gate_power.py, imported from its file (benchmarks is not a package)."""
    path = Path(__file__).parent.parent / "benchmarks/kpi_gate_power.py"
    spec = importlib.util.spec_from_file_location("kpi_gate_power", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_counts_requests_to_the_fraction_of_a_second() -> None:
    """At 5,000 rps a plan's last look comes 11.6 s after outcomeDelay: the primary's 4,750
    requests a second over 11.6 s are counted, not over 11 s (whole seconds lost 5 % of the
    requests, and 1.7 points of the simulated detection)."""
    samples = benchmark_module().arm_samples(
        np.random.default_rng(5), 4750.0, 0.04, interval=77.9, looks=4, delay=300.0,
        click_delay=30.0,
    )  # fmt: skip
    expected = 4750.0 * (4 * 77.9 - 300.0)
    assert [sample.n for sample in samples[:3]] == [0, 0, 0]
    assert samples[3].n == pytest.approx(expected, abs=4 * math.sqrt(expected))
    assert samples[3].successes == pytest.approx(0.04 * expected, abs=4 * math.sqrt(expected))

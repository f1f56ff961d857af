"""The KPI judge's false rollbacks and its power, by simulating many canaries look by look.

Each simulated canary serves ``--share`` (5 %) of ``--rps`` requests per second beside the
primary. A request is clicked with probability ``--ctr`` (the canary's lowered by ``--drop`` in
the A/B runs); a click arrives an exponential time after its request (mean ``--click-delay``
seconds). Looks come every ``--interval`` seconds, by default the interval
:func:`controller.gates.kpi_power.canary_duration` computes for the stated power, and each
counts the requests older than ``outcomeDelay`` with the clicks that arrived by then, as
:mod:`controller.gates.kpi_samples` does, and runs the real :func:`judge_kpi` on them. A
canary is rolled back at its first FAIL, promoted at its first PASS.

Clicks are Bernoulli draws at a base CTR of 4 %, not the recommender generator's (no
``models/recommender/`` exists yet); the judge sees only counts, so a generator changes the
inputs, not the judge.

Revenue per request (``kind: mean``) is simulated A/A only, to show the heavy-tail test keeps
its false rollbacks at or below alpha: 3 % of requests buy, for a log-normal (sigma 1.5) or a
Pareto (tail index 1.5, infinite variance) amount; the same runs through a Welch z-test on raw
values show what winsorizing saves.

The last line reads ``A/A false rollbacks X% of N, A/B detected Y% of N, median decision T s``
(the CTR runs; the decision time is the median look time of the detected A/B canaries).
*Detected* means the judge failed the canary at a look: rolled back and quarantined, the KPI
named in the rollback commit, which is what the check's ``power`` is planned for. A canary left
inconclusive after ``maxLooks`` is not counted: it is held until ``inconclusiveLimit`` aborts
it, without blame, so nobody learns that the KPI dropped; the A/B line gives that share apart.
With the default 20,000 canaries a scenario the standard error is 0.3 points at 80 %.
``--table`` prints the README's table of canary durations instead. Run from the repository
root::

    python benchmarks/kpi_gate_power.py                 # 20,000 A/A + 20,000 A/B, about 20 s
    python benchmarks/kpi_gate_power.py --table
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.analysis_types import Verdict
from controller.gates.kpi_judge import judge_kpi
from controller.gates.kpi_policy import KpiCheck
from controller.gates.kpi_power import CanaryDuration, canary_duration
from controller.gates.kpi_samples import MeanSample, RateSample


@dataclass(frozen=True)
class Outcome:
    """How one simulated canary ended: its verdict and the look time that decided it."""

    verdict: Verdict
    seconds: float | None


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000, help="canaries per scenario")
    parser.add_argument("--ctr", type=float, default=0.04, help="the primary's click rate")
    parser.add_argument("--drop", type=float, default=0.005, help="A/B: canary CTR lower by")
    parser.add_argument("--rps", type=float, default=200.0, help="requests per second in all")
    parser.add_argument("--share", type=float, default=0.05, help="the canary's share")
    parser.add_argument("--looks", type=int, default=4, help="maxLooks")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--power", type=float, default=0.8)
    parser.add_argument(
        "--spending", choices=("obrien-fleming", "pocock"), default="obrien-fleming"
    )
    parser.add_argument("--margin", type=float, default=0.005, help="non-inferiority margin")
    parser.add_argument("--min-samples", type=int, default=2000, help="minSamples")
    parser.add_argument("--delay", type=float, default=300.0, help="outcomeDelay, seconds")
    parser.add_argument("--click-delay", type=float, default=30.0, help="mean click delay, s")
    parser.add_argument(
        "--interval", type=float, default=None, help="seconds between looks (default: planned)"
    )
    parser.add_argument("--mean-runs", type=int, default=400, help="revenue A/A canaries each")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--table", action="store_true", help="print the README's table")
    return parser.parse_args(argv)


def ctr_check(args: argparse.Namespace) -> KpiCheck:
    return KpiCheck.model_validate(
        {
            "name": "ctr",
            "outcome": "click",
            "kind": "rate",
            "direction": "higher",
            "margin": args.margin,
            "minSamples": args.min_samples,
            "outcomeDelay": args.delay,
            "alpha": args.alpha,
            "power": args.power,
            "maxLooks": args.looks,
            "spending": args.spending,
        }
    )


def arm_samples(
    rng: np.random.Generator,
    rate: float,
    ctr: float,
    *,
    interval: float,
    looks: int,
    delay: float,
    click_delay: float,
) -> list[RateSample]:
    """One revision's sample at each look: requests a Poisson process at ``rate`` per second,
    each clicked with probability ``ctr``, the click arriving an exponential time (mean
    ``click_delay``) after its request. Look k, at ``k interval`` seconds, counts the requests
    older than ``delay`` and their clicks that arrived by then, as
    :mod:`controller.gates.kpi_samples` does.

    Request times are continuous, not whole seconds: at 5,000 rps the last look of a plan
    counts 11.6 s of requests, and rounding that down to 11 s lost 5 % of them (detection
    78.3 % against a plan of 80 %)."""
    settled = np.maximum(np.arange(1, looks + 1) * interval - delay, 0.0)
    windows = np.diff(settled, prepend=0.0)  # requests between one look's cut and the next
    requests = rng.poisson(rate * windows)
    clicks = rng.binomial(requests, ctr)
    # Given their number, a Poisson process's times are uniform in their window.
    served = np.repeat(settled - windows, clicks) + rng.random(int(clicks.sum())) * np.repeat(
        windows, clicks
    )
    arrived = served + rng.exponential(click_delay, served.size)
    counted = np.cumsum(requests)
    return [
        RateSample(
            int(counted[k]),
            int(np.count_nonzero((served < settled[k]) & (arrived <= (k + 1) * interval))),
        )
        for k in range(looks)
    ]


def run_ctr(
    args: argparse.Namespace,
    check: KpiCheck,
    interval: float,
    drop: float,
    rng: np.random.Generator,
) -> Outcome:
    def arm(rate: float, ctr: float) -> list[RateSample]:
        return arm_samples(
            rng, rate, ctr, interval=interval, looks=args.looks, delay=args.delay,
            click_delay=args.click_delay,
        )  # fmt: skip

    canary = arm(args.rps * args.share, args.ctr - drop)
    primary = arm(args.rps * (1 - args.share), args.ctr)
    for look in range(1, args.looks + 1):
        judged = judge_kpi(check, canary[look - 1], primary[look - 1], look=look)
        if judged.verdict in (Verdict.FAIL, Verdict.PASS):
            return Outcome(judged.verdict, look * interval)
    return Outcome(Verdict.INCONCLUSIVE, None)


def revenue(rng: np.random.Generator, size: int, tail: str) -> np.ndarray:
    """Revenue of ``size`` requests: 3 % buy, for a log-normal or a Pareto amount."""
    buys = rng.random(size) < 0.03
    if tail == "log-normal":
        amounts = rng.lognormal(3.0, 1.5, size)
    else:
        amounts = 20.0 * (1 + rng.pareto(1.5, size))
    return np.where(buys, amounts, 0.0)


def raw_welch_fails(canary: np.ndarray, primary: np.ndarray, level: float) -> bool:
    """Welch's z-test of "canary lower" on unwinsorized values, at ``level``."""
    from scipy import special

    se = math.sqrt(canary.var(ddof=1) / canary.size + primary.var(ddof=1) / primary.size)
    return se > 0 and float(special.ndtr(-(primary.mean() - canary.mean()) / se)) <= level


def run_revenue(
    args: argparse.Namespace, interval: float, tail: str, rng: np.random.Generator
) -> tuple[bool, bool]:
    """One A/A canary on revenue: (rolled back by the judge, by a raw Welch test)."""
    check = ctr_check(args).model_copy(
        update={"name": "revenue", "outcome": "revenue", "kind": "mean", "margin": 0.05}
    )
    settled_last = max(args.looks * interval - args.delay, 0.0)
    canary = revenue(rng, int(rng.poisson(args.rps * args.share * settled_last)), tail)
    primary = revenue(rng, int(rng.poisson(args.rps * (1 - args.share) * settled_last)), tail)
    judged_fail = raw_fail = False
    for look in range(1, args.looks + 1):
        fraction = max(look * interval - args.delay, 0.0) / settled_last
        c, p = canary[: int(canary.size * fraction)], primary[: int(primary.size * fraction)]
        judged = judge_kpi(check, MeanSample(c), MeanSample(p), look=look)
        if not judged_fail and judged.verdict is Verdict.FAIL:
            judged_fail = True
        if judged.level is not None and not raw_fail:
            raw_fail = raw_welch_fails(c, p, judged.level)
    return judged_fail, raw_fail


def share_line(count: int, runs: int) -> str:
    share = count / runs if runs else 0.0
    return f"{share:.1%} ± {math.sqrt(share * (1 - share) / runs) if runs else 0:.1%}"


def planned(args: argparse.Namespace, *, drop: float, rps: float, margin: float) -> CanaryDuration:
    """The plan ``kpi_power`` computes for a drop of ``drop`` at ``rps`` with ``margin``, the
    rest (rate, share, alpha, power, looks, delay, minSamples) from the arguments."""
    return canary_duration(
        args.ctr,
        drop,
        rps=rps,
        share=args.share,
        alpha=args.alpha,
        power=args.power,
        max_looks=args.looks,
        spending=args.spending,
        outcome_delay=args.delay,
        min_samples=args.min_samples,
        margin=margin,
    )


def table(args: argparse.Namespace) -> None:
    """The README's table: canary durations by traffic and drop (margin = the drop, at
    least the policy's: a drop inside the margin is mostly passed, as it should be)."""
    print(
        f"| requests/s | canary ({args.share:.0%}) | CTR {args.ctr:.1%} → | margin | "
        "look interval | canary duration | canary requests |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rps in (50, 200, 1000, 5000):
        for drop in (0.01, 0.005, 0.0025):
            margin = min(drop, args.margin)
            plan = planned(args, drop=drop, rps=rps, margin=margin)
            print(
                f"| {rps:,} | {rps * args.share:g}/s | {args.ctr - drop:.2%} | "
                f"{margin * 100:.2f} pts | {plan.interval_seconds / 60:.1f} min | "
                f"{plan.duration_seconds / 60:,.0f} min | {plan.canary_samples:,} |"
            )
    print(
        f"alpha {args.alpha}, power {args.power}, {args.looks} looks ({args.spending}), "
        f"outcomeDelay {args.delay:g} s, minSamples {args.min_samples:,}"
    )


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if args.table:
        table(args)
        return 0
    started = time.perf_counter()
    check = ctr_check(args)
    plan = planned(args, drop=args.drop, rps=args.rps, margin=args.margin)
    interval = args.interval if args.interval is not None else plan.interval_seconds
    print(
        f"plan: CTR {args.ctr:.2%} → {args.ctr - args.drop:.2%} at {args.share:.0%} of "
        f"{args.rps:g} rps, alpha {args.alpha}, power {args.power}, {args.looks} looks "
        f"({args.spending}), outcomeDelay {args.delay:g} s: computed power {plan.power:.3f} "
        f"with looks every {plan.interval_seconds:.0f} s, "
        f"{plan.duration_seconds / 60:.1f} min, {plan.canary_samples:,} canary requests; "
        f"simulating looks every {interval:.0f} s"
    )
    rng = np.random.default_rng(args.seed)
    aa = [run_ctr(args, check, interval, 0.0, rng) for _ in range(args.runs)]
    ab = [run_ctr(args, check, interval, args.drop, rng) for _ in range(args.runs)]
    aa_fail = sum(o.verdict is Verdict.FAIL for o in aa)
    aa_pass = sum(o.verdict is Verdict.PASS for o in aa)
    ab_fail = [o.seconds for o in ab if o.verdict is Verdict.FAIL and o.seconds is not None]
    ab_pass = sum(o.verdict is Verdict.PASS for o in ab)
    ab_open = args.runs - len(ab_fail) - ab_pass
    median = statistics.median(ab_fail) if ab_fail else float("nan")
    print(
        f"ctr A/A ({args.ctr:.2%} both): {args.runs} canaries, rolled back "
        f"{share_line(aa_fail, args.runs)} (alpha {args.alpha}), passed {aa_pass / args.runs:.1%}"
    )
    print(
        f"ctr A/B ({args.ctr:.2%} → {args.ctr - args.drop:.2%}): {args.runs} canaries, detected "
        f"{share_line(len(ab_fail), args.runs)} (power {args.power}), passed "
        f"{ab_pass / args.runs:.1%}, left inconclusive {ab_open / args.runs:.1%} (aborted by "
        f"inconclusiveLimit, not caught), median decision {median:.0f} s"
    )
    for tail in ("log-normal", "pareto"):
        runs = [run_revenue(args, interval, tail, rng) for _ in range(args.mean_runs)]
        judged = sum(judged for judged, _ in runs)
        raw = sum(raw for _, raw in runs)
        print(
            f"revenue A/A ({tail}, 3% buy): {args.mean_runs} canaries, rolled back "
            f"{share_line(judged, args.mean_runs)} by the judge, "
            f"{share_line(raw, args.mean_runs)} by Welch on raw values (alpha {args.alpha})"
        )
    print(f"({time.perf_counter() - started:.1f} s)")
    print(
        f"A/A false rollbacks {aa_fail / args.runs:.1%} of {args.runs}, A/B detected "
        f"{len(ab_fail) / args.runs:.1%} of {args.runs}, median decision {median:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The blend's requests on one regime's days, for a rollout that replays them.

The graph sends the blend only black swans (about 2 % of days), too few for a canary's judge
to decide on within a step's looks, so the blend's release replays these requests instead
(``graphTraffic.replay``; see README, "InferenceGraphs"). Each row is what the blend is sent
on one day of the regime: the classifier's regime probabilities and both specialists' ``p_up``
(:func:`models.market_regime.pipeline.model_inputs`), from the members trained on the seeded
market's training rows, on the holdout's days of that regime, which they never saw. One JSON
row per line, rounded to 6 decimals; the same arguments write the same file::

    python -m models.market_regime.replay_payloads            # black swans, the committed file
    python -m models.market_regime.replay_payloads --regime volatile --out /tmp/volatile.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from models.market_regime.market import REGIME, REGIMES, market_frame
from models.market_regime.pipeline import fit_members, model_inputs, split_holdout

__all__ = ["DEFAULT_OUT", "main", "regime_requests", "to_jsonl"]

#: The committed replay file of the black-swan branch.
DEFAULT_OUT = (
    Path(__file__).resolve().parents[2]
    / "loadtests"
    / "payloads"
    / "market-regime-black-swan.jsonl"
)
_DECIMALS = 6


def regime_requests(regime: str, *, seed: int = 7, rows: int = 20_000) -> pd.DataFrame:
    """The blend's inputs on the holdout's days of ``regime``, in time order."""
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}, not {regime!r}")
    train, holdout = split_holdout(market_frame(rows, seed))
    days = holdout[holdout[REGIME] == regime]
    return model_inputs("blend", days, fit_members(train, seed)).round(_DECIMALS)


def to_jsonl(requests: pd.DataFrame) -> str:
    """One JSON row per line."""
    records = requests.to_dict(orient="records")
    return "".join(json.dumps({str(k): float(v) for k, v in r.items()}) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.market_regime.replay_payloads", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--regime", default="black_swan", choices=REGIMES)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    requests = regime_requests(args.regime, seed=args.seed, rows=args.rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_jsonl(requests), encoding="utf-8")
    print(f"{len(requests)} {args.regime} requests of the blend written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

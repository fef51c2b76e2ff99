"""The default-model rule (benchmarks/choose_default.py) on hand-made scores."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "choose_default.py"
_SPEC = importlib.util.spec_from_file_location("choose_default", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
rule = importlib.util.module_from_spec(_SPEC)
sys.modules["choose_default"] = rule  # dataclasses look their module up
_SPEC.loader.exec_module(rule)


def _model(name: str, ct: tuple[float, float], mr: tuple[float, float], seconds: float):
    per = {"CT": ct, "MR": mr}
    overall = tuple(sum(v[i] for v in per.values()) / 2 for i in (0, 1))
    return rule.Scored(name, per, overall, seconds)


BASE = _model("litemedsam", (0.85, 0.97), (0.38, 0.66), 100.0)


def test_fastest_strong_candidate_wins() -> None:
    slow = _model("slow", (0.86, 0.97), (0.60, 0.70), 100.0)
    fast = _model("fast", (0.845, 0.96), (0.50, 0.66), 10.0)  # -0.5 DSC, -1 NSD on CT: allowed
    assert rule.choose([slow, fast], BASE)[0] == "fast"


def test_equally_fast_strong_candidates_go_to_the_more_accurate() -> None:
    quarter = _model("quarter", (0.86, 0.97), (0.50, 0.70), 100.0)
    half = _model("half", (0.86, 0.97), (0.55, 0.70), 100.0)
    assert rule.choose([quarter, half], BASE)[0] == "half"


def test_a_modality_loss_disqualifies() -> None:
    ct_dsc = _model("ct_dsc", (0.83, 0.97), (0.70, 0.80), 1.0)  # CT -2 DSC points
    mr_nsd = _model("mr_nsd", (0.86, 0.98), (0.60, 0.63), 1.0)  # MR -3 NSD points
    assert rule.losses(ct_dsc, BASE) == ["CT -2.0 DSC / +0.0 NSD"]
    assert rule.losses(mr_nsd, BASE) == ["MR +22.0 DSC / -3.0 NSD"]
    assert rule.choose([ct_dsc, mr_nsd], BASE) == (
        "litemedsam",
        "no candidate qualifies: the baseline stays",
    )


def test_without_a_strong_candidate_the_most_accurate_qualifying_one() -> None:
    small = _model("small", (0.85, 0.97), (0.39, 0.66), 1.0)  # +0.5 points only
    smaller = _model("smaller", (0.85, 0.97), (0.385, 0.66), math.nan)
    name, reason = rule.choose([smaller, small], BASE)
    assert name == "small" and "most accurate" in reason

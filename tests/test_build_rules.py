"""scripts/build_models.py's choice among student sizes (issue 17's rule, on dev scores)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_models.py"
spec = importlib.util.spec_from_file_location("build_models", SCRIPT)
build_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_models)

KINDS = {"upos": "tag", "ner": "span"}


def row(hidden: int, upos: float, ner: float, speed: int) -> dict:
    return {"hidden": hidden, "dev": {"upos": upos, "ner": ner}, "tokens_per_second": speed}


# today's en-core sweep, in shape: the small size misses the POS target, no size meets NER's
ROWS = [row(256, 0.9591, 0.7666, 16_000), row(384, 0.9614, 0.7717, 14_000), row(512, 0.9629, 0.7693, 11_000)]


def test_the_fastest_size_that_meets_every_target():
    assert build_models.choose_size(ROWS, KINDS, {"upos": 0.95, "ner": 0.75})["hidden"] == 256
    assert build_models.choose_size(ROWS, KINDS, {"upos": 0.9600, "ner": 0.765})["hidden"] == 384


def test_else_the_closest_among_the_sizes_that_meet_what_can_be_met():
    # 256 misses UPOS, which the others meet; of those, 384 is nearest NER's target, and 512
    # (0.24 below it, within the slack) is slower: 384. A 512 a point above on NER wins.
    assert build_models.choose_size(ROWS, KINDS, {"upos": 0.960, "ner": 0.820})["hidden"] == 384
    slow_best = ROWS[:2] + [row(512, 0.9629, 0.7800, 11_000)]
    assert build_models.choose_size(slow_best, KINDS, {"upos": 0.960, "ner": 0.820})["hidden"] == 512


def test_without_targets_the_fastest_within_the_slack_of_the_best():
    assert build_models.choose_size(ROWS, KINDS, {})["hidden"] == 512  # 384 is 0.15 below on UPOS
    close = [row(256, 0.9625, 0.7690, 16_000)] + ROWS[1:]
    assert build_models.choose_size(close, KINDS, {})["hidden"] == 256

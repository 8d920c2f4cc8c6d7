"""Readable output for many classes (issue 18): the printed summary keeps its columns,
the report shows top confusions beyond 20 classes, heatmap titles wrap."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leafattack.cli import format_run_summary
from leafattack.data import GTSRB_CLASSES
from leafattack.report.confusions import (
    MAX_MATRIX_CLASSES,
    fig_confusion_auto,
    top_confusions,
)
from leafattack.report.figures import fig_position_heatmaps
from leafattack.report.text import shorten, wrap_title

LONG = [c for c in GTSRB_CLASSES if len(c) > 30]


def _trials(classes: list[str], seed: int = 0, n: int = 600) -> pd.DataFrame:
    """Synthetic attacked trials: 3 signs per class, predictions mostly right, some wrong."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, len(classes), n)
    wrong = rng.random(n) < 0.4
    pred = np.where(wrong, (true + rng.integers(1, 4, n)) % len(classes), true)
    pos = rng.integers(0, 9, n)
    copy = rng.integers(0, 3, n)
    return pd.DataFrame(
        {
            "true_name": [classes[i] for i in true],
            "pred_name": [classes[i] for i in pred],
            "sign_id": [f"{classes[i]}#{k}" for i, k in zip(true, copy, strict=True)],
            "success": wrong,
            "true_conf": rng.random(n),
            "position": pos,
            "x": (pos % 3 + 0.5) / 3,
            "y": (pos // 3 + 0.5) / 3,
        }
    )


def test_shorten_and_wrap() -> None:
    assert LONG  # GTSRB has class names longer than the label column
    assert shorten("stop", 10) == "stop"
    cut = shorten(LONG[0], 20)
    assert len(cut) == 20 and cut.endswith("\u2026") and LONG[0].startswith(cut[:-1])
    for name in GTSRB_CLASSES:
        wrapped = wrap_title(name, 30, 2)
        assert all(len(line) <= 30 for line in wrapped.split("\n"))
        assert len(wrapped.split("\n")) <= 2
        if len(name) <= 30:
            assert wrapped == name


def test_printed_summary_keeps_its_columns_with_long_class_names() -> None:
    rows = [("overall", "all", 300, 40, 0.1333)]
    rows += [("sign_class", name, 10 + i, i, i / (10 + i)) for i, name in enumerate(LONG)]
    rows += [("size", 0.3, 300, 40, 0.1333)]
    summary = pd.DataFrame(
        [
            {"factor": f, "level": lv, "trials": t, "successes": s, "rate": r,
             "ci_low": r / 2, "ci_high": min(1.0, 2 * r)}
            for f, lv, t, s, r in rows
        ]
    )  # fmt: skip
    result = SimpleNamespace(
        summary=summary, clean=pd.DataFrame({"correct": [True] * 4}), run_dir=Path("r"),
        resumed_from=0, n_trials=300, seconds=0.0, trials_per_second=0.0,
    )  # fmt: skip
    text = format_run_summary(result)
    table = [ln for ln in text.splitlines() if "%" in ln and ln.startswith("  ")]
    assert len(table) == len(rows)
    # the trials column is characters 32..40 in every row and header
    for line in table:
        assert line[32:41].strip().isdigit() and line[41] == " ", line
    headers = [ln for ln in text.splitlines() if "trials" in ln and "rate" in ln]
    assert len(headers) == 3
    for header in headers:
        assert header[32:41] == "   trials", header
    shown = [ln for ln in table if "\u2026" in ln]
    assert len(shown) == sum(len(n) > 29 for n in LONG) > 0
    for name in LONG:
        assert any(ln.strip().startswith(shorten(name, 29)) for ln in table)


def test_top_confusions_count_pairs() -> None:
    t = _trials(list(GTSRB_CLASSES))
    top = top_confusions(t, n=10)
    pairs = Counter((a, b) for a, b in zip(t["true_name"], t["pred_name"], strict=True) if a != b)
    expected = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:10]
    assert list(zip(top["true_name"], top["pred_name"], top["trials"], strict=True)) == [
        (a, b, k) for (a, b), k in expected
    ]
    per_class = Counter(t["true_name"])
    for row in top.itertuples():
        assert row.share == pytest.approx(row.trials / per_class[row.true_name])
        sel = (t["true_name"] == row.true_name) & (t["pred_name"] == row.pred_name)
        assert row.signs == t.loc[sel, "sign_id"].nunique()


def test_report_confusion_is_a_matrix_up_to_20_classes_then_top_pairs() -> None:
    few = _trials(list(GTSRB_CLASSES[:MAX_MATRIX_CLASSES]))
    fig = fig_confusion_auto(few)
    assert len(fig.axes[0].images) == 1  # the full matrix
    many = _trials(list(GTSRB_CLASSES))
    fig = fig_confusion_auto(many)
    ax = fig.axes[0]
    assert not ax.images
    heights = [p.get_width() for p in ax.patches]  # horizontal bars
    assert heights == list(top_confusions(many)["trials"].astype(float))
    assert "43 classes" in ax.get_title()


def test_heatmap_titles_wrap() -> None:
    classes = LONG[:4]
    t = _trials(classes, n=200)
    images = {c: np.full((48, 48, 3), 200, np.uint8) for c in classes}
    fig = fig_position_heatmaps(t, images, (3, 3), "success")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(classes)
    for title, cls in zip(titles, sorted(classes), strict=True):
        name_lines = title.split("\n")[:-1]  # the last line is the detail
        assert all(len(line) <= 30 for line in name_lines)
        assert " ".join(name_lines).replace("\u2026", "") in cls or len(name_lines) == 2

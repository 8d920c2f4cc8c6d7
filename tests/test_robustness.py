"""Survival of found attacks under viewing changes, and their transfer to other models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leafattack import api
from leafattack.analysis.robustness import sign_level, survival_summary
from leafattack.cli import main
from leafattack.config import RunConfig
from leafattack.grid import GridSpec

GRID = GridSpec(species=("maple", "oak"), sizes=(0.35, 0.6), angles=(0.0, 90.0),
                positions=(3, 3))


@pytest.fixture(scope="module")
def fooled(tmp_path_factory: pytest.TempPathFactory, signs4: Path) -> api.RunResult:
    cfg = RunConfig(model="fixture_models:template", out=str(tmp_path_factory.mktemp("rb") / "r"),
                    grid=GRID, signs=str(signs4), quiet=True, batch_size=64, device="cpu")
    res = api.run(cfg)
    assert res.trials["success"].any()
    return res


def test_identity_views_keep_every_success(fooled: api.RunResult) -> None:
    res = api.robustness(fooled.run_dir, views=3, view_spec="distance=1:1", quiet=True,
                         device="cpu")
    best = pd.read_csv(fooled.run_dir / "best.csv")
    n_success = int(best["success"].sum())
    assert len(res.rows) == 3 * n_success
    assert res.rows["success"].all() and res.rows["clean_correct"].all()
    overall = res.summary[res.summary["factor"] == "overall"].iloc[0]
    assert overall["rate"] == 1.0 and overall["signs"] == n_success


def test_views_are_seeded_and_recorded(fooled: api.RunResult) -> None:
    a = api.robustness(fooled.run_dir, views=4, seed=5, quiet=True, device="cpu")
    first = a.rows_path.read_bytes()
    b = api.robustness(fooled.run_dir, views=4, seed=5, quiet=True, device="cpu")
    assert b.rows_path.read_bytes() == first
    assert {"distance", "yaw", "pitch", "brightness", "blur", "noise"} <= set(a.rows.columns)
    assert a.rows["distance"].between(1, 4).all() and a.rows["yaw"].abs().le(30).all()
    c = api.robustness(fooled.run_dir, views=4, seed=6, quiet=True, device="cpu")
    assert not np.allclose(c.rows["distance"], a.rows["distance"])


def test_all_successes(fooled: api.RunResult) -> None:
    res = api.robustness(fooled.run_dir, views=1, view_spec="distance=1:1",
                         all_successes=True, quiet=True, device="cpu")
    assert len(res.rows) == int(fooled.trials["success"].sum())
    assert res.rows["success"].all()


def test_transfer_to_itself_and_to_a_model_that_ignores_the_image(fooled: api.RunResult) -> None:
    res = api.transfer(fooled.run_dir, ["fixture_models:template", "fixture_models:constant"],
                       quiet=True, device="cpu")
    rows = res.rows.set_index("model")
    own = rows.loc["fixture_models:template"]
    assert own["clean_correct"].all() and own["success"].all()  # its own successes replay
    const = rows.loc["fixture_models:constant"]
    assert not const["success"].any()  # a model that ignores the image is never fooled
    # only signs of its one class are correct when clean
    best = pd.read_csv(fooled.run_dir / "best.csv")
    best = best[best["success"]]
    expected = (best["true_name"] == "addedLane").to_numpy()
    assert (const["clean_correct"].to_numpy() == expected).all()
    summary = res.summary.set_index("model")
    assert summary.loc["fixture_models:template", "rate"] == 1.0
    assert (fooled.run_dir / "figures" / "transfer.png").exists()


def test_sign_level_rate_is_the_mean_of_sign_rates() -> None:
    rows = pd.DataFrame({"sign_id": [0, 0, 0, 0, 1, 2, 2], "success": [1, 1, 1, 0, 0, 1, 0]})
    k, rate, lo, hi = sign_level(rows["success"], rows["sign_id"], seed=0)
    assert k == 3 and rate == pytest.approx((0.75 + 0.0 + 0.5) / 3)
    assert 0.0 <= lo <= rate <= hi <= 0.75
    same = pd.DataFrame({"sign_id": [0, 0, 1, 1], "success": [1, 0, 0, 1]})
    assert sign_level(same["success"], same["sign_id"], seed=0)[1:] == (0.5, 0.5, 0.5)


def test_survival_counts_only_views_that_leave_the_clean_sign_correct() -> None:
    rows = pd.DataFrame({
        "sign_id": [0, 0, 0, 1, 1],
        "clean_correct": [True, True, False, True, True],
        "success": [True, False, False, True, True],
        "distance": [1.0, 2.0, 3.0, 1.0, 4.0],
    })
    s = survival_summary(rows, seed=0, ranges={"distance": (1.0, 4.0)})
    overall = s[s["factor"] == "overall"].iloc[0]
    assert overall["rate"] == pytest.approx((0.5 + 1.0) / 2) and overall["views"] == 4
    assert set(s.loc[s["factor"] == "distance", "level"]) == {"1-1.75", "1.75-2.5", "3.25-4"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--views", "0"], "--views 0"),
        (["--view-spec", "yaw=5:1"], "yaw"),
    ],
)
def test_bad_robustness_input_is_one_line(
    fooled: api.RunResult, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    assert main(["robustness", str(fooled.run_dir), "--quiet", "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]


def test_bad_transfer_input_is_one_line(
    fooled: api.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transfer", str(fooled.run_dir), "--models", "fixture_models:gtsrb_mean",
                 "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not classes of the model" in err[0]
    assert main(["transfer", str(tmp_path), "--models", "default", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]


def test_report_shows_survival_and_transfer(fooled: api.RunResult) -> None:
    from leafattack.report.html import write_report

    # the template model loses clean signs under strong views: keep them mild
    res = api.robustness(fooled.run_dir, views=3, view_spec="brightness=0.9:1.1,blur=0:0.5",
                         quiet=True, device="cpu")
    assert res.rows["clean_correct"].any()
    api.transfer(fooled.run_dir, ["fixture_models:template"], quiet=True, device="cpu")
    html = write_report(fooled.run_dir).read_text()
    assert "Do the attacks last?" in html
    assert 'id="fig-survival"' in html and 'id="fig-transfer"' in html

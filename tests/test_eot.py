"""Search with Expectation over Transformation (``search --eot M``), and ``robustness``,
``transfer`` and ``controls`` on search directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixture_search import search_config

import leafattack.engine.search as engine_search
from leafattack import api
from leafattack.adaptive import margin_loss
from leafattack.adaptive.eot import draw_eot_views, eot_judge, see_eot
from leafattack.cli import main
from leafattack.compose.views import ViewSpec, apply_views
from leafattack.criteria import build_criterion
from leafattack.engine.found import chosen_queries, found_plan, open_search

SEARCH_FILES = ("queries.csv", "query_leaves.csv", "best.csv", "best_leaves.csv", "curve.csv")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, signs4: Path) -> api.SearchResult:
    """A plain search with K = 2 leaves per scene (some signs fooled, some not)."""
    out = tmp_path_factory.mktemp("eot") / "plain"
    res = api.search(search_config(out, signs4, method="evolution", budget=48,
                                   leaves_per_scene=2))
    assert res.best["success"].any() and not res.best["success"].all()
    return res


# --- EOT search -------------------------------------------------------------------------


@pytest.mark.parametrize("m", [3, pytest.param(8, marks=pytest.mark.slow)])
def test_eot_over_identity_views_is_the_plain_search(
    plain: api.SearchResult, tmp_path: Path, signs4: Path, m: int
) -> None:
    # M identity views of every query: the plain search with budget // M queries per sign
    res = api.search(search_config(tmp_path / "eot", signs4, method="evolution",
                                   budget=48 * m, eot=m, view_spec="identity",
                                   leaves_per_scene=2))
    for name in SEARCH_FILES:
        assert (res.run_dir / name).read_bytes() == (plain.run_dir / name).read_bytes(), name
    for png in sorted((plain.run_dir / "best").glob("*.png")):
        assert (res.run_dir / "best" / png.name).read_bytes() == png.read_bytes()
    cfg = (res.run_dir / "config.toml").read_text()
    assert f"eot = {m}" in cfg and "eot" not in (plain.run_dir / "config.toml").read_text()


def test_search_report_counts_an_eot_search_in_queries(
    plain: api.SearchResult, tmp_path: Path, signs4: Path
) -> None:
    """An EOT search over identity views is the plain search at budget // M queries, so its
    report's curve (in queries, the unit of first_success) is the plain search's, not
    stretched over the budget in model evaluations."""
    from leafattack.report.search import fooled_by_budget, load_search, write_search_report

    res = api.search(search_config(tmp_path / "eot", signs4, method="evolution", budget=48 * 3,
                                   eot=3, view_spec="identity", leaves_per_scene=2))
    run, ref = load_search(res.run_dir), load_search(plain.run_dir)
    assert (run.budget, run.eot, run.queries) == (144, 3, 48) and ref.queries == 48
    pd.testing.assert_frame_equal(fooled_by_budget(run), fooled_by_budget(ref))
    assert fooled_by_budget(run)["budget"].max() == 48
    page = write_search_report(res.run_dir).read_text()
    assert "<td>144</td><td>3</td><td>48</td>" in page
    assert run.label == "evolution (K=2, EOT 3)" and ref.label == "evolution (K=2)"


def test_eot_judge_matches_a_per_view_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    b, m, c = 5, 4, 6
    logits = torch.randn(b * m, c, generator=gen) * 3
    labels = torch.tensor([0, 1, 2, 3, 4])
    crit = build_criterion(None, None)
    got = eot_judge(logits, labels, m, None, crit)
    for i in range(b):  # reference: one query at a time, one view at a time
        views = logits[i * m:(i + 1) * m]
        losses = [float(margin_loss(views[j:j + 1], labels[i:i + 1], None)) for j in range(m)]
        fooled = [int(views[j].argmax()) != int(labels[i]) for j in range(m)]
        probs = np.mean([torch.softmax(views[j].double(), 0).numpy() for j in range(m)], 0)
        assert float(got["loss"][i]) == pytest.approx(np.mean(losses), rel=1e-6)
        assert bool(got["success"][i]) == (sum(fooled) > m / 2)  # a strict majority
        assert int(got["pred_label"][i]) == int(np.argmax(probs))
        assert float(got["true_conf"][i]) == pytest.approx(probs[int(labels[i])], abs=1e-6)


def test_candidates_of_a_sign_share_their_views_and_the_seed_decides_them() -> None:
    spec = ViewSpec.approach()
    keys = [(3, 0), (5, 0)]
    a = draw_eot_views(spec, 4, 0, keys, (3, 16, 16))
    b = draw_eot_views(spec, 4, 0, keys, (3, 16, 16))
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert a.noise is not None and b.noise is not None and torch.equal(a.noise, b.noise)
    later = draw_eot_views(spec, 4, 0, [(3, 16)], (3, 16, 16))  # the same sign, a later round
    assert not np.array_equal(later.params["yaw"][0], a.params["yaw"][0])
    assert not np.array_equal(a.params["yaw"][0], a.params["yaw"][1])  # another sign
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    seen = see_eot(img.repeat(3, 1, 1, 1), np.array([0, 0, 1]), a)
    assert seen.shape == (12, 3, 16, 16)
    assert torch.equal(seen[0:4], seen[4:8])  # same sign, same views, noise included
    assert not torch.equal(seen[0:4], seen[8:12])
    # each view is the image seen under its parameters (noise aside: set to zero here)
    quiet = draw_eot_views(ViewSpec(yaw=(-30.0, 30.0), distance=(1.0, 3.0)), 4, 0, keys,
                           (3, 16, 16))
    one = see_eot(img, np.array([1]), quiet)
    ref = apply_views(img.repeat(4, 1, 1, 1), {k: v[1] for k, v in quiet.params.items()}, 0)
    assert torch.equal(one, ref)


def test_budget_counts_m_model_evaluations_per_query(
    tmp_path: Path, signs4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real = engine_search.classify_logits

    def counting(clf: object, images: torch.Tensor, model: str) -> torch.Tensor:
        seen.append(len(images))
        return real(clf, images, model)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_search, "classify_logits", counting)
    res = api.search(search_config(tmp_path / "s", signs4, method="random", budget=40, eot=4,
                                   view_spec="brightness=0.8:1.2,yaw=-10:10",
                                   stop_on_success=False))
    q = pd.read_csv(res.run_dir / "queries.csv")
    attacked = int(res.clean["attacked"].sum())
    assert (q.groupby("sign_id").size() == 10).all() and q["sign_id"].nunique() == attacked
    assert sum(seen) == 4 * len(q) == 40 * attacked


@pytest.mark.slow
def test_eot_search_resumes_by_replay_to_the_same_bytes(tmp_path: Path, signs4: Path) -> None:
    cfg = search_config(tmp_path / "r", signs4, method="evolution", budget=96, eot=3,
                        stop_on_success=False)
    first = api.search(cfg)
    rd = first.run_dir
    want = {n: (rd / n).read_bytes() for n in SEARCH_FILES}
    again = api.search(cfg)
    assert again.evaluated == 0 and again.replayed == first.evaluated
    for name, data in want.items():
        assert (rd / name).read_bytes() == data, name
    other = api.search(search_config(tmp_path / "o", signs4, method="evolution", budget=96,
                                     eot=3, stop_on_success=False, seed=1))
    assert (other.run_dir / "queries.csv").read_bytes() != want["queries.csv"]


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--eot", "0"], "--eot 0"),
        (["--eot", "8", "--budget", "4"], "at least 8"),
        (["--eot", "2", "--view-spec", "yaw=9:1"], "yaw"),
        (["--eot", "2", "--view-spec", "zoom=1:2"], "zoom"),
        (["--view-spec", "yaw=-5:5"], "without --eot"),
        (["--eot", "129"], "--eot 129"),
    ],
    ids=["m0", "budget-below-m", "inverted-range", "unknown-parameter", "spec-alone", "m-big"],
)
def test_bad_eot_input_is_one_line_before_any_work(
    flags: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    assert main(["search", "--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
    assert not out.exists()


# --- found scenes of a search directory ------------------------------------------------


def test_identity_views_keep_every_successful_search_scene(plain: api.SearchResult) -> None:
    res = api.robustness(plain.run_dir, views=3, view_spec="identity", quiet=True,
                         device="cpu")
    fooled = plain.best[plain.best["success"]]
    assert sorted(res.rows["sign_id"].unique()) == sorted(fooled["sign_id"])
    assert len(res.rows) == 3 * len(fooled)
    assert res.rows["success"].all() and res.rows["clean_correct"].all()
    overall = res.summary[res.summary["factor"] == "overall"].iloc[0]
    assert overall["rate"] == 1.0
    every = api.robustness(plain.run_dir, views=1, view_spec="identity", all_successes=True,
                           quiet=True, device="cpu")
    q = pd.read_csv(plain.run_dir / "queries.csv")
    assert len(every.rows) == int(q["success"].sum()) and every.rows["success"].all()
    budget = 48
    logged = set(zip(q.loc[q["success"], "sign_id"], q.loc[q["success"], "query"],
                     strict=True))
    decoded = {(t // budget, t % budget + 1) for t in every.rows["trial_id"]}
    assert decoded == logged  # trial id = sign x queries + query - 1


def test_rerendered_scenes_score_as_logged(plain: api.SearchResult) -> None:
    """Every query of the search (K = 2, slots as logged), re-rendered through the plan,
    gives the logged true-class confidence: the same leaves and placements."""
    rd = plain.run_dir
    q = pd.read_csv(rd / "queries.csv")
    prep, config = open_search(rd, device="cpu")
    chosen = q[["sign_id", "query", "success"]]
    plan, scenes = found_plan(prep, config, rd, chosen)
    d = plan.decode(0, plan.total_active)
    from leafattack.engine.evaluate import classify, composite_scenes

    probs = classify(prep.classifier, composite_scenes(prep, d)[0], config.run.model)
    true = torch.from_numpy(prep.true_labels[d["sign"]])
    conf = probs.gather(1, true[:, None])[:, 0].double().numpy()
    logged = scenes.merge(q, on=["sign_id", "query"])["true_conf"].to_numpy()
    assert np.allclose(conf, logged, atol=2e-5)


def test_greedy_scenes_keep_their_empty_slots(tmp_path: Path, signs4: Path) -> None:
    res = api.search(search_config(tmp_path / "g", signs4, method="greedy", budget=16,
                                   leaves_per_scene=2, stop_on_success=False))
    rd = res.run_dir
    prep, config = open_search(rd, device="cpu")
    q = pd.read_csv(rd / "queries.csv")
    plan, _ = found_plan(prep, config, rd, q[["sign_id", "query", "success"]])
    leaves = pd.read_csv(rd / "query_leaves.csv")
    per_query = leaves.groupby(["sign_id", "query"]).size().to_numpy()
    assert (plan.params["present"].sum(1) == per_query).all() and (per_query == 1).any()
    every = api.robustness(rd, views=1, view_spec="identity", all_successes=True,
                           quiet=True, device="cpu")
    assert every.rows["success"].all()


def test_transfer_from_a_search_directory(plain: api.SearchResult) -> None:
    res = api.transfer(plain.run_dir, ["fixture_models:template", "fixture_models:constant"],
                       all_successes=True, quiet=True, device="cpu")
    rows = res.rows.set_index("model")
    assert rows.loc["fixture_models:template", "success"].all()  # its own successes replay
    assert not rows.loc["fixture_models:constant", "success"].any()  # ignores the image
    summary = res.summary.set_index("model")
    assert summary.loc["fixture_models:template", "rate"] == 1.0


def test_controls_of_a_search_directory(plain: api.SearchResult, tmp_path: Path) -> None:
    rd = tmp_path / "copy"
    shutil.copytree(plain.run_dir, rd)
    res = api.run_controls(rd, "grey,shuffled", quiet=True, device="cpu", n_boot=50)
    controls = pd.read_csv(rd / "controls.csv")
    best = plain.best
    assert len(controls) == 2 * len(best)
    assert set(controls["control"]) == {"grey", "shuffled"}
    overall = res.summary[res.summary["factor"] == "overall"].set_index("control")
    # the leaf side is each sign's best query as logged
    q = pd.read_csv(rd / "queries.csv").set_index(["sign_id", "query"])
    leaf_rate = np.mean([bool(q.loc[(s, b), "success"]) for s, b in
                         zip(best["sign_id"], best["best_query"], strict=True)])
    assert overall.loc["grey", "leaf_rate"] == pytest.approx(leaf_rate)


def test_search_directory_without_best_scenes_is_one_line(
    plain: api.SearchResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rd = tmp_path / "nobest"
    shutil.copytree(plain.run_dir, rd)
    (rd / "best.csv").unlink()
    for cmd in (["robustness", str(rd)], ["transfer", str(rd), "--models", "default"],
                ["controls", str(rd)]):
        assert main([*cmd, "--quiet", "--device", "cpu"]) == 2, cmd
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "best.csv" in err[0], err


def test_search_directory_without_successes_is_one_line(
    plain: api.SearchResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rd = tmp_path / "nosuccess"
    shutil.copytree(plain.run_dir, rd)
    q = pd.read_csv(rd / "queries.csv")
    q["success"] = False
    q.to_csv(rd / "queries.csv", index=False)
    with pytest.raises(Exception, match="no successful scene"):
        chosen_queries(rd, "best-successes")
    assert main(["robustness", str(rd), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no successful scene" in err[0]


def test_search_report_shows_survival_and_transfer(
    plain: api.SearchResult, tmp_path: Path
) -> None:
    from leafattack.report.search import write_search_report

    rd = tmp_path / "rep"
    shutil.copytree(plain.run_dir, rd)
    for done in [*rd.glob("robustness*"), *rd.glob("transfer*")]:  # other tests' results
        done.unlink()
    assert "Do the attacks last?" not in write_search_report(rd).read_text()
    api.robustness(rd, views=2, view_spec="identity", quiet=True, device="cpu")
    api.transfer(rd, ["fixture_models:template"], quiet=True, device="cpu")
    html = write_search_report(rd).read_text()
    assert "Do the attacks last?" in html and "<b>100.0%</b>" in html
    assert (rd / "figures" / "transfer.png").exists()
    assert not (rd / "figures" / "survival.png").exists()  # identity views: nothing to plot
    api.robustness(rd, views=4, view_spec="brightness=0.9:1.1", quiet=True, device="cpu")
    write_search_report(rd)
    assert (rd / "figures" / "survival.png").exists()


def test_transfer_from_a_search_to_a_model_of_other_classes_is_one_line(
    plain: api.SearchResult, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transfer", str(plain.run_dir), "--models", "fixture_models:gtsrb_mean",
                 "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not classes of the model" in err[0]


def test_overwriting_a_search_removes_the_analyses_of_its_scenes(
    plain: api.SearchResult, tmp_path: Path, signs4: Path
) -> None:
    rd = tmp_path / "ow"
    shutil.copytree(plain.run_dir, rd)
    api.robustness(rd, views=1, view_spec="identity", quiet=True, device="cpu")
    assert (rd / "robustness.csv").exists()
    api.search(search_config(rd, signs4, method="random", budget=4, overwrite=True))
    assert not (rd / "robustness.csv").exists()
    assert not (rd / "robustness_summary.csv").exists()

"""Tests of adversarial leaf training (``leafattack train --adversarial-leaves M``): the
worst-of-M choice, determinism, the one-line errors, and the defence itself (a model
trained on the worst of M leaf scenes is harder to fool by an adaptive search than the same
model trained plainly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from leafattack.api import search
from leafattack.cli import main
from leafattack.config import RunConfig, SearchConfig
from leafattack.errors import LeafattackError
from leafattack.training.trainer import TrainConfig, adversarial_paster, train


def _darkness(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A loss that grows as the image gets darker (independent of any model)."""
    return 1.0 - images.mean(dim=(1, 2, 3))


def test_the_candidate_of_the_highest_loss_is_kept() -> None:
    seen: list[torch.Tensor] = []

    def recording(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append(images.clone())
        return _darkness(images, labels)

    m, b = 5, 6
    paste = adversarial_paster(m, 64, torch.device("cpu"))
    batch = torch.full((b, 3, 64, 64), 230, dtype=torch.uint8)
    labels = torch.arange(b)
    out = paste(batch, labels, recording, torch.Generator().manual_seed(3))
    assert len(seen) == 1 and seen[0].shape == (b * m, 3, 64, 64)  # one batched call
    cands = seen[0].reshape(b, m, 3, 64, 64)
    for i in range(b):  # reference: a plain loop over each image's candidates
        losses = [float(1.0 - cands[i, j].mean()) for j in range(m)]
        assert torch.equal(out[i], cands[i, int(np.argmax(losses))])
        # every candidate carries a leaf (the image changed)
        assert all(float((cands[i, j] - 230 / 255).abs().max()) > 0.05 for j in range(m))
    assert out.dtype == torch.float32 and bool(((out >= 0) & (out <= 1)).all())


def test_worst_of_m_is_at_least_as_bad_as_any_single_scene() -> None:
    batch = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    labels = torch.zeros(8, dtype=torch.int64)
    one = adversarial_paster(1, 64, torch.device("cpu"))
    many = adversarial_paster(16, 64, torch.device("cpu"))
    gen_one = torch.Generator().manual_seed(0)
    worst = _darkness(many(batch, labels, _darkness, torch.Generator().manual_seed(0)), labels)
    singles = torch.stack(
        [_darkness(one(batch, labels, _darkness, gen_one), labels) for _ in range(4)]
    )
    # the max of 16 draws beats the mean of single draws on average
    assert float(worst.mean()) > float(singles.mean())


def test_same_seed_same_choice() -> None:
    paste = adversarial_paster(4, 64, torch.device("cpu"))
    batch = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)
    a = paste(batch, labels, _darkness, torch.Generator().manual_seed(7))
    b = paste(batch, labels, _darkness, torch.Generator().manual_seed(7))
    c = paste(batch, labels, _darkness, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"adversarial_leaves": -1}, "adversarial_leaves=-1"),
        ({"adversarial_leaves": 65}, "adversarial_leaves=65"),
        ({"adversarial_leaves": 4, "leaf_augment": 0.5}, "not both"),
    ],
    ids=["negative", "too-many", "both"],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(LeafattackError, match=needle):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_cli_refuses_both_defences_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "m.pt"),
            "--adversarial-leaves",
            "4",
            "--leaf-augment",
            "0.5",
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "not both" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()


def _tiny(out: Path, m: int, signs: str = "builtin", **kw: int) -> Path:
    cfg = TrainConfig(
        signs=signs,
        epochs=1,
        variants=4,
        batch_size=32,
        out=str(out),
        seed=0,
        adversarial_leaves=m,
        quiet=True,
        **kw,
    )  # type: ignore[arg-type]
    train(cfg)
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    return state


def test_adversarial_training_is_deterministic_and_differs_from_plain(tmp_path: Path) -> None:
    a = _weights(_tiny(tmp_path / "a.pt", 3))
    b = _weights(_tiny(tmp_path / "b.pt", 3))
    plain = _weights(_tiny(tmp_path / "p.pt", 0))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], plain[k]) for k in a)
    assert (tmp_path / "a.pt.history.csv").read_bytes() == (
        tmp_path / "b.pt.history.csv"
    ).read_bytes()


# ------------------------------------------------------------------------------ the defence


def _adaptive_success(model: Path, out: Path) -> tuple[float, int, int]:
    """Random search (budget 100, spending it all) on the 16 built-in signs: the share of
    queries that fool the model, the signs fooled, and the signs robust at 100."""
    res = search(
        SearchConfig(
            run=RunConfig(model=str(model), out=str(out), device="cpu", quiet=True),
            method="random",
            budget=100,
            stop_on_success=False,
            size_range=(0.3, 0.6),
        )
    )
    fooled = int(res.best["success"].sum())
    robust = int(res.clean["correct"].sum()) - fooled
    return float(res.queries["success"].mean()), fooled, robust


@pytest.mark.slow
def test_adversarial_leaf_training_lowers_adaptive_success(tmp_path: Path) -> None:
    """LISA-CNN on the 16 built-in signs, 6 epochs of 48 variants per sign, seed 0: plainly
    and with the worst of 16 leaf scenes per training image. The search attacks each model
    itself. Judged by signs, the unit of evidence: fewer signs fooled within the budget,
    in number and as a share of the signs attacked (those correct when clean). (Neither
    the share of fooling queries nor the robust count is asserted: the few signs still
    fooled can be fooled by more queries, and on a Zen 3 VM (AVX2) the adversarial model
    was correct on fewer clean signs, 12 against 15, so it left 7 robust against 8. On an
    AMD EPYC with AVX-512, seeds 0, 1 and 2 fooled 9/7/9 signs plainly against 3/2/3; on
    the Zen 3 VM seed 0 fooled 7 of 15 against 5 of 12.)"""
    models = {}
    for name, m in (("plain", 0), ("adversarial", 16)):
        cfg = TrainConfig(
            epochs=6,
            variants=48,
            batch_size=32,
            out=str(tmp_path / f"{name}.pt"),
            seed=0,
            adversarial_leaves=m,
            quiet=True,
        )
        models[name] = train(cfg).checkpoint
    plain = _adaptive_success(models["plain"], tmp_path / "s-plain")
    adv = _adaptive_success(models["adversarial"], tmp_path / "s-adv")
    assert adv[1] < plain[1]  # fewer signs fooled within the budget
    attacked = {name: r[1] + r[2] for name, r in (("plain", plain), ("adv", adv))}
    assert adv[1] / attacked["adv"] < plain[1] / attacked["plain"]  # a smaller share of them

"""The self-contained report.html."""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from leafattack import schema
from leafattack.analysis.edges import EdgeConfig
from leafattack.analysis.summary import STRONGEST_RULES, rate_by, strongest
from leafattack.engine.evaluate import recompose
from leafattack.engine.preparation import Prepared, open_run
from leafattack.errors import LeafattackError
from leafattack.grid import Plan
from leafattack.report.confusions import MAX_MATRIX_CLASSES, fig_confusion_auto, n_classes
from leafattack.report.controls import controls_section
from leafattack.report.data import RunData, load_run, read_json
from leafattack.report.figures import (
    DPI,
    FIGURES,
    GALLERY_MAX,
    fig_class_species_matrix,
    fig_edge_distributions,
    fig_gallery,
    fig_position_heatmaps,
    fig_success_vs_coverage,
    fig_success_vs_rotation,
    fig_success_vs_size,
    fig_survival,
    fig_transfer,
    require,
)
from leafattack.report.split import split_html
from leafattack.report.text import IMAGES_LOADED_SCRIPT
from leafattack.version import __version__

log = logging.getLogger(__name__)


def _gallery_rows(best: pd.DataFrame) -> pd.DataFrame:
    if best.empty:
        return best
    return best.sort_values(["true_conf", "trial_id"], kind="mergesort").head(GALLERY_MAX)


def _split_pair(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A best/*.png clean | gap | attacked pair split into its two images."""
    from leafattack.imageio import read_rgb

    try:
        pair = read_rgb(path)
    except LeafattackError:
        return None
    w = (pair.shape[1] - 4) // 2
    if w < 1:
        return None
    return pair[:, :w], pair[:, w + 4 : 2 * w + 4]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float) -> str:
    """A rate as a percentage: 42.0%, 0.38%, 0.004%; n/a for NaN."""
    if math.isnan(value):
        return "n/a"
    p = 100.0 * value
    if 0 < p < 0.01:
        return f"{p:.1g}%"
    return f"{p:.2f}%" if 0 < p < 1 else f"{p:.1f}%"


_CONFUSION_NOTE = (
    f"; with more than {MAX_MATRIX_CLASSES} classes, the most frequent wrong predictions "
    "instead of the full matrix"
)

_CSS = """
:root { --fg: #1a1a1a; --muted: #5a5a5a; --line: #d9d9d9; --accent: #0072B2; --bg2: #f6f7f9; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--fg); margin: 0 auto; max-width: 1240px; padding: 1.2rem 1.6rem 3rem;
  line-height: 1.45; background: #fff; }
h1 { font-size: 1.7rem; margin: 0.2rem 0 0.2rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 0.6rem; padding-bottom: 0.25rem;
  border-bottom: 2px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 1rem; }
nav { font-size: 0.9rem; margin: 0.6rem 0 1rem; }
nav a { color: var(--accent); margin-right: 0.9rem; text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 0.8rem; }
.card { background: var(--bg2); border: 1px solid var(--line); border-radius: 8px;
  padding: 0.7rem 0.9rem; }
.card .label { color: var(--muted); font-size: 0.85rem; }
.card .value { font-size: 1.6rem; font-weight: 650; }
.card .detail { color: var(--muted); font-size: 0.85rem; }
.note { background: #fff8e6; border-left: 4px solid #E69F00; padding: 0.5rem 0.8rem; }
table { border-collapse: collapse; font-size: 0.86rem; margin: 0.4rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.6rem; text-align: left;
  vertical-align: top; }
th { background: var(--bg2); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 0.6rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.88rem; margin-top: 0.3rem; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 1rem; }
pre { background: var(--bg2); border: 1px solid var(--line); padding: 0.7rem; overflow-x: auto;
  font-size: 0.8rem; }
"""




@dataclass
class _Figures:
    """Saves figures to figures/*.png and keeps their base64 for embedding."""

    folder: Path
    written: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, build: Callable[[], Figure]) -> str:
        """Draw, save and return an ``<figure>`` element (or a note when drawing fails)."""
        try:
            fig = build()
        except LeafattackError as exc:
            log.warning("figure %s left out: %s", key, exc)
            return f'<p class="note">Figure left out: {esc(exc)}</p>'
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
        data = buf.getvalue()
        path = self.folder / f"{key}.png"
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise LeafattackError(f"{path}: cannot write ({exc.strerror or exc})") from None
        self.written[key] = path.name
        b64 = base64.b64encode(data).decode("ascii")
        w, h = fig.get_size_inches() * DPI
        return (
            f'<figure><img id="fig-{key}" src="data:image/png;base64,{b64}" '
            f'width="{round(w)}" height="{round(h)}" alt="{esc(FIGURES.get(key, key))}">'
            f"<figcaption>{esc(FIGURES.get(key, key))} (figures/{esc(path.name)})</figcaption>"
            "</figure>"
        )


def _clean_accuracy(data: RunData) -> tuple[str, int, int]:
    if data.clean is None:
        return '<span id="clean-accuracy" data-correct="" data-total="">n/a</span>', 0, 0
    total = len(data.clean)
    correct = int(data.clean["correct"].astype(bool).sum())
    shown = _pct(correct / total) if total else "n/a"
    return (
        f'<span id="clean-accuracy" data-correct="{correct}" data-total="{total}">{shown}</span>',
        correct,
        total,
    )


def _headline(data: RunData) -> str:
    acc, correct, total = _clean_accuracy(data)
    attacked = correct if data.clean is not None else int(data.trials["sign_id"].nunique())
    ov = data.overall
    if ov:
        rate, lo, hi = float(ov["rate"]), float(ov["ci_low"]), float(ov["ci_high"])
        rate_html = f'<span id="overall-rate" data-value="{esc(ov["rate"])}">{_pct(rate)}</span>'
        ci_html = (
            f'<span id="overall-ci" data-low="{esc(ov["ci_low"])}" '
            f'data-high="{esc(ov["ci_high"])}">'
            f"[{_pct(lo)}, {_pct(hi)}]</span>"
        )
        n_trials, n_succ = ov["trials"], ov["successes"]
    else:
        rate_html = '<span id="overall-rate" data-value="">n/a</span>'
        ci_html = '<span id="overall-ci" data-low="" data-high="">n/a</span>'
        n_trials, n_succ = "0", "0"
    cards = [
        ("Clean accuracy", acc, f"{correct} of {total} signs correct without a leaf"),
        (
            "Signs attacked",
            f'<span id="n-attacked">{attacked}</span>',
            "signs classified correctly when clean",
        ),
        (
            "Trials",
            f'<span id="n-trials" data-value="{esc(n_trials)}">{int(n_trials):,}</span>',
            "leaf placements evaluated",
        ),
        (
            "Attack success rate",
            rate_html,
            f"95% interval {ci_html} (signs resampled); "
            f'<span id="n-successes">{esc(n_succ)}</span> successes',
        ),
    ]
    fo = data.fooled
    if fo:
        cards.append(
            (
                "Signs fooled",
                f'<span id="signs-fooled" data-successes="{esc(fo["successes"])}" '
                f'data-trials="{esc(fo["trials"])}" data-value="{esc(fo["rate"])}">'
                f"{_pct(float(fo['rate']))}</span>",
                f"{esc(fo['successes'])} of {esc(fo['trials'])} signs by at least one placement; "
                f"95% CI [{_pct(float(fo['ci_low']))}, {_pct(float(fo['ci_high']))}]",
            )
        )
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{label}</div><div class="value">{value}</div>'
            f'<div class="detail">{detail}</div></div>'
            for label, value, detail in cards
        )
        + "</div>"
    )


def _criterion_text(config: Mapping[str, Any]) -> str:
    target = config.get("target")
    text = (
        f"targeted: success = predicted class is {target!r}"
        if target
        else "untargeted: success = predicted class differs from the true class"
    )
    if config.get("min_confidence") is not None:
        text += f" with probability \u2265 {config['min_confidence']}"
    return text


def strongest_per_class(trials: pd.DataFrame) -> pd.DataFrame:
    """The strongest trial per sign class, by :func:`~leafattack.analysis.summary.strongest`'s
    rule (lowest true-class probability; in targeted runs, highest target probability).

    Returns:
        One row per ``true_name``, sorted by class name, with a ``rule`` column.
    """
    require(trials, ("true_name", "true_conf", "trial_id"))
    return strongest(trials, by="true_name")


def _strongest_table(data: RunData) -> str:
    t = data.trials
    best = strongest_per_class(t)
    rates = rate_by(t.assign(true_name=t["true_name"].astype(str)), "true_name").set_index("level")
    signs = t.groupby(t["true_name"].astype(str))["sign_id"].nunique()
    head = (
        '<table id="strongest-table"><thead><tr><th>sign class</th><th>signs</th>'
        "<th>success rate [95% CI]</th><th>strongest leaf</th><th>size</th><th>angle</th>"
        "<th>centre (x, y)</th><th>predicted</th><th>p(pred)</th><th>p(true)</th>"
        "<th>fooled</th></tr></thead><tbody>"
    )
    body = []
    for rec in best.to_dict("records"):
        cls = str(rec["true_name"])
        r: dict[str, Any] = {str(key): val for key, val in rates.loc[cls].items()}
        leaf = f"{rec['species']}/{rec.get('colour', '?')} ({rec.get('leaf_id', '?')})"
        body.append(
            f'<tr><td>{esc(cls)}</td><td class="num">{int(signs[cls])}</td>'
            f'<td class="num">{_pct(float(r["rate"]))} [{_pct(float(r["ci_low"]))}, '
            f"{_pct(float(r['ci_high']))}]</td><td>{esc(leaf)}</td>"
            f'<td class="num">{float(rec["size"]):g}</td>'
            f'<td class="num">{float(rec["angle"]):g}\u00b0</td>'
            f'<td class="num">({float(rec["x"]):.2f}, {float(rec["y"]):.2f})</td>'
            f'<td>{esc(rec["pred_name"])}</td><td class="num">{float(rec["pred_conf"]):.3f}</td>'
            f'<td class="num">{float(rec["true_conf"]):.3f}</td>'
            f"<td>{'yes' if bool(rec['success']) else 'no'}</td></tr>"
        )
    rule = STRONGEST_RULES[str(best["rule"].iloc[0])] if len(best) else ""
    caption = f'<p class="note" id="strongest-rule">Strongest = {esc(rule)}.</p>'
    return head + "".join(body) + "</tbody></table>" + caption


def _provenance(data: RunData) -> str:
    cfg = data.config
    versions = cfg.get("versions", {}) if isinstance(cfg.get("versions"), dict) else {}
    fps = cfg.get("fingerprints", {}) if isinstance(cfg.get("fingerprints"), dict) else {}
    rows = [
        ("model", cfg.get("model", "?"), fps.get("model", "?")),
        ("signs", cfg.get("signs", "?"), fps.get("signs", "?")),
        ("leaves", cfg.get("leaves", "?"), fps.get("leaves", "?")),
    ]
    fp_table = (
        '<table id="fingerprints"><thead><tr><th>input</th><th>spec</th><th>fingerprint</th>'
        "</tr></thead><tbody>"
        + "".join(
            f"<tr><td>{esc(a)}</td><td><code>{esc(b)}</code></td><td><code>{esc(c)}</code></td></tr>"
            for a, b, c in rows
        )
        + "</tbody></table>"
    )
    ver_rows = [(f"{k} (run)", v) for k, v in versions.items()] + [
        ("leafattack (report)", __version__),
        ("matplotlib (report)", matplotlib.__version__),
        ("pandas (report)", pd.__version__),
    ]
    ver_table = (
        '<table id="versions"><thead><tr><th>package</th><th>version</th></tr></thead><tbody>'
        + "".join(f"<tr><td>{esc(k)}</td><td><code>{esc(v)}</code></td></tr>" for k, v in ver_rows)
        + "</tbody></table>"
    )
    return (
        "<p>The run was produced with the versions and inputs below; the fingerprints "
        "identify the exact model weights, sign images and leaf images.</p>"
        f'<div class="pair"><div>{fp_table}</div><div>{ver_table}</div></div>'
        f'<h3>config.toml</h3><pre id="config">{esc(data.config_text)}</pre>'
    )


def _prepared(data: RunData) -> tuple[Prepared | None, Plan | None, str]:
    """``open_run`` on the run (CPU), or (None, None, reason) when it cannot be re-created."""
    try:
        prep, plan = open_run(data.run_dir, device="cpu")
    except (LeafattackError, OSError, RuntimeError, ImportError) as exc:
        log.warning("cannot re-create the run's images: %s", exc)
        return None, None, str(exc)
    return prep, plan, ""


def _class_images(data: RunData, prep: Prepared | None) -> dict[str, np.ndarray]:
    """Clean image of the lowest attacked sign id of each class."""
    first = data.trials.sort_values("sign_id").drop_duplicates("true_name")
    wanted = {int(s): str(c) for s, c in zip(first["sign_id"], first["true_name"], strict=True)}
    out: dict[str, np.ndarray] = {}
    if prep is not None:
        ids = [int(s) for s in prep.sign_ids]
        imgs = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
        for sid, cls in wanted.items():
            if sid in ids:
                out[cls] = imgs[ids.index(sid)]
        return out
    try:
        from leafattack.data.sources import load_signs

        signs = load_signs(str(data.config.get("signs", "builtin")))
    except (LeafattackError, OSError) as exc:
        log.warning("heatmaps drawn without sign images: %s", exc)
        return out
    for sid, cls in wanted.items():
        if 0 <= sid < len(signs):
            out[cls] = signs.images[sid]
    return out


def _gallery(
    data: RunData, figs: _Figures, prep: Prepared | None, plan: Plan | None, reason: str
) -> str:
    rows = _gallery_rows(data.best)
    if rows.empty:
        return '<p class="note">best.csv holds no attacks, so there is no gallery.</p>'
    clean_conf: list[float] | None = None
    if data.clean is not None:
        conf = data.clean.set_index("sign_id")["true_conf"]
        clean_conf = [float(conf.get(int(s), math.nan)) for s in rows["sign_id"]]
    note = ""
    clean: np.ndarray | None = None
    attacked: np.ndarray | None = None
    if prep is not None and plan is not None:
        try:
            attacked = recompose(prep, plan, rows["trial_id"].to_numpy(dtype=np.int64))
            ids = [int(s) for s in prep.sign_ids]
            imgs = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
            clean = np.stack([imgs[ids.index(int(s))] for s in rows["sign_id"]])
        except (LeafattackError, ValueError, RuntimeError) as exc:  # trial ids off the grid
            log.warning("cannot recompose the strongest attacks: %s", exc)
            reason = str(exc)
            attacked = clean = None
    if attacked is None or clean is None:
        pairs = []
        kept = []
        for i, name in enumerate(rows.get("image", pd.Series([""] * len(rows)))):
            pair = _split_pair(data.run_dir / str(name)) if isinstance(name, str) and name else None
            if pair is not None:
                pairs.append(pair)
                kept.append(i)
        if not pairs:
            return (
                f'<p class="note">The attacked images cannot be re-created ({esc(reason)}) '
                "and best/*.png is missing, so there is no gallery.</p>"
            )
        rows = rows.iloc[kept]
        clean_conf = [clean_conf[i] for i in kept] if clean_conf is not None else None
        clean = np.stack([p[0] for p in pairs])
        attacked = np.stack([p[1] for p in pairs])
        note = (
            f'<p class="note">Images taken from best/*.png: the run could not be '
            f"re-created ({esc(reason)}).</p>"
        )
    gallery_clean, gallery_attacked = clean, attacked
    photo = prep is not None and prep.face_rule != "masks of the source"
    edge_config, source = gallery_edge_config(data.run_dir, photo)
    fig_html = figs.add(
        "gallery",
        lambda: fig_gallery(rows, gallery_clean, gallery_attacked, clean_conf, edge_config),
    )
    rule = STRONGEST_RULES.get(str(rows["rule"].iloc[0]), "") if "rule" in rows else ""
    return (
        f'<p>The {len(rows)} strongest attacks ({esc(rule or "lowest true-class probability")}'
        f"; one per sign, at most {GALLERY_MAX}), recomposed from their trial ids. "
        f'<span id="gallery-canny">Canny edge maps: {esc(describe_edge_config(edge_config))}'
        f" ({esc(source)}).</span></p>" + note + fig_html
    )


def gallery_edge_config(run_dir: Path, photo: bool = False) -> tuple[EdgeConfig, str]:
    """The Canny settings of the run's edge analysis (``edges_progress.json``), or the
    defaults at the sign resolution when the run has none (automatic thresholds when
    ``photo``: a photo source, as the edge analysis would default); with where they came
    from."""
    settings = read_json(run_dir / "edges_progress.json").get("config")
    if isinstance(settings, dict):
        try:
            return EdgeConfig(**settings), "the settings of this run's edge analysis"
        except (TypeError, ValueError, LeafattackError):
            log.warning("edges_progress.json holds unusable Canny settings; using the defaults")
    return EdgeConfig(auto=photo), "defaults; this run has no edge analysis"


def describe_edge_config(cfg: EdgeConfig) -> str:
    """One phrase naming every setting that shapes the edge maps."""
    if cfg.auto:
        thresholds = f"automatic thresholds (blurred median \u00b1 {cfg.sigma:g})"
    else:
        thresholds = f"thresholds {cfg.low:g}/{cfg.high:g}"
    blur = (
        f"{cfg.blur_ksize}\u00d7{cfg.blur_ksize} Gaussian blur (sigma {cfg.blur_sigma:g})"
        if cfg.blur_ksize > 1
        else "no blur"
    )
    where = (
        f"at {cfg.resolution}\u00d7{cfg.resolution} px"
        if cfg.resolution
        else "at the sign resolution"
    )
    return f"OpenCV Canny, {thresholds}, {blur}, {where}"


def _edges_section(data: RunData, figs: _Figures) -> str:
    if data.edges is None:
        return (
            '<p class="note" id="no-edges">This run has no edge analysis (no edges.csv). '
            "Run <code>leafattack edges RUN_DIR</code>, then <code>leafattack report "
            "RUN_DIR</code> again, to add it.</p>"
        )
    edges = data.edges
    settings = read_json(data.run_dir / "edges_progress.json").get("config")
    how = ""
    if isinstance(settings, dict) and settings:
        how = " Canny settings: " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in settings.items())
        how += "."
    parts = [
        "<p>How much each attack changed the Canny edge map of the sign (edges.csv), "
        f"for attacks that fooled the model and attacks that did not.{how}</p>",
        figs.add("edge_distributions", lambda: fig_edge_distributions(data.trials, edges)),
    ]
    if data.correlation is None:
        parts.append(
            '<p class="note">correlation.csv is missing, so there is no correlation table.</p>'
        )
    else:
        parts.append(
            "<h3>Correlation of each metric with the outcome (all trials)</h3>"
            "<p>r: point-biserial (success) or Pearson (confidence drop) correlation; "
            "p: Benjamini-Hochberg adjusted; AUC: how well the metric alone separates "
            "successes from failures, with a bootstrap 95% interval.</p>"
            + correlation_html(data.correlation, "all")
        )
    return "".join(parts)


def _status_notes(data: RunData) -> list[tuple[str, str]]:
    """(element id, html) of the remarks about the run's state, for the headline."""
    notes = [(f"note-{i}", esc(n)) for i, n in enumerate(data.notes)]
    correct = None if data.clean is None else data.clean["correct"].astype(bool)
    if correct is None:
        notes.append(
            (
                "no-clean",
                "clean.csv is missing: the run stopped before classifying "
                "the clean signs, so no attack was run.",
            )
        )
    elif len(correct) and not correct.any():
        notes.append(
            ("no-trials", "No sign was classified correctly when clean, so no attack was run.")
        )
    elif not correct.all():
        assert data.clean is not None
        wrong = data.clean.loc[~correct, "sign_file"].astype(str)
        shown = ", ".join(wrong.head(8)) + (", ..." if len(wrong) > 8 else "")
        notes.append(
            (
                "misclassified",
                f"{len(wrong)} of {len(correct)} signs were "
                f"misclassified when clean and were not attacked ({esc(shown)}).",
            )
        )
    if data.trials.empty and correct is not None and correct.any():
        notes.append(
            (
                "no-trials",
                "trials.csv holds no trials (the run was interrupted before "
                "its first batch, or has not started), so the figures that need trials "
                "are left out.",
            )
        )
    if data.complete is False and not data.trials.empty:
        notes.append(
            (
                "incomplete",
                f"The run is incomplete: these results cover the "
                f"{len(data.trials):,} trials written so far; rerun the same command "
                "to finish it.",
            )
        )
    return notes


def _lasting_section(data: RunData, figs: _Figures) -> str:
    """Survival under viewing changes and transfer to other models, when ``leafattack
    robustness`` / ``transfer`` have written their summaries (empty otherwise)."""
    parts = []
    surv_path = data.run_dir / "robustness_summary.csv"
    if surv_path.exists():
        surv = pd.read_csv(surv_path)
        parts.append(
            survival_paragraph(surv, "the found attacks", "; robustness.csv has every view")
        )
        parts.append(figs.add("survival", lambda: fig_survival(surv)))
    tr_path = data.run_dir / "transfer_summary.csv"
    if tr_path.exists():
        tr = pd.read_csv(tr_path)
        parts.append(transfer_paragraph("the run's successful scenes"))
        parts.append(figs.add("transfer", lambda: fig_transfer(tr)))
    return "".join(parts)


def survival_paragraph(surv: pd.DataFrame, attacks: str, tail: str = "") -> str:
    """The survival sentence of a robustness_summary.csv (empty without an overall row):
    how often ``attacks`` still succeed under the views, with its interval over signs."""
    overall = surv[surv["factor"] == "overall"]
    if overall.empty:
        return ""
    o = overall.iloc[0]
    return (
        f"<p>Survival: under {int(o['views'])} seeded views that leave the clean sign "
        f"correct, {esc(attacks)} still succeed in <b>{float(o['rate']):.1%}</b> of them "
        f"(mean over {int(o['signs'])} signs, 95% bootstrap CI over signs "
        f"[{float(o['ci_low']):.1%}, {float(o['ci_high']):.1%}]{esc(tail)}).</p>"
    )


def transfer_paragraph(scenes: str) -> str:
    """The sentence above a transfer figure; ``scenes``: which scenes were transferred."""
    return (
        f"<p>Transfer: the share of {esc(scenes)} that also fool each other model, over the "
        "signs that model classifies correctly when clean.</p>"
    )


def render_html(
    data: RunData, figs: _Figures, prepared: tuple[Prepared, Plan] | None = None
) -> str:
    """Build the report page for ``data``, saving its figures through ``figs``."""
    cfg = data.config
    title = f"leafattack report: {data.run_dir.resolve().name}"
    has_trials = not data.trials.empty
    notes = _status_notes(data)
    sections: list[tuple[str, str, str]] = []
    head = _headline(data)
    note_html = "".join(f'<p class="note" id="{ident}">{text}</p>' for ident, text in notes)
    body = head + note_html + f"<p>Criterion: {esc(_criterion_text(cfg))}.</p>"
    body += split_html(data.run_dir)  # which split was attacked (issue 14)
    scene_run = "n_leaves" in data.trials.columns
    if has_trials and not scene_run:
        body += "<h3>Strongest attack per sign class</h3>" + _strongest_table(data)
    sections.append(("headline", "Headline", body))
    if has_trials and scene_run:
        scene_prep, scene_plan, scene_reason = (
            (prepared[0], prepared[1], "") if prepared is not None else _prepared(data)
        )
        t = data.trials
        sections.append(
            (
                "coverage",
                "Leaves and coverage",
                "<p>Random scenes of several leaves: success against the share of the sign "
                "face the leaves cover together (union), one line per number of leaves. "
                "Compare scene runs of different leaf counts at equal coverage.</p>"
                + figs.add("success_vs_coverage", lambda: fig_success_vs_coverage(t)),
            )
        )
        sections.append(
            (
                "confusion",
                "Confusion under attack",
                figs.add("confusion", lambda: fig_confusion_auto(t)),
            )
        )
        sections.append(
            (
                "gallery",
                "Strongest attacks",
                _gallery(data, figs, scene_prep, scene_plan, scene_reason),
            )
        )
    elif has_trials:
        prep: Prepared | None
        plan: Plan | None
        if prepared is not None:
            prep, plan, reason = prepared[0], prepared[1], ""
        else:
            prep, plan, reason = _prepared(data)
        images = _class_images(data, prep)
        positions = data.positions
        t = data.trials
        sections.append(
            (
                "positions",
                "Where the leaf sits",
                "<p>Each cell is one leaf-centre position of the lattice over the sign's bounding "
                "box, placed at the mean centre of that position for the class and drawn over the "
                "class's clean sign (grayscale).</p>"
                + figs.add(
                    "position_success",
                    lambda: fig_position_heatmaps(t, images, positions, "success"),
                )
                + figs.add(
                    "position_confidence",
                    lambda: fig_position_heatmaps(t, images, positions, "true_conf"),
                ),
            )
        )
        sections.append(
            (
                "size-rotation",
                "Leaf size and rotation",
                '<div class="pair"><div>'
                + figs.add(
                    "success_vs_size",
                    lambda: fig_success_vs_size(t, str(cfg.get("size_unit", "face"))),
                )
                + "</div><div>"
                + figs.add("success_vs_rotation", lambda: fig_success_vs_rotation(t))
                + "</div></div>",
            )
        )
        sections.append(
            (
                "class-species",
                "Sign class \u00d7 species",
                figs.add("class_species", lambda: fig_class_species_matrix(t)),
            )
        )
        sections.append(
            (
                "confusion",
                "Confusion under attack",
                "<p>What the model predicts with a leaf on the sign, over all attacked trials"
                f"{_CONFUSION_NOTE if n_classes(t) > MAX_MATRIX_CLASSES else ''}.</p>"
                + figs.add("confusion", lambda: fig_confusion_auto(t)),
            )
        )
        sections.append(("edges", "Edge analysis", _edges_section(data, figs)))
        sections.append(("gallery", "Strongest attacks", _gallery(data, figs, prep, plan, reason)))
    if has_trials:  # neutral-occluder controls (issue 14), when the run has them
        controls_html = controls_section(data.run_dir, figs.add)
        if controls_html:
            sections.insert(1, ("controls", "Is it the leaf?", controls_html))
    lasting = _lasting_section(data, figs)
    if lasting:
        sections.append(("lasting", "Do the attacks last?", lasting))
    sections.append(("provenance", "What produced this report", _provenance(data)))
    nav = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name, _ in sections)
    subtitle = (
        f"model <code>{esc(cfg.get('model', '?'))}</code> \u00b7 signs "
        f"<code>{esc(cfg.get('signs', '?'))}</code> \u00b7 leaves "
        f"<code>{esc(cfg.get('leaves', '?'))}</code> \u00b7 grid: species "
        f"{esc(', '.join(map(str, cfg.get('species', []))) or 'all')}, sizes "
        f"{esc(', '.join(f'{float(s):g}' for s in cfg.get('sizes', [])))}"
        f"{' cm' if cfg.get('size_unit') == 'cm' else ' of the face width'}, "
        f"{len(cfg.get('angles', []))} angles, positions {esc(cfg.get('positions', '?'))}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{esc(title)}</h1><p class="sub">{subtitle}</p><nav>{nav}</nav>',
    ]
    for sid, name, content in sections:
        parts.append(f'<section id="{sid}"><h2>{esc(name)}</h2>{content}</section>')
    parts.append(f"<script>{IMAGES_LOADED_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def write_report(
    run_dir: str | os.PathLike[str], *, prepared: tuple[Prepared, Plan] | None = None
) -> Path:
    """Write ``RUN_DIR/figures/*.png`` and a self-contained ``RUN_DIR/report.html``.

    A run without trials (none attacked, or interrupted before the first batch) still
    gets a report that says so and leaves out the figures that need trials.

    Args:
        run_dir: a run directory written by ``leafattack run``.
        prepared: the run's prepared state and plan when the caller holds them (a run
            that chains its report); otherwise the run is re-opened from its config.

    Returns:
        The path of ``report.html``.

    Raises:
        LeafattackError: not a run directory, unreadable tables, or the directory
            cannot be written.
    """
    data = load_run(run_dir)
    rd = data.run_dir
    folder = rd / "figures"
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise LeafattackError(f"{folder}: cannot create ({exc.strerror or exc})") from None
    figs = _Figures(folder)
    page = render_html(data, figs, prepared)
    for key in FIGURES:  # figures of an earlier report that this one left out
        if key not in figs.written:
            (folder / f"{key}.png").unlink(missing_ok=True)
    out = rd / "report.html"
    tmp = rd / "report.html.tmp"
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise LeafattackError(f"{out}: cannot write ({exc.strerror or exc})") from None
    log.info("wrote %s with %d figures", out, len(figs.written))
    return out


def correlation_html(correlation: pd.DataFrame, subset: str = "all") -> str:
    """One subset of correlation.csv as an HTML table (metrics sorted by |r| per target).

    Args:
        correlation: CORRELATION_COLUMNS rows.
        subset: which subset to show.

    Returns:
        An HTML ``<table class="corr">`` (a paragraph when the subset has no rows).
    """
    require(correlation, tuple(schema.CORRELATION_COLUMNS), "correlation")
    rows = correlation[correlation["subset"].astype(str) == subset]
    if rows.empty:
        return f'<p class="note">correlation.csv has no rows for subset {esc(subset)}.</p>'

    def num(v: Any, spec: str) -> str:
        x = float(v)
        return "\u2013" if math.isnan(x) else format(x, spec)

    def pval(v: Any) -> str:
        x = float(v)
        if math.isnan(x):
            return "\u2013"
        return f"{x:.1e}" if x < 1e-4 else f"{x:.4f}"

    out = [
        '<table class="corr" id="correlation-table"><thead><tr><th>target</th><th>metric</th>'
        "<th>n</th><th>r</th><th>p (BH)</th><th>Spearman \u03c1</th><th>AUC [95% CI]</th>"
        "<th>odds ratio / SD [95% CI]</th></tr></thead><tbody>"
    ]
    for target in dict.fromkeys(rows["target"].astype(str)):
        part = rows[rows["target"].astype(str) == target].copy()
        part["_key"] = part["point_biserial_r"].abs()
        part = part.sort_values("_key", ascending=False, na_position="last", kind="mergesort")
        for rec in part.to_dict("records"):
            auc = num(rec["auc"], ".3f")
            if auc != "\u2013":
                auc += f" [{num(rec['auc_ci_low'], '.3f')}, {num(rec['auc_ci_high'], '.3f')}]"
            odds = num(rec["odds_ratio"], ".3g")
            if not pd.isna(rec.get("odds_ratio_ci_low", math.nan)):  # older tables lack it
                odds += (
                    f" [{num(rec['odds_ratio_ci_low'], '.3g')}, "
                    f"{num(rec['odds_ratio_ci_high'], '.3g')}]"
                )
            out.append(
                f"<tr><td>{esc(target)}</td><td>{esc(rec['metric'])}</td><td>{int(rec['n'])}</td>"
                f"<td>{num(rec['point_biserial_r'], '+.3f')}</td>"
                f"<td>{pval(rec['p_adjusted'])}</td>"
                f"<td>{num(rec['spearman_rho'], '+.3f')}</td><td>{auc}</td>"
                f"<td>{odds}</td></tr>"
            )
    out.append("</tbody></table>")
    return "".join(out)

"""The report's statement of which signs were attacked relative to the model's training split.

Reads ``split.json`` (written by ``run`` and ``search``, see
:func:`leafattack.engine.preparation.split_document`). Runs made before it existed have
none; the statement then says that the split is not recorded.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from leafattack.engine.preparation import SPLIT_FILE
from leafattack.report.data import read_json

SPLIT_WORDS = {
    "all": "all signs of the source",
    "heldout": "only the signs outside the model's training split (held out)",
    "train": "only the signs inside the model's training split",
}


def split_text(doc: dict[str, Any]) -> str:
    """One or two plain sentences stating the attacked split (see the module docstring)."""
    if not doc:
        return (
            "Split attacked: not recorded (this run predates split.json); whether the model "
            "was trained on these signs is not known."
        )
    which = str(doc.get("split", "all"))
    used, total = doc.get("signs_used"), doc.get("signs")
    text = (
        f"Split attacked: {which}, {SPLIT_WORDS.get(which, which)}: {used} of {total} signs "
        f"of {doc.get('signs_source', '?')}."
    )
    if doc.get("model_split") != "recorded":
        return text + (
            " The model records no training split, so whether it was trained on these signs "
            "is unknown."
        )
    inside = doc.get("used_in_training")
    text += f" The model was trained on {doc.get('training', '?')}"
    if inside:
        text += (
            f"; {inside} of the {used} attacked signs are in that training split, so this "
            "attack measures signs the model was trained on (fresh renders: leafattack "
            "signs render --variant-seed S --out DIR)."
        )
    else:
        text += "; none of the attacked signs is in that training split."
    return text


def split_html(run_dir: Path) -> str:
    """:func:`split_text` of a run or search directory as a ``<p id="split">``."""
    doc = read_json(Path(run_dir) / SPLIT_FILE)
    return f'<p class="note" id="split">{html.escape(split_text(doc))}</p>'

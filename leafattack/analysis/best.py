"""The strongest attack per sign as clean | attacked image pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leafattack.engine.evaluate import recompose
from leafattack.engine.preparation import Prepared
from leafattack.grid import Plan
from leafattack.imageio import write_png
from leafattack.paths import safe_name


def write_best(prep: Prepared, plan: Plan, best: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Write ``best/<sign id>_<class>.png`` (clean | attacked, flat and file-system safe
    names) and return ``best`` with an ``image`` column."""
    out_dir = run_dir / "best"
    out_dir.mkdir(exist_ok=True)
    best = best.copy()
    if best.empty:
        best["image"] = pd.Series(dtype="string")
        return best
    attacked = recompose(prep, plan, best["trial_id"].to_numpy())
    pos = {int(s): j for j, s in enumerate(prep.sign_ids)}
    clean = prep.sign_images.permute(0, 2, 3, 1).cpu().numpy()
    names = []
    sign_ids = best["sign_id"].to_numpy(dtype=np.int64)
    true_names = best["true_name"].astype(str).to_numpy()
    for i, (sid, tname) in enumerate(zip(sign_ids, true_names, strict=True)):
        j = pos[int(sid)]
        gap = np.full((clean.shape[1], 4, 3), 255, np.uint8)
        pair = np.concatenate([clean[j], gap, attacked[i]], axis=1)
        name = f"best/{int(sid):05d}_{safe_name(tname)}.png"
        write_png(run_dir / name, pair)
        names.append(name)
    best["image"] = names
    return best

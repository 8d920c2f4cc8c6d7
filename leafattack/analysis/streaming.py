"""summary.csv, best.csv and signs-fooled accumulated batch by batch while a run goes.

A :class:`SummaryAccumulator` sees every trial row once (typed as
:func:`leafattack.rundir.read_trials` returns them) and keeps only counters: for each
summary factor and level, the trials and successes of each (sign, leaf) cell, plus the
strongest trial of each sign so far. That is all the sign-level cluster bootstrap needs
(:func:`~leafattack.analysis.cluster.cluster_bootstrap_cells`), so :meth:`summary` and
:meth:`best` equal :func:`~leafattack.analysis.summary.summarise` and
:func:`~leafattack.analysis.summary.strongest` of the whole trials table, without the
table ever being read back. Memory grows with signs x leaves x levels, not with trials
(plus at most ``flush_rows`` buffered rows: batches are counted in blocks of that many
rows, since the fixed cost of each pandas group-by dominates a small batch).

Example:
    >>> acc = SummaryAccumulator()
    >>> for frame in batches:          # typed trial rows, in trial order
    ...     acc.add(frame)
    >>> summary, best = acc.summary(BootSpec(seed=0)), acc.best()
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import pandas as pd

from leafattack import schema
from leafattack.analysis.cluster import BootSpec, cluster_bootstrap_cells, percentile_interval
from leafattack.analysis.stats import wilson_interval
from leafattack.analysis.summary import (
    coverage_bins,
    rate_frame,
    rate_table,
    strongest,
    summarise,
)

_Cell = tuple[Hashable, int, str]  # (level, sign_id, leaf_id or "")


class SummaryAccumulator:
    """Per-batch counters of a run's trials; see the module docstring."""

    def __init__(
        self, dtypes: Mapping[str, str] | None = None, *, flush_rows: int = 65_536
    ) -> None:
        """``dtypes``: the trials' columns (:func:`leafattack.schema.trial_columns`), which
        :meth:`best` of a run without trials still has. ``flush_rows``: rows buffered
        before they are counted (the results do not depend on it)."""
        if flush_rows < 1:
            raise ValueError(f"flush_rows={flush_rows}: expected at least 1")
        self.flush_rows = flush_rows
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self.cells: dict[str, dict[_Cell, list[int]]] = {}
        self.sign_class: dict[int, str] = {}
        self.sign_hits: dict[int, int] = {}
        self.scenes: bool | None = None
        self.rows = 0
        self._best: pd.DataFrame | None = None
        self._empty: pd.DataFrame | None = (
            None
            if dtypes is None
            else pd.DataFrame({k: pd.Series(dtype=v) for k, v in dtypes.items()})
        )

    def _factors(self, t: pd.DataFrame) -> list[tuple[str, pd.Series]]:
        if self.scenes:
            return [
                ("overall", pd.Series("all", index=t.index)),
                ("sign_class", t["true_name"]),
                ("n_leaves", t["n_leaves"]),
                ("coverage", coverage_bins(t["occluded_frac"])),
            ]
        out = [("overall", pd.Series("all", index=t.index))]
        for f in schema.SUMMARY_FACTORS:
            out.append((f, t["true_name"] if f == "sign_class" else t[f]))
        pair = t["true_name"].astype(str) + " | " + t["species"].astype(str)
        out.append(("sign_class x species", pair))
        return out

    def add(self, trials: pd.DataFrame) -> None:
        """Count one batch of typed trial rows (any length, trial order)."""
        if self._empty is None:
            self._empty = trials.iloc[:0].copy()
        if not len(trials):
            return
        if self.scenes is None:
            self.scenes = "n_leaves" in trials.columns
        self.rows += len(trials)
        self._pending.append(trials)
        self._pending_rows += len(trials)
        if self._pending_rows >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        """Count the buffered rows."""
        if not self._pending:
            return
        trials = (
            self._pending[0]
            if len(self._pending) == 1
            else pd.concat(self._pending, ignore_index=True)
        )
        self._pending, self._pending_rows = [], 0
        ok = trials["success"].to_numpy(dtype=bool)
        sign = trials["sign_id"].to_numpy(dtype=np.int64)
        leaf = (
            np.full(len(trials), "", dtype=object)
            if self.scenes
            else trials["leaf_id"].astype(object).to_numpy()
        )
        for factor, keys in self._factors(trials):
            frame = pd.DataFrame(
                {"level": keys.astype(object).to_numpy(), "sign": sign, "leaf": leaf, "ok": ok}
            )
            g = frame.groupby(["level", "sign", "leaf"], sort=False)["ok"].agg(["size", "sum"])
            store = self.cells.setdefault(factor, {})
            for (level, s, lf), n, k in zip(
                g.index, g["size"].to_numpy(), g["sum"].to_numpy(), strict=True
            ):
                c = store.setdefault((level, int(s), str(lf)), [0, 0])
                c[0] += int(n)
                c[1] += int(k)
        per_sign = pd.DataFrame({"sign": sign, "ok": ok}).groupby("sign", sort=False)["ok"].sum()
        names = trials["true_name"].astype(object).to_numpy()
        first = pd.Series(names).groupby(sign, sort=False).first()
        for s, k in zip(per_sign.index.to_numpy(), per_sign.to_numpy(), strict=True):
            self.sign_hits[int(s)] = self.sign_hits.get(int(s), 0) + int(k)
        for s, name in zip(first.index.to_numpy(), first.to_numpy(), strict=True):
            self.sign_class.setdefault(int(s), str(name))
        batch_best = strongest(trials).drop(columns="rule")
        if self._best is None:
            self._best = batch_best
        else:
            both = pd.concat([self._best, batch_best], ignore_index=True)
            self._best = strongest(both).drop(columns="rule")

    def best(self) -> pd.DataFrame:
        """:func:`~leafattack.analysis.summary.strongest` of every row seen."""
        self._flush()
        if self._best is None:
            empty = self._empty if self._empty is not None else pd.DataFrame()
            return strongest(empty)
        return strongest(self._best)

    def summary(self, boot: BootSpec | None = None) -> pd.DataFrame:
        """:func:`~leafattack.analysis.summary.summarise` of every row seen."""
        b = boot or BootSpec()
        self._flush()
        if not self.rows:
            empty = self._empty if self._empty is not None else pd.DataFrame()
            return summarise(empty, b)
        parts = []
        for factor, store in self.cells.items():
            table = _rate_from_cells(store, b)
            table["level"] = [str(v) for v in table["level"]]
            parts.append(table.assign(factor=factor))
        signs = sorted(self.sign_hits)
        per_sign = pd.DataFrame(
            {
                "success": [self.sign_hits[s] > 0 for s in signs],
                "sign_class": [self.sign_class[s] for s in signs],
            },
            index=pd.Index(signs, name="sign_id"),
        )
        for factor, keys in (
            ("signs_fooled", pd.Series("all", index=per_sign.index)),
            ("signs_fooled by sign_class", per_sign["sign_class"]),
        ):
            table = rate_table(per_sign["success"], keys, boot=b)
            table["level"] = [str(v) for v in table["level"]]
            parts.append(table.assign(factor=factor))
        out = pd.concat(parts, ignore_index=True)
        return out[list(schema.SUMMARY_COLUMNS)]


def _rate_from_cells(store: dict[_Cell, list[int]], b: BootSpec) -> pd.DataFrame:
    """:func:`~leafattack.analysis.summary.rate_table` (with signs and leaves) from cell
    counters: one row per level, sorted by level."""
    by_level: dict[Hashable, list[tuple[int, str, int, int]]] = {}
    for (level, s, lf), (n, k) in store.items():
        by_level.setdefault(level, []).append((s, lf, n, k))
    levels = sorted(by_level)  # type: ignore[type-var]
    n_arr = np.array([sum(c[2] for c in by_level[v]) for v in levels], dtype=np.int64)
    k_arr = np.array([sum(c[3] for c in by_level[v]) for v in levels], dtype=np.int64)
    lo, hi = wilson_interval(k_arr, n_arr)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    n_signs = np.empty(len(levels), dtype=np.int64)
    ci_lo, ci_hi = lo.copy(), hi.copy()
    resampled = np.empty(len(levels), dtype=object)
    for i, v in enumerate(levels):
        cells = by_level[v]
        sign_vals = sorted({c[0] for c in cells})
        leaf_vals = sorted({c[1] for c in cells})
        n_signs[i] = len(sign_vals)
        crossed = len(leaf_vals) > 1
        resampled[i] = "signs+leaves" if crossed else "signs"
        if n_signs[i] < 2:
            ci_lo[i] = ci_hi[i] = np.nan
            continue
        s_pos = {s: j for j, s in enumerate(sign_vals)}
        l_pos = {lf: j for j, lf in enumerate(leaf_vals)} if crossed else None
        count = np.zeros((len(sign_vals), len(leaf_vals) if crossed else 1))
        sums = np.zeros(count.shape + (1,))
        for s, lf, n, k in cells:
            j = l_pos[lf] if l_pos is not None else 0
            count[s_pos[s], j] += n
            sums[s_pos[s], j, 0] += k
        reps = cluster_bootstrap_cells(count, sums, crossed=crossed, boot=b)
        ci_lo[i], ci_hi[i] = percentile_interval(reps[:, 0], b.level)
    return rate_frame(
        pd.Series(levels, dtype=object).to_numpy(), n_arr, k_arr, (ci_lo, ci_hi), n_signs,
        (lo, hi), resampled, b.n_boot, b.seed,
    )

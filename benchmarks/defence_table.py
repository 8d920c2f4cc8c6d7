"""The defence-study table from the folders of ``benchmarks/defence_gtsrb.sh``.

Per model: clean accuracy on the searched held-out photos, and robust accuracy at 100 and
1,000 queries, i.e. the share of signs classified correctly when clean that no query up to
that budget fooled (``curve.csv``'s definition), with Wilson intervals over signs (the
unit of sampling; each sign is one Bernoulli outcome).

    uv run python benchmarks/defence_table.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from scipy.stats import binomtest

KINDS = ("plain", "augment", "adversarial")
BUDGETS = (100, 1000)


def rate(k: int, n: int) -> str:
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return f"{k / n:.1%} [{ci.low:.1%}, {ci.high:.1%}]"


def main(out: Path) -> None:
    print("| model | clean (evaluate) | clean, searched signs | "
          + " | ".join(f"robust @ {b}" for b in BUDGETS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in BUDGETS) + " |")
    for kind in KINDS:
        search = out / f"search_{kind}"
        clean = pd.read_csv(search / "clean.csv")
        queries = pd.read_csv(search / "queries.csv")
        first = queries[queries["success"]].groupby("sign_id")["query"].min()
        evaluated = (out / f"eval_{kind}.txt").read_text().splitlines()
        held = next(line for line in evaluated if line.startswith("accuracy:"))
        n = len(clean)
        cells = [held.split()[1], rate(int(clean["correct"].sum()), n)]
        for b in BUDGETS:
            fooled = set(first[first <= b].index)
            robust = sum(
                bool(ok) and sid not in fooled
                for sid, ok in zip(clean["sign_id"], clean["correct"], strict=True)
            )
            cells.append(rate(int(robust), n))
        print(f"| `{kind}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Cost of adversarial leaf training: seconds per epoch with ``--adversarial-leaves M``
against plain training (the issue's bound: about M extra forward passes per batch).

    uv run python benchmarks/bench_adversarial.py --arch lisacnn --variants 32 --ms 0,4,8

Prints, per M, the mean seconds of an epoch (after the first, which warms up) and its ratio
to plain training, beside the ratio that M extra forward passes would cost if a forward
were a third of a training step (forward + backward + optimiser).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from leafattack.training import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="lisacnn")
    ap.add_argument("--signs", default="builtin")
    ap.add_argument("--variants", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ms", default="0,4,8", help="comma-separated M values (0 = plain)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in (int(x) for x in args.ms.split(",")):
            cfg = TrainConfig(
                signs=args.signs, arch=args.arch, epochs=args.epochs, variants=args.variants,
                out=str(Path(tmp) / f"m{m}.pt"), seed=0, adversarial_leaves=m, quiet=True,
            )
            res = train(cfg)
            secs = res.history["seconds"].iloc[1:].mean()
            rows.append((m, float(secs)))
    base = rows[0][1] if rows and rows[0][0] == 0 else float("nan")
    print(f"{'M':>4} {'s/epoch':>9} {'x plain':>8} {'1 + M/3':>8}")
    for m, secs in rows:
        print(f"{m:>4} {secs:>9.2f} {secs / base:>8.2f} {1 + m / 3:>8.2f}")


if __name__ == "__main__":
    main()

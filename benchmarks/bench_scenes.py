"""One-leaf scenes: the grid's pooled fast path and the general scene renderer, against
bare inference, all measured in one process.

Usage::

    uv run python benchmarks/bench_scenes.py            # default signs, leaves and model
    uv run python benchmarks/bench_scenes.py --n 20000 --device cuda

Three throughputs on the same N one-leaf scenes of the default grid (the first N trials
of the default run, decoded once beforehand):

* ``bare``: the model's forward passes on ready-made inputs at its input size;
* ``grid``: the engine's batch evaluator on those trials (composite through the pooled
  fast path when the model area-resizes, classify, judge; no CSV);
* ``scenes``: the same placements as a :class:`~leafattack.compose.scenes.SceneBatch`
  with K = 1, rendered by :func:`~leafattack.compose.scenes.render_scenes` at full
  resolution, then classified.

It prints one JSON document with the rates and the ratios to ``bare``; nothing is
asserted (speed is not a test). The K = 1 ratio to compare over time is ``grid_ratio``:
what a default ``leafattack run`` does per trial.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

import leafattack
from leafattack.compose.scenes import SceneBatch, build_variant_bank, render_scenes
from leafattack.config import RunConfig
from leafattack.engine.evaluate import BatchEvaluator, classify
from leafattack.engine.preparation import build_plan, prepare


def timed(fn: object, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn()`` (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--n", type=int, default=8192, help="scenes per measurement")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    prep = prepare(RunConfig(model=args.model, device=args.device, batch_size=args.batch_size,
                             quiet=True))
    plan = build_plan(prep, np.ones(len(prep.sign_ids), dtype=bool))
    n = min(args.n, plan.total_active)
    ev = BatchEvaluator(prep, plan)
    bounds = [(k, min(n, k + args.batch_size)) for k in range(0, n, args.batch_size)]
    clf = prep.classifier
    dev = prep.sign_images.device

    # the same placements as K = 1 scene batches
    d = plan.decode(0, n)
    sizes = np.asarray(prep.config.grid.sizes)[d["size_idx"]]
    bank = build_variant_bank([v.rgba for v in prep.variants], prep.config.sign_size, device=dev)
    angles = np.asarray(prep.config.grid.angles)[d["angle_idx"]]
    # leafattack before sign faces (sizes relative to the image) has no render_size
    to_render = getattr(prep, "render_size", lambda sign, size: size)
    batches = []
    for k0, k1 in bounds:
        sl = slice(k0, k1)
        batches.append(SceneBatch(
            sign=torch.from_numpy(d["sign"][sl]).to(dev),
            variant=torch.from_numpy(d["variant"][sl][:, None]).to(dev),
            size=torch.from_numpy(np.asarray(to_render(d["sign"][sl], sizes[sl]))[:, None])
            .float().to(dev),
            angle=torch.from_numpy(angles[sl][:, None]).float().to(dev),
            x=torch.from_numpy(d["x"][sl][:, None]).float().to(dev),
            y=torch.from_numpy(d["y"][sl][:, None]).float().to(dev),
            present=torch.ones((k1 - k0, 1), dtype=torch.bool, device=dev),
        ))
    s = clf.preprocess.input_size
    ready = torch.rand(args.batch_size, 3, s, s, generator=torch.Generator().manual_seed(0))
    ready = ready.to(dev)

    def bare() -> None:
        with torch.inference_mode():
            for k0, k1 in bounds:
                clf.predict_proba(ready[: k1 - k0]).cpu()

    def grid() -> None:
        for k0, k1 in bounds:
            ev.evaluate(k0, k1)

    def scenes() -> None:
        with torch.inference_mode():
            for b in batches:
                images, _ = render_scenes(prep.sign_images, prep.sign_masks, bank, b)
                classify(clf, images, prep.config.model).cpu()

    bare(), grid(), scenes()  # warm-up
    rates = {name: n / timed(fn, args.repeats) for name, fn in
             (("bare", bare), ("grid", grid), ("scenes", scenes))}
    out = {
        "setup": {
            "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "device": str(dev),
            "leafattack": leafattack.__version__,
            "torch": torch.__version__,
            "scenes": n,
            "pooled_path": prep.stack is not None,
        },
        "per_s": {k: round(v) for k, v in rates.items()},
        "grid_ratio": round(rates["grid"] / rates["bare"], 3),
        "scenes_ratio": round(rates["scenes"] / rates["bare"], 3),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

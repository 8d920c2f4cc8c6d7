"""Throughput of the edge analysis: trials per second at 32 x 32.

Builds 16 synthetic signs (filled shapes with a rim and interior "text" bars,
drawn at 4x and area-downsampled, like rendered signs) and N attacked images
(one soft-edged, leaf-coloured ellipse per trial, pasted with alpha). Then
times what the run does per batch of trials:

1. clean edge maps of the 16 signs, once (``canny_batch``);
2. edge maps of the attacked images (``canny_batch``);
3. all registry metrics (``edge_metrics``) with the clean edges and sign
   masks indexed by the trials' sign ids.

Usage::

    uv run python benchmarks/bench_edges.py [--trials 50000] [--size 32] [--chunk 10000]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import cv2
import numpy as np

from leafattack.analysis.edges import EDGE_METRICS, EdgeConfig, canny_batch, edge_metrics

SIGN_COLOURS = ((200, 30, 30), (240, 200, 20), (245, 245, 245), (20, 70, 170))
LEAF_COLOURS = ((200, 90, 20), (170, 30, 20), (110, 70, 30), (220, 170, 30))
BACKGROUND = (128, 128, 128)


def make_signs(count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` synthetic signs: uint8 (count, size, size, 3) RGB and bool masks."""
    big = 4 * size
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    masks = np.empty((count, size, size), dtype=bool)
    c = big // 2
    r = int(big * 0.42)
    for i in range(count):
        canvas = np.full((big, big, 3), BACKGROUND, dtype=np.uint8)
        mask = np.zeros((big, big), dtype=np.uint8)
        shape = i % 4
        if shape == 0:
            cv2.circle(mask, (c, c), r, 255, -1)
        else:
            sides = (8, 3, 4)[shape - 1]
            phase = (math.pi / 8, -math.pi / 2, 0.0)[shape - 1]
            pts = [
                (
                    c + r * math.cos(phase + 2 * math.pi * k / sides),
                    c + r * math.sin(phase + 2 * math.pi * k / sides),
                )
                for k in range(sides)
            ]
            cv2.fillPoly(mask, [np.array(pts, dtype=np.int32)], 255)
        colour = SIGN_COLOURS[(i // 4) % len(SIGN_COLOURS)]
        rim = (255, 255, 255) if colour != SIGN_COLOURS[2] else (0, 0, 0)
        canvas[mask > 0] = rim
        inner = cv2.erode(mask, np.ones((9, 9), np.uint8))
        canvas[inner > 0] = colour
        ink = (0, 0, 0) if colour in (SIGN_COLOURS[1], SIGN_COLOURS[2]) else (255, 255, 255)
        for k in range(1 + i % 3):  # "text": one to three bars
            y = c - big // 8 + k * big // 10
            cv2.rectangle(canvas, (c - big // 5, y), (c + big // 5, y + big // 24), ink, -1)
        images[i] = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
        masks[i] = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) >= 128
    return images, masks


def make_attacks(
    signs: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` attacked images: (sign ids int64 (n,), images uint8 (n,S,S,3), leaf alpha float32)."""
    size = signs.shape[1]
    sign_ids = rng.integers(0, signs.shape[0], n)
    cx, cy = (rng.uniform(0.2, 0.8, (2, n)) * size)[:, :, None, None]
    a = (rng.uniform(0.1, 0.5, n) * size / 2)[:, None, None]
    b = a * rng.uniform(0.4, 0.8, n)[:, None, None]
    theta = rng.uniform(0, math.pi, n)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    alpha = np.clip((1.0 - rho) * b + 0.5, 0.0, 1.0).astype(np.float32)  # ~1 px soft edge
    colours = np.array(LEAF_COLOURS, dtype=np.float32)[rng.integers(0, len(LEAF_COLOURS), n)]
    base = signs[sign_ids].astype(np.float32)
    mixed = base * (1 - alpha[..., None]) + colours[:, None, None, :] * alpha[..., None]
    return sign_ids, np.round(mixed).astype(np.uint8), alpha


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=10_000, help="trials per edge_metrics call")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    signs, masks = make_signs(16, args.size)
    sign_ids, attacked, alpha = make_attacks(signs, args.trials, rng)
    config = EdgeConfig()

    best: dict[str, float] = {}
    for _ in range(args.repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        clean_edges = canny_batch(signs, config)
        t_canny = 0.0
        t_metrics = 0.0
        for start in range(0, args.trials, args.chunk):
            sl = slice(start, start + args.chunk)
            t1 = time.perf_counter()
            edges = canny_batch(attacked[sl], config)
            t2 = time.perf_counter()
            ids = sign_ids[sl]
            edge_metrics(clean_edges[ids], edges, alpha[sl], masks[ids], config=config)
            t3 = time.perf_counter()
            t_canny += t2 - t1
            t_metrics += t3 - t2
        total = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if not best or total < best["total"]:
            best = {"total": total, "canny": t_canny, "metrics": t_metrics, "cpu": cpu}

    n = args.trials
    print(
        f"edge benchmark: {n} trials at {args.size}x{args.size}, chunk {args.chunk}, "
        f"{len(EDGE_METRICS)} metrics, {os.cpu_count()} CPUs, cv2 threads {cv2.getNumThreads()}"
    )
    print(f"  canny_batch (attacked): {n / best['canny']:>10,.0f} trials/s")
    print(f"  edge_metrics (all):     {n / best['metrics']:>10,.0f} trials/s")
    print(f"  total:                  {n / best['total']:>10,.0f} trials/s")
    print(
        f"  CPU time (all threads): {n / best['cpu']:>10,.0f} trials per CPU-second "
        f"(wall/CPU = {best['total'] / best['cpu']:.2f}; other load on the machine lowers trials/s)"
    )


if __name__ == "__main__":
    main()

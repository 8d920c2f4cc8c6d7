"""Command-line interface: parses arguments, calls the public API, prints tables.

Every user-caused problem ends as one line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from leafattack.errors import LeafattackError

log = logging.getLogger("leafattack")

SPLIT_HELP = (
    "attack only the signs outside (heldout) or inside (train) the training split the "
    "model's checkpoint records (default all)"
)


def _given_flags(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The flags that were given on the command line, keyed by their config names.

    Unset flags are None and unset switches False; neither overrides a config file.
    """
    values = {n: getattr(args, n, None) for n in names}
    return {n: v for n, v in values.items() if v is not None and v is not False}


def cmd_run(args: argparse.Namespace) -> int:
    from leafattack.api import run
    from leafattack.config import CONFIG_KEYS, RunConfig, config_from_mapping, load_config

    values: dict[str, Any] = load_config(args.config) if args.config else {}
    config = config_from_mapping(values)
    flags = _given_flags(args, CONFIG_KEYS)
    if args.sizes_cm is not None:
        if args.sizes is not None:
            raise LeafattackError("--sizes and --sizes-cm: expected one of them, not both")
        flags.update(sizes=args.sizes_cm, size_unit="cm")
    elif args.sizes is not None:
        flags["size_unit"] = "face"
    config = config_from_mapping(flags, base=config)
    assert isinstance(config, RunConfig)
    kinds = config.controls
    result = run(config, controls=kinds)
    print(format_run_summary(result, config.grid.size_unit))
    if result.edges is not None:
        print()
        print(f"edge metrics vs success ({result.edges.correlation_path}):")
        print(result.edges.table_text)
    if kinds:
        _print_controls(result.run_dir)
    return 0


# --- neutral-occluder controls (issue 14) -------------------------------------------------


def _print_controls(run_dir: Path) -> None:
    import pandas as pd

    from leafattack.analysis.controls import CONTROLS_SUMMARY_FILE, format_controls_table

    print()
    print(format_controls_table(pd.read_csv(run_dir / CONTROLS_SUMMARY_FILE)))


def cmd_controls(args: argparse.Namespace) -> int:
    from leafattack.analysis.controls import format_controls_table
    from leafattack.api import run_controls

    res = run_controls(
        args.run_dir, args.kinds, device=args.device, quiet=args.quiet, n_boot=args.n_boot,
        report=args.report,
    )
    print(format_controls_table(res.summary))
    print(f"wrote {res.run_dir / 'controls.csv'} and {res.run_dir / 'controls_summary.csv'}")
    return 0


def format_run_summary(result: Any, size_unit: str = "face") -> str:
    """A compact text summary of a run (overall, then by factor); levels longer than the
    label column (GTSRB class names) are cut with an ellipsis, so the columns hold."""
    from leafattack.report.text import shorten

    s = result.summary
    clean = result.clean
    lines = [f"run directory: {result.run_dir}"]
    n_ok = int(clean["correct"].sum())
    lines.append(
        f"clean accuracy: {n_ok}/{len(clean)} signs"
        + (
            f" ({len(clean) - n_ok} misclassified when clean, not attacked)"
            if n_ok < len(clean)
            else ""
        )
    )
    if s.empty:
        lines.append(
            "no trials were run (no sign is classified correctly when clean, or every such "
            "sign is already of the target class)"
        )
        return "\n".join(lines)
    if result.resumed_from:
        lines.append(f"resumed after {result.resumed_from} of {result.n_trials} trials")
    if result.n_trials > result.resumed_from and result.seconds > 0:
        lines.append(f"speed: {result.trials_per_second:,.0f} trials/s")
    fooled = s[s["factor"] == "signs_fooled"]
    if not fooled.empty:
        f = fooled.iloc[0]
        lines.append(
            f"signs fooled by at least one placement: {int(f.successes)}/{int(f.trials)} "
            f"({float(f.rate):.1%}, 95% CI [{float(f.ci_low):.1%}, {float(f.ci_high):.1%}])"
        )
    factors = ("overall", "species", "colour", "size", "angle", "n_leaves", "coverage")
    for factor in (*factors, "sign_class"):
        part = s[s["factor"] == factor]
        if part.empty or (factor == "colour" and len(part) < 2):
            continue
        lines.append("")
        label = "success by " + factor if factor != "overall" else "overall"
        if factor == "size":
            label += " (cm)" if size_unit == "cm" else " (x face width)"
        lines.append(
            f"{shorten(label, 31):<32}"
            f"{'trials':>9} {'rate':>7}  95% CI (signs resampled)"
        )
        for row in part.itertuples(index=False):
            lo, hi = float(row.ci_low), float(row.ci_high)
            ci = "- (one sign)" if lo != lo else f"[{lo:.1%}, {hi:.1%}]"  # NaN: one sign
            lines.append(
                f"  {shorten(str(row.level), 29):<30}{int(row.trials):>9} "
                f"{float(row.rate):>7.1%}  {ci}"
            )
    return "\n".join(lines)


# --- Adaptive search (issue 13) --------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    from leafattack.api import search
    from leafattack.config import (
        SEARCH_CONFIG_KEYS,
        load_config,
        search_config_from_mapping,
    )

    values: dict[str, Any] = load_config(args.config, search=True) if args.config else {}
    config = search_config_from_mapping(values)
    flags = _given_flags(args, SEARCH_CONFIG_KEYS)
    if args.stop_on_success is not None:  # a switch that may be False on purpose
        flags["stop_on_success"] = args.stop_on_success
    config = search_config_from_mapping(flags, base=config)
    print(format_search_summary(search(config)))
    return 0


def format_search_summary(result: Any) -> str:
    """A compact text summary of a search: signs fooled, queries used, the curve."""
    clean, best, curve = result.clean, result.best, result.curve
    lines = [f"search directory: {result.run_dir}"]
    n_ok = int(clean["correct"].sum())
    lines.append(f"clean accuracy: {n_ok}/{len(clean)} signs; {len(best)} attacked")
    if best.empty:
        lines.append("no sign was searched (none is classified correctly when clean)")
        return "\n".join(lines)
    fooled = best[best["success"]]
    lines.append(
        f"method {result.method}, budget {result.budget}: {len(fooled)}/{len(best)} signs "
        f"fooled; queries to the first success: "
        + (
            f"median {float(fooled['first_success'].median()):g}, "
            f"max {int(fooled['first_success'].max())}"
            if len(fooled)
            else "none"
        )
    )
    eot = int(getattr(result, "eot", 1))
    if eot > 1:
        lines.append(
            f"EOT: each query judged under {eot} sampled views (mean loss, success in a "
            f"strict majority); the budget of {result.budget} model evaluations buys "
            f"{result.budget // eot} queries per sign, and the table below counts queries"
        )
    if result.replayed:
        lines.append(f"resumed: {result.replayed} queries replayed from queries.csv")
    if result.evaluated and result.seconds > 0:
        lines.append(f"speed: {result.queries_per_second:,.0f} queries/s")
    lines.append("")
    lines.append(f"{'budget':>8} {'fooled':>8} {'robust accuracy':>16}")
    for row in curve.itertuples(index=False):
        lines.append(
            f"{int(row.budget):>8} {int(row.signs_fooled):>4}/{int(row.signs_attacked):<3} "
            f"{float(row.robust_accuracy):>16.1%}"
        )
    return "\n".join(lines)


def cmd_render(args: argparse.Namespace) -> int:
    from leafattack.api import render

    paths = render(
        args.scenes,
        args.out,
        signs=args.signs,
        leaves=args.leaves,
        sign_size=args.sign_size,
        device=args.device,
        quiet=args.quiet,
        views=args.views,
        seed=args.seed,
        size_unit=args.size_unit,
        appearance=args.appearance,
        shadow=args.shadow,
    )
    print(f"wrote {len(paths)} scenes to {args.out}")
    return 0


def cmd_signs_render(args: argparse.Namespace) -> int:
    from leafattack.data.builtin import builtin_signs_dir, write_builtin_signs

    if args.variant_seed is not None:  # fresh renders no training has seen (issue 14)
        from leafattack.data.fresh import write_fresh_signs

        if not args.out:
            raise LeafattackError("--variant-seed: expected --out FOLDER for the fresh renders")
        manifest = write_fresh_signs(
            args.out, variant_seed=args.variant_seed, variants=args.variants, size=args.size
        )
        print(f"wrote {16 * args.variants} fresh renders at {args.size}x{args.size} and {manifest}")
        return 0
    if args.variants != 1:
        raise LeafattackError("--variants: expected --variant-seed S as well")
    out = Path(args.out) if args.out else builtin_signs_dir()
    manifest = write_builtin_signs(out, size=args.size)
    print(f"wrote 16 signs at {args.size}x{args.size} and {manifest}")
    return 0


def cmd_leaves_generate(args: argparse.Namespace) -> int:
    from leafattack.leaves.library import builtin_leaves_dir, write_leaf_library

    out = Path(args.out) if args.out else builtin_leaves_dir()
    kw: dict[str, Any] = {"seed": args.seed, "size": args.size}
    if args.species:
        kw["species"] = [s.strip() for s in args.species.split(",") if s.strip()]
    if args.colours:
        kw["colours"] = [s.strip() for s in args.colours.split(",") if s.strip()]
    manifest = write_leaf_library(out, **kw)
    print(f"wrote leaf library {manifest}")
    return 0


def cmd_leaves_split(args: argparse.Namespace) -> int:
    from leafattack.leaves.split import split_library

    res = split_library(
        args.folder, args.train_out, args.attack_out, test_frac=args.test_frac,
        seed=args.seed, by=args.by,
    )
    print(f"training leaves: {len(res.train_ids)} in {res.train_dir}")
    print(f"attack leaves:   {len(res.attack_ids)} in {res.attack_dir}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from leafattack.leaves.segment import segment_files

    paths = [Path(p) for p in args.photos]
    written = segment_files(paths, Path(args.out), species=args.species)
    print(
        f"segmented {len(written)} leaves into {args.out} (the whole library: "
        f"{Path(args.out) / 'contact_sheet.png'}; this call's masks: "
        f"{Path(args.out) / 'segmentation_sheet.png'})"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from leafattack.training.trainer import TrainConfig, train

    cfg = TrainConfig(
        signs=args.signs,
        arch=args.arch,
        epochs=args.epochs,
        out=args.out,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        lr=args.lr,
        variants=args.variants,
        leaf_augment=args.leaf_augment,
        augment_leaves=args.augment_leaves,
        adversarial_leaves=args.adversarial_leaves,
        input_size=args.input_size,
        quiet=args.quiet,
    )
    res = train(cfg)
    print(
        f"validation accuracy: {res.val_accuracy:.2%} after {cfg.epochs} epochs "
        f"({res.seconds:.0f} s)"
    )
    print(f"wrote {res.checkpoint} and {res.checkpoint}.history.csv")
    return 0


def _load_model(spec: str, args: argparse.Namespace) -> Any:
    """The model ``spec`` on ``--device``, with ``--trust-torchscript`` (a Classifier)."""
    from leafattack.models.classifier import resolve_device
    from leafattack.models.loading import load_model

    return load_model(spec, resolve_device(args.device), trust_torchscript=args.trust_torchscript)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from leafattack.data.sources import load_signs
    from leafattack.training.trainer import evaluate

    clf = _load_model(args.model, args)
    signs = load_signs(args.signs)
    if len(signs) == 0:
        raise LeafattackError(f"sign source {args.signs!r} holds no signs")
    variants = args.variants
    if variants is None:
        variants = 200 if args.signs == "builtin" else 0
    res = evaluate(clf, signs, variants=variants, seed=args.seed, split=args.split)
    what = f"{variants} fresh variants per sign" if variants else "the images as given"
    if res.trained:  # issue 14: scoring what the model was trained on inflates accuracy
        print(
            f"warning: {res.trained:,} of {res.images:,} "
            f"{'photos' if signs.masks is None and not variants else 'signs'} were in this "
            f"model's training split"
            + (" (scored through fresh variants of them)" if variants else "")
            + (
                ""
                if args.split == "train"
                else "; --split heldout scores only the others"
                if res.trained < res.images
                else "; score fresh renders: leafattack signs render --variant-seed S --out DIR"
            ),
            file=sys.stderr,
        )
    print(f"accuracy: {res.accuracy:.2%} on {res.n} images ({what})")
    from leafattack.report.text import shorten

    print(f"{'class':<32}{'n':>6}{'accuracy':>10}")
    for row in res.per_class.itertuples(index=False):
        print(f"  {shorten(str(row[0]), 29):<30}{int(row[1]):>6}{float(row[3]):>10.1%}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res.confusion.to_csv(out / "confusion.csv")
        res.per_class.to_csv(out / "per_class.csv", index=False, float_format="%.6g")
        print(f"wrote {out / 'confusion.csv'} and {out / 'per_class.csv'}")
    return 0


def _edge_thresholds(args: argparse.Namespace) -> str:
    """--thresholds, --auto, or fixed when --low/--high are given; else by source."""
    if args.auto:
        if args.thresholds not in (None, "auto"):
            raise LeafattackError(f"--auto and --thresholds {args.thresholds}: expected one")
        return "auto"
    if args.thresholds is not None:
        return str(args.thresholds)
    return "fixed" if args.low is not None or args.high is not None else "source"


def cmd_edges(args: argparse.Namespace) -> int:
    from leafattack.analysis.edge_analysis import run_edges
    from leafattack.analysis.edges import EdgeConfig

    cfg = None
    if (
        args.resolution != "model"
        or args.auto
        or args.low is not None
        or args.high is not None
        or args.blur is not None
    ):
        kw: dict[str, Any] = {}
        if args.low is not None:
            kw["low"] = args.low
        if args.high is not None:
            kw["high"] = args.high
        if args.blur is not None:
            kw["blur_ksize"] = args.blur
        if args.resolution == "sign":
            kw["resolution"] = None
        elif args.resolution != "model":
            try:
                kw["resolution"] = int(args.resolution)
            except ValueError:
                raise LeafattackError(
                    f"--resolution {args.resolution!r}: expected model, sign or a pixel size"
                ) from None
        try:
            cfg = EdgeConfig(**kw)
        except ValueError as exc:
            raise LeafattackError(str(exc)) from None
    res = run_edges(
        Path(args.run_dir),
        config=cfg,
        device=args.device,
        quiet=args.quiet,
        batch_size=args.batch_size,
        n_boot=args.n_boot,
        at_model_resolution=args.resolution == "model",
        overwrite=args.overwrite,
        thresholds=_edge_thresholds(args),
    )
    print(res.table_text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from leafattack.report.html import write_report
    from leafattack.report.search import is_search_report, write_search_report

    if is_search_report(Path(args.run_dir)):  # a search directory, or a folder of them
        print(f"wrote {write_search_report(Path(args.run_dir))}")
        return 0
    path = write_report(Path(args.run_dir))
    print(f"wrote {path}")
    return 0


def _rate(row: Any) -> str:
    lo, hi = float(row.ci_low), float(row.ci_high)
    band = f" [{lo:.1%}, {hi:.1%}]" if lo == lo and hi == hi else ""  # NaN: one sign
    return f"{float(row.rate):.1%}{band}"


def cmd_robustness(args: argparse.Namespace) -> int:
    from leafattack.api import robustness

    res = robustness(
        args.run_dir, views=args.views, view_spec=args.view_spec, seed=args.seed,
        all_successes=args.all_successes, device=args.device, quiet=args.quiet,
    )
    s = res.summary
    print(f"wrote {res.rows_path} and {res.summary_path}")
    print("survival (share of views under which an attack still succeeds, among views that")
    print("leave the clean sign correct; mean over signs, 95% bootstrap CI over signs):")
    for row in s[s["factor"] != "sign"].itertuples(index=False):
        print(f"  {row.factor:<12} {str(row.level):<16} {row.signs:>4} signs  {_rate(row)}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from leafattack.api import transfer

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    res = transfer(
        args.run_dir, models, all_successes=args.all_successes, device=args.device,
        trust_torchscript=args.trust_torchscript, quiet=args.quiet,
    )
    print(f"wrote {res.rows_path}, {res.summary_path} and figures/transfer.png")
    print("transfer (share of successful scenes that also fool the model, over signs it gets")
    print("right when clean; mean over signs, 95% bootstrap CI over signs):")
    for row in res.summary.itertuples(index=False):
        print(f"  {row.model:<40} {row.signs:>4} signs  {_rate(row)}")
    return 0


def cmd_check_model(args: argparse.Namespace) -> int:
    from leafattack.data.sources import load_signs
    from leafattack.engine.check import check_model, format_model_check

    clf = _load_model(args.spec, args)
    signs = load_signs(args.signs)
    res = check_model(clf, signs, sign_size=args.sign_size, seed=args.seed)
    print(format_model_check(args.spec, clf, signs, res, args.sign_size))
    return 0 if res.batch_independent else 1


def cmd_benchmark(args: argparse.Namespace) -> int:
    from leafattack.benchmark import Protocol, benchmark

    res = benchmark(
        args.models.split(","),
        args.signs,
        out=args.out,
        protocol=Protocol(budget=args.budget),
        device=args.device,
        quiet=args.quiet,
        trust_torchscript=args.trust_torchscript,
    )
    print(f"wrote {res.csv_path} and {res.html_path}")
    if res.reused:
        print(f"reused the finished rows of: {', '.join(res.reused)}")
    print(format_leaderboard(res.rows))
    return 0


def format_leaderboard(rows: Any) -> str:
    """The leaderboard as a text table: clean and robust accuracy (K=1, 3 at the budget)."""
    budget = int(rows["budget"].iloc[0]) if len(rows) else 0
    head = (
        f"{'model':<24}{'clean':>8}{'grid':>8}{'K=1 @10':>9}{'@100':>8}{f'@{budget}':>8}"
        f"{'K=3 @' + str(budget):>11}{'grey+':>8}{'surv.':>8}"
    )
    lines = [head]
    cols = (
        "clean_accuracy", "grid_success_rate", "robust_k1_b10", "robust_k1_b100",
        "robust_k1_full", "robust_k3_full", "grey_excess", "survival",
    )
    widths = (8, 8, 9, 8, 8, 11, 8, 8)
    for row in rows.itertuples(index=False):
        values = [float(getattr(row, c)) for c in cols]
        cells = "".join(
            f"{v:>{w}.1%}" if v == v else f"{'n/a':>{w}}"  # NaN: not measured
            for v, w in zip(values, widths, strict=True)
        )
        lines.append(f"{str(row.model):<24}{cells}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    from leafattack.criteria import CRITERIA
    from leafattack.models.architectures import ARCHITECTURES

    print("sign sources: builtin, PATH (folder or manifest.csv), gtsrb:PATH, lisa:PATH")
    print("architectures:", ", ".join(ARCHITECTURES), "+ torchvision models by name")
    print("criteria:", ", ".join(CRITERIA))
    from leafattack.models.contract import contract_text

    print("models: default, CHECKPOINT.pt, torchscript:PATH, export:PROGRAM.pt2, pkg.mod:factory")
    print(contract_text())
    try:
        from leafattack.leaves.colours import FALL_COLOURS
        from leafattack.leaves.species import SPECIES

        print("leaf species:", ", ".join(SPECIES))
        print("colours (recolouring targets): natural,", ", ".join(FALL_COLOURS))
        print("leaf folders: manifest colours are free labels; species from the manifest")
    except ImportError:  # pragma: no cover - only while the package is incomplete
        pass
    return 0


_SIGNS_HELP = "sign source: builtin | PATH | gtsrb:PATH | lisa:PATH"
_MODEL_HELP = (
    "model spec: default | CHECKPOINT.pt | torchscript:PATH | export:PROGRAM.pt2 | "
    "pkg.mod:factory (see leafattack info for what a model receives)"
)
_TRUST_HELP = "allow a TorchScript or torch.export model file (it runs code from the file)"
_RUN_DIR_HELP = "the directory of a finished (or interrupted) run"


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one line ``error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="leafattack",
        description="Fall-leaf occlusion attacks on traffic-sign classifiers.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="grid-search leaf attack (resumable); the main job")
    r.add_argument("--config", help="TOML config file (same names as the flags)")
    r.add_argument("--signs", help="sign source: builtin | PATH | gtsrb:PATH | lisa:PATH")
    r.add_argument("--leaves", help="leaf library folder with manifest.csv, or builtin")
    r.add_argument("--model", help=_MODEL_HELP)
    r.add_argument("--out", help="run directory (default results/<model>-<config hash>)")
    r.add_argument("--leaf-ids", dest="leaf_ids", help="comma-separated leaf ids")
    r.add_argument(
        "--species",
        help="comma-separated species, or all (default maple,oak,poplar on the built-in "
        "leaves, all with --leaves DIR)",
    )
    r.add_argument(
        "--colours",
        "--colors",
        dest="colours",
        help="comma-separated fall colours, or natural (default natural)",
    )
    r.add_argument(
        "--sizes", help="leaf longest side / sign face width, e.g. 0.2,0.3,0.4,0.5 (default)"
    )
    r.add_argument(
        "--sizes-cm",
        dest="sizes_cm",
        help="leaf longest side in cm, e.g. 8,12,16: converted per sign through standard "
        "sign-face sizes (MUTCD for LISA classes, German VwV-StVO for GTSRB)",
    )
    r.add_argument(
        "--appearance",
        choices=["auto", "matched", "raw"],
        help="leaf takes on the photo's resolution, blur, exposure and noise (matched) or "
        "not (raw); auto = matched on photo sources, raw on builtin (default auto)",
    )
    r.add_argument(
        "--shadow", action="store_true", help="matched leaves cast a soft, seeded shadow"
    )
    r.add_argument("--angles", help="degrees CCW: list or START:STOP:STEP (default 0:360:45)")
    r.add_argument("--positions", help="NxM lattice of leaf centres (default 5x5)")
    r.add_argument("--on-sign-only", action="store_true", help="keep centres on the sign mask")
    r.add_argument(
        "--scenes-per-sign",
        type=int,
        help="instead of the grid, N seeded random scenes per sign (centres uniform over the "
        "sign face, sizes and angles uniform within the grid's ranges; leaves.csv lists them)",
    )
    r.add_argument(
        "--leaves-per-scene", type=int, help="leaves in each random scene, 1-16 (default 1)"
    )
    r.add_argument("--target", help="class name for a targeted attack")
    r.add_argument("--min-confidence", type=float, help="minimum top-1 probability (0..1)")
    r.add_argument("--limit-signs", type=int, help="attack only N signs (quick looks)")
    r.add_argument("--split", choices=["heldout", "train", "all"], help=SPLIT_HELP)
    r.add_argument("--batch-size", type=int, help="trials per batch (default 512)")
    r.add_argument("--device", help="auto | cpu | cuda[:N] (default auto)")
    r.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    r.add_argument("--sign-size", type=int, help="compositing resolution (default 128)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--overwrite", action="store_true", help="discard a mismatching run dir")
    r.add_argument(
        "--trust-torchscript",
        action="store_true",
        help=_TRUST_HELP,
    )
    r.add_argument("--edges", action="store_true", help="also run the edge analysis")
    r.add_argument("--report", action="store_true", help="also write report.html")
    r.add_argument(
        "--controls",
        help="also run neutral-occluder controls: comma-separated kinds (grey, mean, black, "
        "shuffled, noise) or all; see leafattack controls",
    )
    r.add_argument("--executor", choices=["local", "ray"], help="where trials run (default local)")
    r.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    r.add_argument("--workers", type=int, help="Ray actors (default 2)")
    r.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray actor (default 0)")
    r.add_argument("--chunk-size", type=int, help="trials per Ray task (multiple of batch size)")
    r.add_argument(
        "--trials-format",
        "--format",
        dest="trials_format",
        choices=["auto", "csv", "parquet"],
        help="trials table: trials.csv, or trials.parquet; auto (default): "
        "Parquet from 1,000,000 trials on",
    )
    r.add_argument(
        "--streams",
        type=int,
        help="batches computed at once on a CPU, each with a share of the threads "
        "(default 0: automatic, 2 on a CPU for the built-in architectures, else 1); more "
        "than 1 runs the model's forward pass on several threads at once",
    )
    r.set_defaults(func=cmd_run)

    _add_search_parser(sub)

    rd = sub.add_parser(
        "render",
        help="render given scenes (several leaves each) to PNGs, without an attack",
        description="Render the scenes of a scenes CSV (one row per leaf: scene_id, sign_id, "
        "slot, leaf_id, colour, size, angle, x, y; the conventions of trials.csv) to "
        "OUT/<scene_id>.png at the sign resolution.",
    )
    rd.add_argument("--signs", default="builtin", help="sign source (default builtin)")
    rd.add_argument("--leaves", default="builtin", help="leaf library (default builtin)")
    rd.add_argument("--scenes", required=True, help="scenes CSV, one row per leaf")
    rd.add_argument("--out", required=True, help="folder for <scene_id>.png")
    rd.add_argument("--sign-size", type=int, default=128, help="pixels (default 128)")
    rd.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    rd.add_argument(
        "--views",
        help="viewing transforms: approach, or ranges like yaw=-30:30,distance=1:4,blur=0:2 "
        "(keys: yaw pitch rotation distance blur motion motion_angle brightness contrast "
        "gamma temperature noise jpeg); parameters go to OUT/views.csv",
    )
    rd.add_argument(
        "--seed", type=int, default=0, help="seed of the views and of matched leaves (default 0)"
    )
    rd.add_argument(
        "--size-unit",
        choices=["face", "cm"],
        default="face",
        help="unit of the size column: fraction of the sign face width, or cm (default face)",
    )
    rd.add_argument(
        "--appearance",
        choices=["auto", "matched", "raw"],
        default="auto",
        help="as run --appearance (default auto: matched on photo sources)",
    )
    rd.add_argument("--shadow", action="store_true", help="as run --shadow")
    rd.add_argument("--quiet", action="store_true", help="no progress bar")
    rd.set_defaults(func=cmd_render)

    s = sub.add_parser("signs", help="built-in signs")
    ssub = s.add_subparsers(dest="signs_command", required=True, metavar="ACTION")
    sr = ssub.add_parser("render", help="re-render the 16 built-in signs deterministically")
    sr.add_argument("--size", type=int, default=128, help="side in pixels (default 128)")
    sr.add_argument("--out", help="folder (default: the package's signs/)")
    sr.add_argument(
        "--variant-seed", type=int,
        help="write fresh seeded variants of the signs instead (perspective, light, clutter, "
        "blur, JPEG, noise), from a seed stream that training never uses; needs --out",
    )
    sr.add_argument(
        "--variants", type=int, default=1, help="fresh variants per sign (default 1)"
    )
    sr.set_defaults(func=cmd_signs_render)

    lv = sub.add_parser("leaves", help="leaf library")
    lsub = lv.add_subparsers(dest="leaves_command", required=True, metavar="ACTION")
    lg = lsub.add_parser("generate", help="generate the procedural leaf library")
    lg.add_argument("--out", help="folder (default: the package's leaves/)")
    lg.add_argument("--seed", type=int, default=0, help="library seed (default 0)")
    lg.add_argument("--size", type=int, default=256, help="render canvas side (default 256)")
    lg.add_argument("--species", help="comma-separated species, or all (default: the library's 5)")
    lg.add_argument("--colours", "--colors", dest="colours", help="comma-separated colours")
    lg.set_defaults(func=cmd_leaves_generate)
    ls = lsub.add_parser(
        "split",
        help="split a leaf library into disjoint training and attack libraries (seeded)",
        description="Write two new leaf folders that share no leaf: one for train "
        "--augment-leaves, one for run --leaves, so that a defence is attacked with leaves "
        "its training never saw.",
    )
    ls.add_argument("folder", help="leaf library folder with manifest.csv, or builtin")
    ls.add_argument(
        "--test-frac", type=float, default=0.3,
        help="share of the leaves (per species) for the attack library (default 0.3)",
    )
    ls.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    ls.add_argument(
        "--by", choices=["leaf", "species"], default="leaf",
        help="keep single leaves or whole species together (default leaf; species when "
        "a species' leaves share a silhouette, as the generated colours do)",
    )
    ls.add_argument("--train-out", help="training library folder (default FOLDER-train)")
    ls.add_argument("--attack-out", help="attack library folder (default FOLDER-attack)")
    ls.set_defaults(func=cmd_leaves_split)

    sg = sub.add_parser(
        "segment",
        help="cut leaves out of photos into an RGBA leaf library",
        description="Cut one leaf out of each photo (a single leaf on a plain, light "
        "background) and append it to the leaf library OUT (manifest.csv, colour natural). "
        "Species: --species NAME, or else the name of the folder holding each photo "
        "(photos/maple/IMG_1.jpg is a maple). After every call OUT/contact_sheet.png shows "
        "the whole library and OUT/segmentation_sheet.png this call's photos and masks.",
    )
    sg.add_argument("photos", nargs="+", help="photos of single leaves on a plain background")
    sg.add_argument("--out", required=True, help="leaf library folder to append to")
    sg.add_argument(
        "--species", help="species name for the manifest (default: each photo's folder name)"
    )
    sg.set_defaults(func=cmd_segment)

    t = sub.add_parser("train", help="train a classifier with sign variations")
    t.add_argument("--signs", default="builtin", help=_SIGNS_HELP + " (default builtin)")
    t.add_argument(
        "--arch", default="lisacnn",
        help="architecture: lisacnn, gtsrbcnn or a torchvision model name (default lisacnn)",
    )
    t.add_argument("--epochs", type=int, default=30, help="passes (default 30)")
    t.add_argument("--out", required=True, help="checkpoint path (.pt)")
    t.add_argument(
        "--seed", type=int, default=0,
        help="seed of variants, split, initialisation and shuffling (default 0)",
    )
    t.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N] (default cpu)")
    t.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 0.002)")
    t.add_argument("--variants", type=int, default=0, help="variants per image and epoch")
    t.add_argument(
        "--leaf-augment",
        type=float,
        default=0.0,
        help="probability of pasting a random leaf on a training image (defence)",
    )
    t.add_argument(
        "--augment-leaves", default="builtin",
        help="leaf library the --leaf-augment or --adversarial-leaves leaves come from "
        "(default builtin; see leaves split)",
    )
    t.add_argument(
        "--adversarial-leaves",
        type=int,
        default=0,
        metavar="M",
        help="give each training image the worst, by the current loss, of M random leaf "
        "scenes (adversarial occlusion training; default 0 = off)",
    )
    t.add_argument("--input-size", type=int, help="model input side (default per arch)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="accuracy and confusion matrix of a model")
    e.add_argument("--model", default="default", help=_MODEL_HELP + " (default default)")
    e.add_argument("--signs", default="builtin", help=_SIGNS_HELP + " (default builtin)")
    e.add_argument("--out", help="folder for confusion.csv and per_class.csv")
    e.add_argument(
        "--variants",
        type=int,
        help="fresh variants per sign (default 200 for builtin, 0 otherwise)",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the variants (default 0)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    e.add_argument("--trust-torchscript", action="store_true", help=_TRUST_HELP)
    e.add_argument(
        "--split", default="all", choices=["heldout", "train", "all"],
        help="score only the signs outside (heldout) or inside (train) the model's recorded "
        "training split (default all)",
    )
    e.set_defaults(func=cmd_evaluate)

    ed = sub.add_parser("edges", help="Canny edge analysis of a run, with statistics")
    ed.add_argument("run_dir", help=_RUN_DIR_HELP)
    ed.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    ed.add_argument("--batch-size", type=int, default=2048, help="scenes per batch (default 2048)")
    ed.add_argument("--quiet", action="store_true", help="no progress bar")
    ed.add_argument(
        "--resolution",
        default="model",
        help="edge-map resolution: model (input size, default), sign, or pixels",
    )
    ed.add_argument(
        "--thresholds", choices=["source", "auto", "fixed"],
        help="Canny thresholds: auto (per image, from the median of the blurred grey image), "
        "fixed (--low/--high), or source (default: auto on photo sources, fixed 50/150 on "
        "rendered signs)",
    )
    ed.add_argument("--auto", action="store_true", help="same as --thresholds auto")
    ed.add_argument("--low", type=float, help="Canny low threshold (default 50)")
    ed.add_argument("--high", type=float, help="Canny high threshold (default 150)")
    ed.add_argument("--blur", type=int, help="Gaussian kernel size before Canny (default 3)")
    ed.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates for AUC CIs")
    ed.add_argument(
        "--overwrite", action="store_true",
        help="replace an edges.csv computed with other settings (otherwise refused)",
    )
    ed.set_defaults(func=cmd_edges)

    ct = sub.add_parser(
        "controls",
        help="is it the leaf? re-render a run's scenes with neutral occluders of the same shape",
        description="Re-render every attacked trial of a finished run with the same alpha "
        "masks and placements, the leaves' colour replaced by a neutral occluder: grey (mid "
        "grey), mean (the sign's mean colour under the leaf), black, shuffled (the leaf's own "
        "pixels permuted inside its mask, seeded), noise (seeded uniform noise). Writes "
        "controls.csv (resumable) and controls_summary.csv (leaf vs each control, sign-level "
        "intervals, McNemar's exact test). On a search directory: each searched sign's best "
        "query, with its leaves and placements.",
    )
    ct.add_argument("run_dir", help=_RUN_DIR_HELP)
    ct.add_argument("--kinds", help="comma-separated control kinds, or all (default all)")
    ct.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    ct.add_argument("--n-boot", type=int, default=1000, help="cluster-bootstrap resamples")
    ct.add_argument("--report", action="store_true", help="rewrite report.html afterwards")
    ct.add_argument("--quiet", action="store_true", help="no progress bar")
    ct.set_defaults(func=cmd_controls)

    rp = sub.add_parser("report", help="figures and a self-contained report.html of a run")
    rp.add_argument("run_dir", help="a run directory, a search directory or a folder of searches")
    rp.set_defaults(func=cmd_report)

    rb = sub.add_parser(
        "robustness",
        help="survival of a run's (or search's) successful scenes under seeded viewing changes",
    )
    rb.add_argument("run_dir", help=_RUN_DIR_HELP)
    rb.add_argument("--views", type=int, default=100, help="views per scene (default 100)")
    rb.add_argument(
        "--view-spec",
        help="approach (default: distance 1-4, yaw/pitch, brightness, blur, noise as a car "
        "approaching), identity, or ranges like yaw=-30:30,distance=1:4 (see render --views)",
    )
    rb.add_argument("--seed", type=int, default=0, help="seed of the views (default 0)")
    rb.add_argument(
        "--all-successes", action="store_true",
        help="every successful scene (or query of a search), not only each sign's best",
    )
    rb.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    rb.add_argument("--quiet", action="store_true", help="no progress bar")
    rb.set_defaults(func=cmd_robustness)

    tr = sub.add_parser(
        "transfer", help="a run's (or search's) successful scenes against other models"
    )
    tr.add_argument("run_dir", help=_RUN_DIR_HELP)
    tr.add_argument("--models", required=True, help="comma-separated model specs")
    tr.add_argument(
        "--all-successes", action="store_true",
        help="every successful scene (or query of a search), not only each sign's best",
    )
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    tr.add_argument("--trust-torchscript", action="store_true",
                    help=_TRUST_HELP)
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_transfer)

    cm = sub.add_parser(
        "check-model",
        help="load a model, print what it receives and returns, test it on signs",
        description="Load a model spec, print its contract (input size, resize, mean, std) "
        "and class names, classify the signs (accuracy) and compare its logits for one "
        "batch, one image at a time and a shuffled batch. Exit status 1 when the outputs "
        "change with the batch's composition.",
    )
    cm.add_argument("spec", help=_MODEL_HELP)
    cm.add_argument("--signs", default="builtin", help=_SIGNS_HELP + " (default builtin)")
    cm.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    cm.add_argument(
        "--sign-size", type=int, default=128,
        help="side the signs are squared to before the model's resize, as run (default 128)",
    )
    cm.add_argument("--seed", type=int, default=0, help="seed of the shuffled batch (default 0)")
    cm.add_argument("--trust-torchscript", action="store_true", help=_TRUST_HELP)
    cm.set_defaults(func=cmd_check_model)

    bm = sub.add_parser(
        "benchmark",
        help="the leaf-robustness benchmark: a fixed protocol per model, a leaderboard",
        description="Per model: clean accuracy, the grid run with the grey control, survival "
        "under views, and robust accuracy under an adaptive (cmaes) search that queries the "
        "model itself, at budgets 10, 100 and --budget with one and three leaves. Writes "
        "leaderboard.csv and leaderboard.html; resumes per model.",
    )
    bm.add_argument("--models", required=True, help="comma-separated SPEC or NAME=SPEC")
    bm.add_argument("--signs", default="builtin", help="sign source (default builtin)")
    bm.add_argument("--budget", type=int, default=1000, help="full search budget (default 1000)")
    bm.add_argument("--out", default="results/benchmark", help="benchmark folder")
    bm.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    bm.add_argument("--trust-torchscript", action="store_true",
                    help="allow TorchScript model files (they run code from the file)")
    bm.add_argument("--quiet", action="store_true", help="no progress bars")
    bm.set_defaults(func=cmd_benchmark)

    i = sub.add_parser(
        "info", help="list sign sources, architectures, species, colours and the model contract"
    )
    i.set_defaults(func=cmd_info)
    return p


def _add_search_parser(sub: Any) -> None:
    from leafattack.adaptive import METHODS

    q = sub.add_parser(
        "search",
        help="adaptive search: the worst leaves for each sign within a query budget",
        description="Per attacked sign, search the scene of K leaves that minimises the "
        "margin loss within --budget model queries (resumable; queries.csv logs every query).",
    )
    q.add_argument("--config", help="TOML config file (same names as the flags)")
    q.add_argument("--method", help=f"search method: {', '.join(METHODS)} (default random)")
    q.add_argument(
        "--budget", type=int,
        help="model evaluations per sign (default 1000); with --eot M each query costs M, "
        "so a sign gets budget // M queries",
    )
    q.add_argument(
        "--eot", type=int,
        help="Expectation over Transformation: judge each query under M sampled views "
        "(its loss is the mean over them, success a strict majority of them; the same M "
        "views for every candidate of a sign within a round); default 1 = head-on only",
    )
    q.add_argument(
        "--view-spec", dest="view_spec",
        help="views of --eot: approach (default), identity, or ranges like "
        "yaw=-30:30,distance=1:4 (see render --views)",
    )
    q.add_argument(
        "--leaves-per-scene", type=int, help="leaves in each searched scene, 1-5 (default 1)"
    )
    q.add_argument(
        "--size-range", help="leaf longest side / sign width, LO:HI in (0, 2] (default 0.2:0.5)"
    )
    q.add_argument(
        "--stop-on-success",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop a sign at its first success (default); --no-stop-on-success spends the "
        "whole budget",
    )
    q.add_argument(
        "--no-stop", dest="stop_on_success", action="store_false",
        help="spend the whole budget (find the most confident attack)",
    )
    q.add_argument("--signs", help="sign source: builtin | PATH | gtsrb:PATH | lisa:PATH")
    q.add_argument("--leaves", help="leaf library folder with manifest.csv, or builtin")
    q.add_argument("--model", help=_MODEL_HELP)
    q.add_argument("--out", help="search directory (default results/search-<method>-<hash>)")
    q.add_argument("--leaf-ids", dest="leaf_ids", help="comma-separated leaf ids")
    q.add_argument(
        "--species",
        help="comma-separated species, or all (default maple,oak,poplar on the built-in "
        "leaves, all with --leaves DIR)",
    )
    q.add_argument(
        "--colours", "--colors", dest="colours",
        help="comma-separated fall colours, or natural (default natural)",
    )
    q.add_argument("--sizes", help="the grid method's sizes (default 0.2,0.3,0.4,0.5)")
    q.add_argument("--angles", help="the grid method's angles (default 0:360:45)")
    q.add_argument("--positions", help="the grid method's NxM lattice (default 5x5)")
    q.add_argument("--target", help="class name for a targeted attack")
    q.add_argument("--min-confidence", type=float, help="minimum top-1 probability (0..1)")
    q.add_argument("--limit-signs", type=int, help="attack only N signs (quick looks)")
    q.add_argument("--split", choices=["heldout", "train", "all"], help=SPLIT_HELP)
    q.add_argument("--batch-size", type=int, help="scenes per batch (default 512)")
    q.add_argument("--device", help="auto | cpu | cuda[:N] (default auto)")
    q.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    q.add_argument("--sign-size", type=int, help="compositing resolution (default 128)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--overwrite", action="store_true", help="discard a mismatching directory")
    q.add_argument(
        "--trust-torchscript", action="store_true",
        help=_TRUST_HELP,
    )
    q.set_defaults(func=cmd_search)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``leafattack`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag (already reported on one line)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except LeafattackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: results so far are kept; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except MemoryError:
        print("error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback: one line, naming what failed
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {text} (rerun with -v for details)", file=sys.stderr)
        if args.verbose:
            logging.getLogger(__name__).exception("details")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

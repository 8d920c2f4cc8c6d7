"""Export a model to a ``torch.export`` program that leafattack loads (``export:PATH``).

Usage::

    uv run python docs/export_model.py my_models:make model.pt2
    uv run leafattack check-model export:model.pt2
    uv run leafattack run --model export:model.pt2

``my_models:make`` is a leafattack model factory: a function without arguments that
returns ``(module, metadata)``, the metadata a dict with ``class_names`` and optionally
``input_size``, ``mean``, ``std`` and ``resize`` (see ``leafattack info``). The program
is exported in eval mode with a dynamic batch dimension (leafattack classifies batches of
any size) and the metadata goes into the archive as the extra file ``leafattack.json``.

The same steps work from Python for a module you already have::

    export_program(module.eval(), {"class_names": names, "input_size": 64}, "model.pt2")
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leafattack.models import load_factory


def export_program(module: nn.Module, metadata: Mapping[str, Any], out: str | Path) -> Path:
    """Export ``module`` for (N, 3, S, S) float32 input, S = ``metadata["input_size"]``
    (default 32), and save it with ``metadata`` as ``leafattack.json``."""
    size = int(metadata.get("input_size", 32))
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
    path = Path(out)
    torch.export.save(program, path, extra_files={"leafattack.json": json.dumps(dict(metadata))})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("factory", help="package.module:function returning (module, metadata)")
    parser.add_argument("out", help="the .pt2 file to write")
    args = parser.parse_args()
    clf = load_factory(args.factory)  # checks the metadata as a run would
    pp = clf.preprocess
    meta = {
        "class_names": list(clf.class_names),
        "input_size": pp.input_size,
        "mean": list(pp.mean),
        "std": list(pp.std),
        "resize": pp.resize,
    }
    print(f"wrote {export_program(clf.module, meta, args.out)}")


if __name__ == "__main__":
    main()

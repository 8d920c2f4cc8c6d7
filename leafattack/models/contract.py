"""The model contract: exactly what a model receives from leafattack and must return.

The same text is printed by ``leafattack info`` and ``leafattack check-model`` and
stated in the README ("What a model receives").
"""

from __future__ import annotations

import textwrap

from leafattack.models.classifier import Classifier, Preprocess

CONTRACT: tuple[str, ...] = (
    "A model receives a float32 batch (N, 3, S, S), built from each scene in three steps:",
    "  1. RGB in [0, 1]: the sign with its leaves, uint8 0..255 divided by 255 "
    "(channels R, G, B; no BGR, no 0..255).",
    "  2. resized to S x S (the model's input_size) with its resize mode "
    "(default area; bilinear and bicubic antialias when shrinking; nearest).",
    "  3. normalised per channel: (x - mean) / std (defaults mean 0.5, std 0.25 for "
    "every channel).",
    "It returns (N, K) logits, one per class name, in the order of its class names "
    "(a tuple (logits, ...) is read as its first item); leafattack takes the softmax.",
    "Outputs must not depend on the other images of the batch (eval mode; check-model "
    "compares a batch with one image at a time and a shuffled batch).",
    "Metadata sets the steps: a checkpoint stores class_names, input_size, mean, std and "
    "resize; a factory returns (module, {'class_names': [...], 'input_size': 32, "
    "'mean': [r, g, b], 'std': [r, g, b], 'resize': 'area'}); TorchScript and "
    "torch.export files carry the same keys in an extra file leafattack.json. "
    "Keys left out take the defaults (input_size 32, mean 0.5, std 0.25, resize area); "
    "class_names is required.",
)
"""The contract, one paragraph per item (see :func:`contract_text`)."""


def contract_text(width: int = 92) -> str:
    """The contract wrapped to ``width`` columns (continuation lines indented)."""
    lines: list[str] = []
    for para in CONTRACT:
        indent = "     " if para.startswith("  ") else "  "
        lines.extend(textwrap.wrap(para, width, subsequent_indent=indent))
    return "\n".join(lines)


def describe_preprocess(pp: Preprocess) -> str:
    """One line: the concrete steps of ``pp`` (input size, resize, mean and std)."""

    def triple(v: tuple[float, float, float]) -> str:
        return ", ".join(f"{x:g}" for x in v)

    return (
        f"RGB in [0, 1] -> resize to {pp.input_size}x{pp.input_size} ({pp.resize}) -> "
        f"(x - [{triple(pp.mean)}]) / [{triple(pp.std)}]"
    )


def describe_model(clf: Classifier, width: int = 92) -> str:
    """What this classifier receives and returns, and its class names (wrapped)."""
    s = clf.preprocess.input_size
    return "\n".join(
        [
            f"receives: float32 (N, 3, {s}, {s})",
            f"  {describe_preprocess(clf.preprocess)}",
            f"returns:  float32 (N, {clf.num_classes}) logits",
            *_pack(f"classes ({clf.num_classes}):", clf.class_names, width),
        ]
    )


def _pack(head: str, names: tuple[str, ...], width: int) -> list[str]:
    """``head`` and the comma-separated names on lines of about ``width`` characters,
    never breaking inside a name (GTSRB names hold spaces)."""
    lines = [head]
    for i, name in enumerate(names):
        item = name + ("," if i < len(names) - 1 else "")
        if len(lines[-1]) + 1 + len(item) > width and lines[-1].strip():
            lines.append(" ")
        lines[-1] += " " + item
    return lines

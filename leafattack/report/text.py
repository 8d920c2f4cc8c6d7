"""Text shared by the report pages: class names shortened with an ellipsis, titles
wrapped, and the pages' image-check script."""

from __future__ import annotations

import textwrap


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when cut.

    Example:
        >>> shorten("End of no passing by vehicles over 3.5 metric tons", 20)
        'End of no passing b…'
    """
    if width < 1:
        raise ValueError(f"width={width}: expected at least 1 character")
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def wrap_title(text: str, width: int = 28, max_lines: int = 3) -> str:
    """``text`` wrapped at ``width`` characters on at most ``max_lines`` lines (the last
    shortened with an ellipsis), for the titles of small panels."""
    lines = textwrap.wrap(text, width) or [""]
    if len(lines) > max_lines:
        rest = " ".join(lines[max_lines - 1 :])
        lines = [*lines[: max_lines - 1], shorten(rest, width)]
    return "\n".join(lines)


# Diagnostic only (the page needs no script): records how many images decoded, so a
# headless browser's DOM dump can tell whether every embedded figure loaded.
IMAGES_LOADED_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (im) { return im.complete && im.naturalWidth > 0; });
  document.body.dataset.imagesTotal = String(imgs.length);
  document.body.dataset.imagesOk = String(ok.length);
  document.body.dataset.imagesLoaded = ok.map(function (im) { return im.id; }).join(" ");
});
"""

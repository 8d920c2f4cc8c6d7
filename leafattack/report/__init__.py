"""Reports: figures and a self-contained report.html for a run directory."""

from __future__ import annotations

from leafattack.report.data import (
    RunData,
    read_json,
    load_run,
)
from leafattack.report.figures import (
    FIGURES,
    fig_position_heatmaps,
    fig_success_vs_size,
    fig_success_vs_rotation,
    fig_class_species_matrix,
    fig_confusion,
    fig_edge_distributions,
    fig_gallery,
)
from leafattack.report.html import (
    esc,
    strongest_per_class,
    gallery_edge_config,
    describe_edge_config,
    render_html,
    write_report,
    correlation_html,
)

__all__ = [
    "FIGURES",
    "RunData",
    "correlation_html",
    "describe_edge_config",
    "esc",
    "fig_class_species_matrix",
    "fig_confusion",
    "fig_edge_distributions",
    "fig_gallery",
    "fig_position_heatmaps",
    "fig_success_vs_rotation",
    "fig_success_vs_size",
    "gallery_edge_config",
    "load_run",
    "read_json",
    "render_html",
    "strongest_per_class",
    "write_report",
]

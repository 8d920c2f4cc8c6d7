"""Reports: figures and a self-contained report.html for a run directory."""

from __future__ import annotations

from leafattack.report.data import (
    RunData,
    load_run,
    read_json,
)
from leafattack.report.figures import (
    FIGURES,
    fig_class_species_matrix,
    fig_confusion,
    fig_edge_distributions,
    fig_gallery,
    fig_position_heatmaps,
    fig_success_vs_coverage,
    fig_success_vs_rotation,
    fig_success_vs_size,
)
from leafattack.report.html import (
    correlation_html,
    describe_edge_config,
    esc,
    gallery_edge_config,
    render_html,
    strongest_per_class,
    write_report,
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
    "fig_success_vs_coverage",
    "fig_success_vs_rotation",
    "fig_success_vs_size",
    "gallery_edge_config",
    "load_run",
    "read_json",
    "render_html",
    "strongest_per_class",
    "write_report",
]

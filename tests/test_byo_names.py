"""Consistent names (issue 18): every option has help, config keys are the flags' names,
both CLI spellings are config keys, factory run directories are ``module.factory-<hash>``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from leafattack.cli import build_parser
from leafattack.config import (
    CONFIG_ALIASES,
    CONFIG_KEYS,
    SEARCH_CONFIG_KEYS,
    config_from_mapping,
    default_out,
    load_config,
    search_config_from_mapping,
)
from leafattack.errors import LeafattackError


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)parser with its command path, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _parser(command: str) -> argparse.ArgumentParser:
    return dict(_walk(build_parser()))[(command,)]


def test_every_option_of_every_subcommand_has_help() -> None:
    parsers = list(_walk(build_parser()))
    assert len(parsers) >= 15  # run, search, train, evaluate, leaves generate, ...
    missing = [
        f"{' '.join(path) or 'leafattack'} {'/'.join(a.option_strings) or a.dest}"
        for path, parser in parsers
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and not (a.help or "").strip()
    ]
    assert missing == []


def _flag_names(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option not in ("--help", "--config"):
                yield option[2:].replace("-", "_"), action


@pytest.mark.parametrize(
    ("command", "keys"), [("run", CONFIG_KEYS), ("search", SEARCH_CONFIG_KEYS)]
)
def test_every_flag_is_a_config_key(command: str, keys: tuple[str, ...]) -> None:
    names = set(keys) | set(CONFIG_ALIASES)
    for name, action in _flag_names(_parser(command)):
        negation = isinstance(action, argparse._StoreFalseAction) or (
            name.startswith("no_") and name[3:] in names
        )
        if negation:  # --no-stop, --no-stop-on-success: the same key set to false
            assert action.dest in names, name
            continue
        assert name in names, f"{command} --{name.replace('_', '-')} has no config key"
        if name not in CONFIG_ALIASES:
            assert action.dest == name  # the flag fills the key of its own name


def test_second_spellings_are_config_keys(tmp_path: Path) -> None:
    # every alias is a flag spelling of the command line
    spellings = {name for name, _ in _flag_names(_parser("run"))}
    assert set(CONFIG_ALIASES) <= spellings
    toml = tmp_path / "c.toml"
    toml.write_text('colors = ["red", "natural"]\nsizes_cm = [8, 12]\ncontrols = "grey"\n')
    cfg = config_from_mapping(load_config(toml))
    assert cfg.grid.colours == ("red", "natural")
    assert (cfg.grid.sizes, cfg.grid.size_unit) == ((8.0, 12.0), "cm")
    assert cfg.controls == ("grey",)
    assert search_config_from_mapping({"colors": "brown"}).run.grid.colours == ("brown",)
    with pytest.raises(LeafattackError, match="'colors' and 'colours'"):
        config_from_mapping({"colours": ["red"], "colors": ["red"]})
    with pytest.raises(LeafattackError, match="size_unit"):
        config_from_mapping({"sizes_cm": [8], "size_unit": "face"})


def test_factory_run_directories_name_module_and_factory() -> None:
    name = default_out(config_from_mapping({"model": "fixture_models:template"})).name
    assert name.startswith("fixture_models.template-") and len(name.split("-")[-1]) == 8
    assert default_out(config_from_mapping({})).name.startswith("default-")
    assert default_out(config_from_mapping({"model": "x/net.pt2"})).name.startswith("net-")
    assert default_out(config_from_mapping({"model": "torchscript:a/ts.pt"})).name.startswith("ts-")

"""Every shipped recipe validates and opens with the command that runs it; the README's commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tunewise.config import load_config

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates_and_starts_with_its_command(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# tunewise run recipes/{path.name}", first
    config = load_config(path)
    assert config.strategies


def test_readme_commands_are_make_targets():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test", "setup"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_demo_recipe_matches_the_built_in_default():
    """`tunewise run` with no arguments and recipes/demo.yaml run the same strategies."""
    from tunewise.config import ExperimentConfig

    recipe = load_config(ROOT / "recipes" / "demo.yaml")
    default = ExperimentConfig()
    assert [s.name for s in recipe.strategies] == [s.name for s in default.strategies]
    assert recipe.model == default.model and recipe.encoder == default.encoder

"""The layers point one way, pipeline < generators < evaluation < flows: import-linter's contract in pyproject.toml.

grimp (import-linter's graph builder) reads a package from one folder, and package-dir spreads tabtwin over
four, so the check runs on a copy of the package laid out as it installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("pipeline", "generators", "evaluation", "flows")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def installed_layout(target: Path) -> Path:
    package = target / "tabtwin"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "tabtwin", package, ignore=ignore)
    for layer in LAYERS:
        shutil.copytree(ROOT / layer, package / layer, ignore=ignore)
    return package


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy, not the editable install, is what grimp finds
    return subprocess.run([str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test extra (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("layers")
    installed_layout(root)
    return root


def test_the_layers_contract_is_kept(layout):
    result = lint_imports(layout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
    assert "Analyzed" in result.stdout and "Analyzed 0 files" not in result.stdout


def test_an_upward_import_breaks_it(layout, tmp_path):
    """The contract bites: the bottom layer importing the top one (as the CLI in pipeline/ once did) fails."""
    root = tmp_path / "broken"
    shutil.copytree(layout, root)
    (root / "tabtwin" / "pipeline" / "upward.py").write_text("def f():\n    from tabtwin.evaluation import privacy\n")
    result = lint_imports(root)
    assert result.returncode != 0 and "BROKEN" in result.stdout
    assert "tabtwin.pipeline.upward -> tabtwin.evaluation.privacy" in result.stdout

"""The floors of docs/architecture.md hold: the import contracts in pyproject.toml pass on the code, and
they fail when a module reaches across them (a copy of the packages with deliberate violations)."""
from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run import-linter in a child whose `sparsegate` comes only from `path`: -S skips the editable install's .pth
# finder, so a copied tree is analysed instead of the checkout.
LINT = ("import sys; sys.path[:0] = sys.argv[1].split('|'); from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[2], no_cache=True, no_logo=True))")


def lint(tree: Path, config: Path) -> subprocess.CompletedProcess:
    path = "|".join([str(tree), *site.getsitepackages()])
    return subprocess.run([sys.executable, "-S", "-c", LINT, path, str(config)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    """The three folders laid out as the installed namespace: sparsegate/{hw,sw,sim}."""
    tree = tmp_path_factory.mktemp("layout")
    for part in ("hw", "sw", "sim"):
        shutil.copytree(ROOT / part, tree / "sparsegate" / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def test_the_code_keeps_every_import_contract(package_copy):
    result = lint(package_copy, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: " in result.stdout and " broken" in result.stdout and "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("sw/ir/_probe.py", "import torch\n", "The integer floor"),
    ("hw/_probe.py", "from sparsegate.sw.prune import masks\n", "Floors"),
    ("sw/prune/_probe.py", "from sparsegate.hw.engine import engine\n", "Models, pruning and SNN"),
    ("sw/flow/_probe.py", "from sparsegate.sw.cli import main\n", "Floors"),
    ("sw/host/_probe.py", "from sparsegate.sim import cocotb_runner\n", "The host driver talks"),
    ("sw/jobs/_probe.py", "from sparsegate.sw.ir import golden\n", "Floors"),
    ("sw/jobs/_probe.py", "import torch\n", "The integer floor"),
])
def test_a_deliberate_violation_breaks_its_contract(package_copy, module, line, contract):
    probe = package_copy / "sparsegate" / module
    probe.write_text(line)
    try:
        result = lint(package_copy, ROOT / "pyproject.toml")
    finally:
        probe.unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken and "_probe" in broken

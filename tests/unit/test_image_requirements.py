"""The images' requirement lists (deploy/image_requirements.py) hold what the code imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from deploy.image_requirements import image_requirements, requirement_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_backend_list_is_part_of_the_runtime_list_with_the_same_specifiers() -> None:
    lists = image_requirements(PYPROJECT)
    assert set(lists["backend"]) <= set(lists["runtime"])
    assert lists["runtime"] == PYPROJECT["project"]["dependencies"]
    assert lists["test"] == PYPROJECT["project"]["optional-dependencies"]["test"]


def test_the_backend_imports_nothing_its_image_leaves_out() -> None:
    """Import the backend and build its app with the left-out libraries made unimportable."""
    lists = image_requirements(PYPROJECT)
    left_out = {requirement_name(r) for r in lists["runtime"]} - {
        requirement_name(r) for r in lists["backend"]
    }
    modules = sorted(
        module
        for module, distributions in packages_distributions().items()
        if any(d.lower() in left_out for d in distributions)
    )
    assert {"redis", "aiohttp"} <= set(modules)  # the blocker blocks something real
    program = (
        "import sys\n"
        f"for name in {modules!r}: sys.modules[name] = None\n"
        "from flaky_backend.app import create_app\n"
        "from flaky_backend.cli import main\n"
        "from flaky_backend.settings import BackendSettings\n"
        "create_app(BackendSettings())\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

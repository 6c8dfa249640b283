"""Write the Docker images' requirement lists from pyproject.toml (run inside the Dockerfile).

runtime.txt: [project] dependencies; test.txt: the `test` extra; backend.txt: the runtime
requirements named in [tool.resilient-gateway.images] flaky-backend, so the demo backend's
image holds only what it imports. Versions and extras stay written once, in pyproject.toml.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower()


def image_requirements(pyproject: dict[str, object]) -> dict[str, list[str]]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    runtime: list[str] = project["dependencies"]
    tool = pyproject["tool"]
    assert isinstance(tool, dict)
    backend_names = {name.lower() for name in tool["resilient-gateway"]["images"]["flaky-backend"]}
    backend = [r for r in runtime if requirement_name(r) in backend_names]
    missing = backend_names - {requirement_name(r) for r in backend}
    if missing:
        raise SystemExit(f"flaky-backend names {sorted(missing)}, not in [project] dependencies")
    return {
        "runtime": runtime,
        "backend": backend,
        "test": project["optional-dependencies"]["test"],
    }


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    with source.open("rb") as file:
        lists = image_requirements(tomllib.load(file))
    for name, requirements in lists.items():
        (target / f"{name}.txt").write_text("\n".join(requirements) + "\n")


if __name__ == "__main__":
    main()

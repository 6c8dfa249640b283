"""Mutation testing of only the domain and application modules a change touched (for CI).

``make mutate`` mutates all of ``src/domain`` and ``src/application`` (about ten minutes on two
cores); CI runs this instead: the Python files under mutmut's ``source_paths`` that differ from
the base, mutated against the unit suite, then ``tests/mutation_report.py`` on those modules
alone. The base is the first argument, else the merge base with ``main`` when HEAD is not on it,
else ``HEAD~1`` (what the last commit changed). Nothing changed there: nothing to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mutmut.configuration import config

MAX_CHILDREN = os.environ.get("MUTATE_JOBS", "2")
MUTMUT = str(Path(sys.executable).parent / "mutmut")


def git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def base_ref() -> str | None:
    if len(sys.argv) > 1:
        return sys.argv[1]
    head = git("rev-parse", "HEAD")
    for branch in ("main", "origin/main"):
        base = git("merge-base", "HEAD", branch)
        if base and base != head:
            return base
    return "HEAD~1" if git("rev-parse", "--verify", "-q", "HEAD~1") else None


def module_glob(path: Path) -> str:
    """``src/domain/breaker.py`` -> ``domain.breaker.*`` (mutmut's mutant names)."""
    parts = list(path.with_suffix("").parts)
    if parts[0] == "src":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) + ".*"


def main() -> int:
    base = base_ref()
    if base is None:
        print("mutate-changed: no base to compare with; run `make mutate` for the full pass")
        return 0
    changed = (git("diff", "--name-only", "--diff-filter=d", base, "--", "*.py") or "").split()
    roots = [Path(p) for p in config().source_paths]
    paths = [Path(p) for p in changed if any(Path(p).is_relative_to(r) for r in roots)]
    if not paths:
        print(f"mutate-changed: no file under {', '.join(map(str, roots))} changed since {base}")
        return 0
    globs = [module_glob(p) for p in paths]
    print(f"mutate-changed: since {base}: {', '.join(map(str, paths))}", flush=True)
    shutil.rmtree("mutants", ignore_errors=True)
    Path("mutants").mkdir()
    log = Path("mutants/mutmut-run.log")
    with log.open("w") as out:
        done = subprocess.run(
            ["nice", "-n", "15", MUTMUT, "run", "--max-children", MAX_CHILDREN, *globs],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        print(log.read_text()[-5000:])
        print(f"mutate-changed: mutmut failed (exit {done.returncode}); log in {log}")
        return 1
    only = [arg for glob in globs for arg in ("--only", glob)]
    report = [sys.executable, "tests/mutation_report.py", *only]
    return subprocess.run(report, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

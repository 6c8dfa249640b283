"""The README's failure-modes table names tests that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_failure_modes_table_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Failure modes", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", section))
    sources = "".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    defined = set(re.findall(r"def (test_[a-z0-9_]+)\(", sources))
    assert len(named) >= 15
    assert named - defined == set()

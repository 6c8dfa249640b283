"""Reads the results of ``mutmut run`` and says whether the mutation target is met.

Run by ``make mutate`` after mutmut (from the repository root). It prints the score per source
path and in all, twice: counting the mutants ``mypy --strict`` already refuses (``make lint``
stops those) as caught, and by the unit tests alone over the rest. Then every surviving mutant:
those listed in ``tests/MUTANTS.md`` as equivalent with their one-line reason, the others with
their diff. It exits 1 when either score is below ``--min-score`` or when a survivor is not
listed, so a survivor is either killed by a test or explained. Rows of ``tests/MUTANTS.md``
whose mutant no longer survives are reported as stale.

``--only MODULE_GLOB`` (repeatable, e.g. ``domain.breaker.*``) restricts everything to the
mutants of some modules, as ``.ci/run`` does for the files a commit changed.

Equivalents are matched by mutant name *and* by the mutated line: mutmut numbers the mutants of
a function in order, so an edit to a function renumbers them; a row whose number now points at
another change is not taken as an explanation.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mutmut.configuration import config
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

MUTANTS_MD = Path("tests/MUTANTS.md")
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}
ENTRY = re.compile(
    r"^\|\s*`(?P<name>[^`]+)`\s*\|\s*`(?P<change>[^`]*)`\s*\|\s*(?P<reason>.+?)\s*\|$"
)


@dataclass(frozen=True)
class Equivalent:
    name: str
    change: str
    reason: str


def read_equivalents(path: Path) -> dict[str, Equivalent]:
    """The table rows of MUTANTS.md: | `mutant name` | `mutated line` | reason |."""
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = ENTRY.match(line.strip())
        if match:
            change = match["change"].replace("\\|", "|").strip()  # `\|` keeps a table column
            entry = Equivalent(match["name"], change, match["reason"])
            entries[entry.name] = entry
    return entries


def mutated_line(diff: str) -> str:
    """The first added line of a mutant's diff, stripped: what the mutant changed it to."""
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()
    return ""


def source_root(path: Path) -> str:
    """The configured source path a file belongs to (``src/domain``, ``src/application``)."""
    for root in config().source_paths:
        if path.is_relative_to(root):
            return str(root)
    return str(path.parent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-score", type=float, default=90.0)
    parser.add_argument("--only", action="append", default=[], metavar="MODULE_GLOB")
    args = parser.parse_args()

    statuses: dict[str, tuple[str, Path]] = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            if args.only and not any(fnmatch.fnmatch(name, glob) for glob in args.only):
                continue
            statuses[name] = (status_by_exit_code[exit_code], path)
    if not statuses:
        print("no mutation results: run `mutmut run` first", file=sys.stderr)
        return 1

    by_root: dict[str, Counter[str]] = {}
    for status, path in statuses.values():
        by_root.setdefault(source_root(path), Counter())[status] += 1
    total: Counter[str] = sum(by_root.values(), Counter())

    def score(counts: Counter[str]) -> float:
        detected = sum(n for status, n in counts.items() if status in DETECTED)
        return 100.0 * detected / max(1, sum(counts.values()))

    def test_score(counts: Counter[str]) -> float:
        """The share the unit tests killed of the mutants mypy let through."""
        tested = Counter({s: n for s, n in counts.items() if s != "caught by type check"})
        return score(tested)

    print("\nMutation score: killed (by mypy --strict or by a test, or timed out) / all mutants;")
    print("by the tests: killed or timed out / mutants mypy let through.")
    for root, counts in [*sorted(by_root.items()), ("all", total)]:
        details = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        print(
            f"  {root:<16} {score(counts):5.1f} %   by the tests {test_score(counts):5.1f} %"
            f"   ({sum(counts.values())} mutants: {details})"
        )

    equivalents = read_equivalents(MUTANTS_MD)
    survivors = sorted(name for name, (status, _) in statuses.items() if status not in DETECTED)
    explained, unexplained = [], []
    for name in survivors:
        diff = get_diff_for_mutant(name, path=statuses[name][1])
        entry = equivalents.get(name)
        if entry is not None and entry.change == mutated_line(diff):
            explained.append((name, entry))
        else:
            unexplained.append((name, diff, entry))

    print(f"\nSurviving mutants: {len(survivors)}")
    print(f"  listed as equivalent in {MUTANTS_MD}: {len(explained)}")
    for name, entry in explained:
        print(f"    {name}: {entry.reason}")
    if unexplained:
        print(f"  NOT killed and NOT listed in {MUTANTS_MD}: {len(unexplained)}")
        for name, diff, entry in unexplained:
            if entry is not None:
                print(f"\n# {name}: listed, but for `{entry.change}`; it now mutates another line")
            print(f"\n# {name} ({statuses[name][0]})\n{diff}")
        print(
            f"\nKill each with a test of the rule it breaks, or, if no behaviour can tell it "
            f"apart, add a row `| \u0060name\u0060 | \u0060mutated line\u0060 | reason |` "
            f"to {MUTANTS_MD}."
        )
    stale = sorted(
        name
        for name in equivalents
        if name not in survivors
        and (not args.only or any(fnmatch.fnmatch(name, glob) for glob in args.only))
    )
    if stale:
        print(f"\nStale rows in {MUTANTS_MD} (no such survivor any more): {', '.join(stale)}")

    lowest = min(score(total), test_score(total))
    ok = lowest >= args.min_score and not unexplained
    verdict = "met" if ok else "NOT met"
    print(
        f"\nTarget {verdict}: score {score(total):.1f} %, by the tests {test_score(total):.1f} % "
        f"(each at least {args.min_score:g} %), {len(unexplained)} unexplained survivors."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

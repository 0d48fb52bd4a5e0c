"""``make mutation``: mutation testing of the core, and a score per module.

Runs mutmut (configured in ``pyproject.toml``, ``[tool.mutmut]``) with the nested-class
hook of :mod:`tests.mutation.nested`, then prints, per mutated module, how many mutants
the tests killed and the ones that survived, with their diffs.

A survivor is not counted against a module when it is

- *equivalent*: listed in ``tests/mutation/EQUIVALENT.md`` (a fenced ``mutant`` block
  naming its function and its diff; the note says why it behaves as the original), or
- *wording*: it changes nothing but the text of the message of a refusal whose first
  argument is its message (``InvalidRequest("...", field=...)``); a mutant that drops the
  message (``None``) is not wording. Messages are for a person; the
  contract is the error type, its ``code`` (the problem ``type``) and its details
  (``field``, ``available``, ...), which stay under test.

Usage: ``python -m tests.mutation.run [--workers N] [--again | --resume | --report]
[--wording]``. ``--again`` keeps ``mutants/`` and re-tests only the mutants that did not
die (after adding tests); ``--resume`` finishes an interrupted run; ``--report`` only
prints the last results; ``--wording`` also shows the wording mutants' diffs. The exit
status is 1 when a module scores below ``--goal`` percent.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tests.mutation.nested import install

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT_NOTE = Path(__file__).with_name("EQUIVALENT.md")
MESSAGE_FIRST = frozenset({
    "DomainError", "InvalidIdentifier", "InvalidQuantity", "InvalidRequest",
    "ConcurrencyConflict",
})
"""Errors constructed as ``Error(message, **details)``: their first argument is wording."""
KILLED = frozenset({"killed", "timeout", "segfault"})
"""Outcomes in which the tests noticed the mutant (a hang or a crash is noticed too)."""


@dataclass
class Module:
    path: str
    killed: int = 0
    unchecked: int = 0
    equivalent: list[str] = field(default_factory=list)
    wording: list[tuple[str, str]] = field(default_factory=list)
    survived: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def counted(self) -> int:
        return self.killed + len(self.survived)

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.counted if self.counted else 100.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MUTATION_WORKERS", 1)))
    parser.add_argument("--again", action="store_true", help="re-test the survivors only")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run")
    parser.add_argument("--report", action="store_true", help="print the last results only")
    parser.add_argument("--wording", action="store_true", help="show wording mutants too")
    parser.add_argument("--goal", type=float, default=90.0)
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    install()
    # Hypothesis draws the same examples on every run, so a score does not drift.
    os.environ["STOCKSTREAM_HYPOTHESIS_PROFILE"] = "mutation"
    if not args.report:
        _run(args.workers, args.again, args.resume)
    modules = _results()
    _print(modules, show_wording=args.wording)
    return 0 if all(m.score >= args.goal for m in modules) else 1


def _run(workers: int, again: bool, resume: bool) -> None:
    from mutmut.__main__ import cli

    names: list[str] = []
    if resume and Path("mutants").exists():
        pass  # mutmut tests the mutants it has no result for
    elif again and Path("mutants").exists():
        names = [name for module in _results() for name, _, _ in module.survived]
        names += [name for module in _results() for name, _ in module.wording]
        if not names:
            return
    else:
        shutil.rmtree("mutants", ignore_errors=True)
    # The tests run from mutants/, where pytest imports them as the package ``tests``: this
    # runner's own ``tests`` (the project's, imported to start it) must not be in the way.
    for module in [m for m in sys.modules if m == "tests" or m.startswith("tests.")]:
        del sys.modules[module]
    try:
        cli(["run", "--max-children", str(workers), *names], standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            raise


def _results() -> list[Module]:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    equivalents = _equivalent_mutants()
    modules: list[Module] = []
    for path in sorted(walk_mutatable_files()):
        data = SourceFileMutationData(path=path)
        data.load()
        if not data.exit_code_by_key:
            continue
        module = Module(str(path))
        for name, exit_code in sorted(data.exit_code_by_key.items(), key=_natural):
            status = status_by_exit_code[exit_code]
            if status in KILLED:
                module.killed += 1
                continue
            if status == "not checked":  # an interrupted run
                module.unchecked += 1
                continue
            original, mutant = _sources(name, path)
            diff = "\n".join(difflib.unified_diff(
                original.splitlines(), mutant.splitlines(), str(path), str(path), lineterm=""))
            if _changed_lines(diff) in equivalents.get(_function(name), []):
                module.equivalent.append(name)
            elif _without_messages(original) == _without_messages(mutant):
                module.wording.append((name, diff))
            else:
                module.survived.append((name, status, diff))
        modules.append(module)
    return modules


def _print(modules: list[Module], *, show_wording: bool) -> None:
    for module in modules:
        for name, status, diff in module.survived:
            print(f"\n# {name}: {status}\n{diff}")
        if show_wording:
            for name, diff in module.wording:
                print(f"\n# {name}: wording only\n{diff}")
    print()
    header = (f"{'module':<32} {'mutants':>7} {'killed':>7} {'survived':>8} "
              f"{'equivalent':>10} {'wording':>7} {'score':>7}")
    print(header)
    print("-" * len(header))
    for m in modules:
        total = m.counted + len(m.equivalent) + len(m.wording) + m.unchecked
        print(f"{m.path:<32} {total:>7} {m.killed:>7} {len(m.survived):>8} "
              f"{len(m.equivalent):>10} {len(m.wording):>7} {m.score:>6.1f}%")
    print("\nscore = killed / (mutants - equivalent - wording); "
          "see tests/mutation/EQUIVALENT.md")
    unchecked = sum(m.unchecked for m in modules)
    if unchecked:
        print(f"{unchecked} mutants not checked (an interrupted run): not in the scores")


# ------------------------------------------------------------------- classification


def _natural(item: tuple[str, object]) -> tuple[str, int]:
    name, _, number = item[0].rpartition("_")
    return name, int(number) if number.isdigit() else 0


def _function(mutant: str) -> str:
    """``domain.stock_item.xǁStockItemǁreserve`` of ``...reserve__mutmut_12``."""
    return mutant.partition("__mutmut_")[0]


def _changed_lines(diff: str) -> tuple[str, ...]:
    """The removed and added lines of a diff, stripped: what identifies a mutant across
    runs (mutant numbers change whenever a function does)."""
    return tuple(
        line[0] + line[1:].strip()
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def _equivalent_mutants() -> dict[str, list[tuple[str, ...]]]:
    """The mutants EQUIVALENT.md lists, by function: each a fenced block
    ```` ```mutant domain.stock_item.xǁStockItemǁreserve ```` holding its diff lines."""
    found: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    if not EQUIVALENT_NOTE.exists():
        return found
    blocks = re.findall(r"^```mutant (\S+)\n(.*?)^```", EQUIVALENT_NOTE.read_text(), re.M | re.S)
    for function, body in blocks:
        found[function].append(_changed_lines(body))
    return found


def _sources(mutant: str, path: Path) -> tuple[str, str]:
    """The source of the original function and of the mutant (named alike)."""
    import libcst as cst
    from mutmut.mutation.diff_apply import (
        read_functions_from_index,
        read_mutant_function,
        read_mutants_module,
        read_original_function,
    )

    functions = read_functions_from_index(mutant, path)
    if functions is None:
        module = read_mutants_module(path)
        functions = (read_original_function(module, mutant), read_mutant_function(module, mutant))
    original, mutated = (cst.Module([f]).code.strip() for f in functions)
    return original, mutated


def _without_messages(source: str) -> str:
    """The function's syntax tree with every refusal's message blanked out: a mutant whose
    tree equals the original's changes nothing but wording (see the module doc)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and isinstance(node.exc.func, ast.Name)
            and node.exc.func.id in MESSAGE_FIRST
            and node.exc.args
            and isinstance(node.exc.args[0], ast.JoinedStr | ast.Constant)
            and isinstance(getattr(node.exc.args[0], "value", ""), str)
        ):
            # Any text is wording; no message at all (None) is not.
            node.exc.args[0] = ast.Constant("<message>")
    return ast.dump(tree)


if __name__ == "__main__":
    sys.exit(main())

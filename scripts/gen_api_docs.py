"""Write docs/api.md: the reference of ``agent_pipeline.lib`` and of the ``agent-pipeline`` CLI, from docstrings.

    python scripts/gen_api_docs.py            # rewrite docs/api.md
    python scripts/gen_api_docs.py --check    # exit 1 if docs/api.md is out of date

For every module under ``agent_pipeline/lib`` (in package order): its docstring's first
paragraph, then each public class (with its public methods) and function defined there, with
its signature and the first paragraph of its docstring. For the CLI: each command's ``--help``.
A test (``agent_pipeline_tests/test_api_docs.py``) fails when the file is out of date.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"


def _first_paragraph(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    # Default values that are objects print their address (<function f at 0x7f...>): drop it.
    return re.sub(r" at 0x[0-9a-f]+>", ">", sig.replace(str(ROOT), "<repo>"))


def _public(module, obj, name: str) -> bool:
    return not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__


def _lib_modules() -> list[str]:
    import agent_pipeline.lib as lib

    names = [m.name for m in pkgutil.walk_packages(lib.__path__, "agent_pipeline.lib.") if not m.ispkg]
    return sorted(names)


def render_lib() -> list[str]:
    lines = ["## Library (`agent_pipeline.lib`)", ""]
    for name in _lib_modules():
        module = importlib.import_module(name)
        lines += [f"### `{name}`", "", _first_paragraph(module) or "(no docstring)", ""]
        members = [(n, o) for n, o in vars(module).items() if _public(module, o, n)]
        for n, obj in sorted(members, key=lambda m: m[0].lower()):
            if inspect.isclass(obj):
                lines.append(f"- **class `{n}{_signature(obj)}`**: {_first_paragraph(obj)}".rstrip(": "))
                for mn, member in sorted(vars(obj).items()):
                    if mn.startswith("_") or not (inspect.isfunction(member) or isinstance(member, classmethod)):
                        continue
                    func = member.__func__ if isinstance(member, classmethod) else member
                    lines.append(f"  - `{mn}{_signature(func)}`: {_first_paragraph(func)}".rstrip(": "))
            elif inspect.isfunction(obj):
                lines.append(f"- `{n}{_signature(obj)}`: {_first_paragraph(obj)}".rstrip(": "))
        lines.append("")
    return lines


def render_cli() -> list[str]:
    from agent_pipeline import cli

    parser = cli.build_parser()
    lines = ["## Command line (`agent-pipeline`)", "", "```", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001 - argparse has no public accessor
    for name, command in sub.choices.items():
        lines += [f"### `agent-pipeline {name}`", "", "```", command.format_help().rstrip(), "```", ""]
    return lines


def render() -> str:
    head = [
        "# API reference",
        "",
        "Generated from the docstrings by `python scripts/gen_api_docs.py`; do not edit by hand",
        "(`agent_pipeline_tests/test_api_docs.py` fails when it is out of date). The guide for",
        "integrating teams is [onboarding.md](onboarding.md).",
        "",
    ]
    text = "\n".join(head + render_lib() + render_cli())
    return text.replace(str(ROOT), "<repo>").rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = p.parse_args(argv)
    # argparse wraps help to the terminal width: fix it so the file is the same everywhere.
    import os

    os.environ["COLUMNS"] = "100"
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's synopsis of every command, generated from the argparse parser (`flows.cli.build_parser`), so it
lists what `tabtwin --help` and `tabtwin COMMAND --help` list, with every default, and cannot go stale:
tests/test_synopsis.py compares the README with `synopsis()`. After changing a flag, rewrite the README's block:

    .venv/bin/python -m tabtwin.flows.synopsis README.md
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

START = "<!-- synopsis: generated from the parser by `python -m tabtwin.flows.synopsis README.md`; do not edit -->"
END = "<!-- end of synopsis -->"

# Defaults that depend on the machine the parser is built on: shown as what they mean, not as this machine's value.
MACHINE_DEFAULTS = {("deploy", "timezone"): "the machine's zone"}


def synopsis(parser: argparse.ArgumentParser | None = None) -> str:
    """Markdown: the commands with what each does, then per command its usage line and a table of its arguments
    (argument, default, meaning)."""
    from tabtwin.flows.cli import build_parser

    parser = parser or build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    lines = [f"`{parser.prog} COMMAND [options]`: {parser.description} Every command takes `-h`/`--help`.", "",
             "| command | what it does |", "| --- | --- |"]
    lines += [f"| [`{c.dest}`](#tabtwin-{c.dest}) | {_cell(c.help)} |" for c in commands._choices_actions]
    for name, sub in commands.choices.items():
        actions = [a for a in sub._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
        usage = [_token(a) if not a.option_strings else f"{a.option_strings[0]} {_token(a)}".strip()
                 for a in actions if a.required or not a.option_strings]
        lines += ["", f"### tabtwin {name}", "", f"`{sub.prog} {' '.join(usage)} [options]`", "",
                  "| argument | default | meaning |", "| --- | --- | --- |"]
        for action in actions:
            shown = ", ".join(action.option_strings) + (" " if action.option_strings else "") + _token(action)
            lines.append(f"| `{shown.strip()}` | {_default(name, action)} | {_cell(action.help or '')} |")
    return "\n".join(lines) + "\n"


def _token(action: argparse.Action) -> str:
    """What an argument takes, as argparse's usage spells it."""
    if action.nargs == 0:  # a switch (--quiet)
        return ""
    token = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else (action.metavar or action.dest.upper())
    return f"{token} ..." if action.nargs == "+" else token


def _default(command: str, action: argparse.Action) -> str:
    if (command, action.dest) in MACHINE_DEFAULTS:
        return MACHINE_DEFAULTS[command, action.dest]
    if action.required or (not action.option_strings and action.nargs != "?"):
        return "required"
    if action.nargs == 0:
        return "off"
    default = action.default
    if isinstance(default, list):
        return " ".join(f"`{v}`" for v in default) if default else "none"
    return f"`{default}`"


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).replace("|", "\\|")


def replace_block(readme: str, block: str) -> str:
    """`readme` with the text between the synopsis markers replaced by `block`."""
    if START not in readme or END not in readme:
        raise ValueError(f"the README lacks the synopsis markers {START!r} ... {END!r}")
    head, rest = readme.split(START, 1)
    return f"{head}{START}\n\n{block}\n{END}{rest.split(END, 1)[1]}"


def readme_block(readme: str) -> str:
    """The synopsis the README holds now (between its markers)."""
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv: list[str]) -> int:
    """Rewrite the synopsis block of the README at argv[0] (default README.md) atomically; one line on a problem."""
    from tabtwin.pipeline.files import write_text_atomic

    path = Path(argv[0] if argv else "README.md")
    try:
        text = replace_block(path.read_text(encoding="utf-8"), synopsis())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        print(f"tabtwin.flows.synopsis: {path}: {err}", file=sys.stderr)
        return 2
    write_text_atomic(text, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

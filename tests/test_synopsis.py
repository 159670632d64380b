"""The README's synopsis of every command is the parser's (flows/synopsis.py), and its hand-written command lines
name only flags the commands have."""

import argparse
import re
from pathlib import Path

from tabtwin.flows import synopsis
from tabtwin.flows.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_synopsis_is_the_parsers():
    text = README.read_text(encoding="utf-8")
    assert synopsis.readme_block(text) == synopsis.synopsis(), (
        "README.md's synopsis differs from the parser: run `python -m tabtwin.flows.synopsis README.md`")


def test_the_synopsis_lists_every_command_flag_and_default():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    text = synopsis.synopsis(parser)
    for name, sub in commands.choices.items():
        section = text.split(f"### tabtwin {name}\n", 1)[1].split("\n### ", 1)[0]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            row = next(line for line in section.splitlines()
                       if line.startswith(f"| `{(action.option_strings or [action.metavar or action.dest.upper()])[0]}"))
            if action.option_strings and not action.required and action.nargs != 0 and (name, action.dest) not in synopsis.MACHINE_DEFAULTS:
                expected = action.default if not isinstance(action.default, list) else " ".join(map(str, action.default))
                assert str(expected) in row or (action.default == [] and "| none |" in row), (name, row)


def test_hand_written_command_lines_name_real_flags():
    """`tabtwin CMD ... --flag` in the README's code blocks: every flag is one `tabtwin CMD --help` lists."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = {name: {s for a in sub._actions for s in a.option_strings} for name, sub in commands.choices.items()}
    text = README.read_text(encoding="utf-8")
    checked = 0
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        command = None
        for line in block.splitlines():
            found = re.match(r"\s*(?:\$\(BIN\)/)?tabtwin\s+(\w+)", line)
            if found:
                command = found.group(1)
            elif not line.startswith(" ") or line.strip().startswith("#"):
                command = None  # a line that does not continue a tabtwin command
            if command in flags:
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line.split("#")[0]):
                    assert flag in flags[command], f"README: `tabtwin {command}` has no {flag}: {line.strip()}"
                    checked += 1
    assert checked > 50


def test_the_rewrite_is_atomic_and_refuses_a_readme_without_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{synopsis.START}\nstale\n{synopsis.END}\nafter\n", encoding="utf-8")
    assert synopsis.main([str(readme)]) == 0
    assert synopsis.readme_block(readme.read_text(encoding="utf-8")) == synopsis.synopsis()
    assert readme.read_text(encoding="utf-8").endswith(f"{synopsis.END}\nafter\n")
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temporary file left
    bare = tmp_path / "BARE.md"
    bare.write_text("# no markers\n", encoding="utf-8")
    assert synopsis.main([str(bare)]) == 2 and bare.read_text(encoding="utf-8") == "# no markers\n"
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lacks the synopsis markers" in err
    assert synopsis.main([str(tmp_path / "missing.md")]) == 2

"""What the terminal shows of a run: the gate's checks as a table with what to do about each failure, and a
private model's budget. rich draws the table: colours on a terminal, plain text in a pipe or a file."""

from __future__ import annotations

import sys
import textwrap

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tabtwin.evaluation.explain import fix_for, threshold_text, value_text


def format_privacy(privacy: dict, indent: str = "") -> str:
    """The DP budget a model spent, in two lines (`fit`, and `run`/`request`/`evaluate` of a DP model): the
    guarantee, then how it was trained and what it does not cover; each line starts with `indent`."""
    return (f"{indent}differential privacy: epsilon {privacy['epsilon']:.3g} spent (target "
            f"{privacy['target_epsilon']:g}), delta {privacy['delta']:.3g}\n"
            f"{indent}  noise multiplier {privacy['noise_multiplier']:.3g}, clipping norm {privacy['max_grad_norm']:g}; "
            f"not covered: the encoder's statistics in config.json")


def print_gate(checks: list[dict], indent: int = 0, results: dict | None = None) -> None:
    """The gate's checks as a short table (section, check, value, threshold, result), then each failed check's
    message (and what to do, where `evaluation.explain` says) and each not-judged check's reason. A threshold a
    gate file changed shows its default ("0.04 (default 0.1)"). `results` (evaluate's dict, or any with its
    "run" and "privacy": {"dp"}) fits the advice to what produced the table (`explain.fix_for`).
    """
    if not checks:
        return
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for name in ("section", "check", "value", "threshold", "result"):
        table.add_column(name, justify="right" if name in ("value", "threshold") else "left", overflow="fold")
    for check in checks:
        result = (Text("not judged", "dim") if not check["judged"] else
                  Text("pass", "green") if check["passed"] else Text("FAIL", "bold red"))
        value = "-" if check["value"] is None else value_text(check["value"], check["threshold"], kind="g")
        # Text, not markup: a check such as inference_risk[income] must not read as a style tag.
        table.add_row(Text(check["section"]), Text(check["check"]), value, f"{check['op']} {threshold_text(check)}", result)
    # In a pipe rich assumes 80 columns and would cut long check names (inference_risk[<column>]) with "...":
    # there nothing limits the width, so give it room.
    console = Console(highlight=False) if sys.stdout.isatty() else Console(highlight=False, width=200)
    with console.capture() as captured:
        console.print(Padding(table, (0, 0, 0, indent)))
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))  # no padding at the ends of lines
    pad = " " * (indent or 2)
    for check in checks:
        if not check["passed"]:
            print(f"{pad}FAIL {check['message']}")
            if text := fix_for(check, results):
                print(textwrap.fill(text, width=100, initial_indent=pad + "     ", subsequent_indent=pad + "     "))
    for check in checks:
        if not check["judged"]:
            print(f"{pad}{check['message']}")

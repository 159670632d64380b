"""One declaration of run parameters (flows.spec.RunSpec + Places): the CLI, the flow and the deployment agree,
and every --help shows every default."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from tabtwin.flows import cli, deploy
from tabtwin.flows.spec import DEFAULT_MODEL, MODEL_NAMES, Places, RunSpec
from tabtwin.pipeline.errors import TabtwinError

ROOT = Path(__file__).resolve().parents[1]


def defaults(cls) -> dict:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def flow_defaults() -> dict:
    from tabtwin.flows.synthesize import synthesize

    signature = inspect.signature(synthesize.fn)
    return {name: p.default for name, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_synthesize_flow_takes_exactly_the_runspec_and_places_fields():
    from tabtwin.flows.synthesize import synthesize

    parameters = list(inspect.signature(synthesize.fn).parameters)
    expected = [f.name for f in RunSpec.flow_fields()] + [f.name for f in fields(Places)]
    assert sorted(parameters) == sorted(expected)
    spec_and_places = {**defaults(RunSpec), **defaults(Places)}
    assert flow_defaults() == {k: v for k, v in spec_and_places.items() if k in parameters}


def test_run_flags_are_the_runspec_fields_with_their_defaults():
    args = cli.build_parser().parse_args(["run", "t.csv"])
    specs, places = cli.run_specs(args)
    assert specs == [RunSpec(data="t.csv")]  # every RunSpec default, through the flags
    assert places == Places()
    flags = {a.dest for a in subparsers(cli.build_parser())["run"]._actions}
    assert {f.name for f in RunSpec.flow_fields()} | {f.name for f in fields(Places)} <= flags


def test_run_flags_reach_the_spec():
    argv = ["run", "a.csv", "b.csv", "--model", *MODEL_NAMES, "--epochs", "7", "--batch-size", "9", "--rows", "11",
            "--target", "y", "--holdout-fraction", "0.3", "--seed", "4", "--device", "cpu", "--table", "t",
            "--metadata", "m.json", "--gate", "g.json", "--registry", "reg", "--out", "o", "--cache", "c"]
    specs, places = cli.run_specs(cli.build_parser().parse_args(argv))
    assert len(specs) == 2 * len(MODEL_NAMES)
    assert specs[0] == RunSpec(data="a.csv", model=MODEL_NAMES[0], epochs=7, batch_size=9, rows=11, target="y",
                               holdout_fraction=0.3, seed=4, device="cpu", table="t", metadata="m.json", gate="g.json")
    assert places == Places(out="o", cache="c", registry="reg")
    # The opt-in options, each with a model that has it (a spec refuses the others when it is made).
    options = {"tvae": ["--dp-epsilon", "2.5", "--dp-delta", "1e-6"], "autoregressive": ["--max-seconds", "30"]}
    (dp,) = cli.run_specs(cli.build_parser().parse_args(["run", "a.csv", "--model", "tvae", *options["tvae"]]))[0]
    assert (dp.dp_epsilon, dp.dp_delta) == (2.5, 1e-6)
    (budget,) = cli.run_specs(cli.build_parser().parse_args(["run", "a.csv", *options["autoregressive"]]))[0]
    assert budget.max_seconds == 30.0


def test_fit_and_deploy_defaults_come_from_runspec():
    fit = cli.build_parser().parse_args(["fit", "t.csv", "--out", "m"])
    spec = RunSpec(data="t.csv")
    names = ("model", "epochs", "batch_size", "max_seconds", "device", "seed", "dp_epsilon", "dp_delta")
    assert [getattr(fit, name) for name in names] == [getattr(spec, name) for name in names]
    parameters = deploy.parameters_from(subparsers(cli.build_parser())["deploy"].parse_args(["--data", "t.csv"]))
    assert parameters == flow_defaults()  # every flow parameter but `data`, at its default


@pytest.mark.parametrize("command", [["fit", "t.csv", "--out", "m"], ["run", "t.csv"], ["deploy", "--data", "t.csv"]])
@pytest.mark.parametrize("flag, value", [("--dp-epsilon", "0"), ("--dp-epsilon", "inf"), ("--dp-delta", "-1e-5"),
                                         ("--max-seconds", "0"), ("--max-seconds", "nan")])
def test_dp_flags_take_positive_numbers_everywhere(capsys, command, flag, value):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args([*command, f"{flag}={value}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and flag in err and "positive number" in err and len(err.strip().splitlines()) == 1


def test_the_deployment_refuses_unknown_parameters():
    with pytest.raises(TypeError, match="unknown synthesize parameters"):
        deploy.deployments("t.csv", epoch=3)


@pytest.mark.parametrize("parameters, words", [
    ({"model": "tvae", "max_seconds": 30}, "--max-seconds is supported by autoregressive only, not tvae"),
    ({"model": "ctgan", "dp_epsilon": 3.0}, "--dp-epsilon is supported by tvae only, not ctgan"),
    ({"max_seconds": True}, "must be a positive number"),
])
def test_the_deployment_refuses_what_every_scheduled_run_would(parameters, words):
    with pytest.raises(TabtwinError, match=words):
        deploy.deployments("t.csv", **parameters)


def test_the_default_model_is_named_once():
    assert DEFAULT_MODEL in MODEL_NAMES
    assert RunSpec(data="x").model == DEFAULT_MODEL == flow_defaults()["model"]
    assert cli.build_parser().parse_args(["run", "x"]).model == [DEFAULT_MODEL]
    assert cli.build_parser().parse_args(["fit", "x", "--out", "m"]).model == DEFAULT_MODEL
    # No other module spells a default model out.
    pattern = re.compile(r"""(default\s*=\s*|:\s*str\s*=\s*|MODEL\s*\??=\s*)["']?(ctgan|tvae)\b""")
    offenders = []
    for folder in ("pipeline", "generators", "evaluation", "flows"):
        for path in (ROOT / folder).glob("*.py"):
            if path.name != "steps.py" and pattern.search(path.read_text()):
                offenders.append(path.name)
    assert offenders == []


def test_the_registered_models_include_the_cli_choices():
    from tabtwin.generators import model_class
    from tabtwin.generators.base import SyntheticGenerator

    model_class(DEFAULT_MODEL)
    assert set(MODEL_NAMES) <= set(SyntheticGenerator.registry)


def test_every_model_module_is_found_and_named_as_its_module():
    """Adding a model is adding its module: it is a choice of every command, by its module's name."""
    import pkgutil

    import tabtwin.generators as generators
    from tabtwin.generators import SUPPORT, model_class
    from tabtwin.generators.base import SyntheticGenerator

    modules = {m.name for m in pkgutil.iter_modules(generators.__path__)} - SUPPORT
    assert set(MODEL_NAMES) == modules and DEFAULT_MODEL in MODEL_NAMES
    for name in MODEL_NAMES:
        assert issubclass(model_class(name), SyntheticGenerator) and model_class(name).model_name == name
    (run,) = [a for a in cli.build_parser()._actions if a.dest == "command"]
    assert run.choices["run"].parse_args(["t.csv"]).model == [DEFAULT_MODEL]
    (model,) = [a for a in run.choices["fit"]._actions if a.dest == "model"]
    assert tuple(model.choices) == MODEL_NAMES
    with pytest.raises(TabtwinError, match="unknown model"):
        model_class("base")


@pytest.mark.parametrize("command", [None, "schema", "encode", "fit", "sample", "evaluate", "run", "request"])
def test_every_help_shows_every_default(command):
    parser = cli.build_parser() if command is None else subparsers(cli.build_parser())[command]
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or action.default == argparse.SUPPRESS:
            continue
        assert action.help, f"{command} {action.option_strings} has no help, so no default shown"
        if not action.required:
            assert f"(default: {action.default})" in text, (command, action.option_strings)


def test_deploy_help_shows_every_default():
    parser = subparsers(cli.build_parser())["deploy"]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if action.option_strings and action.default != argparse.SUPPRESS and not action.required:
            assert f"(default: {action.default})" in text, action.option_strings

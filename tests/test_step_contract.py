"""The step contract (common/steps.py), checked on every row of the runner's STEPS table: a frozen config
that declares its settings, ``run_<step>(config, progress) -> Summary``, and a script whose parser is built
from the config's declaration (defaults included), so a new step cannot bend the shape."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

from common.settings import SETTING_KEY, StepConfig, declared_fields
from pipeline.runner import SCRIPTS_DIR, STEPS, load_script, load_script_file, step_function

RUN_FLAGS = {"-h", "--help", "--threads", "-v", "--verbose", "-q", "--quiet"}


def _script_config(number: str):
    module = load_script(number)
    return module, module.config_from_args(module.build_parser().parse_args([]))


@pytest.mark.parametrize("number", list(STEPS))
def test_config_is_a_frozen_step_config_that_declares_every_field(number):
    _, config = _script_config(number)
    cls = type(config)
    assert issubclass(cls, StepConfig) and cls.__dataclass_params__.frozen, number
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.root = Path("/elsewhere")
    undeclared = [f.name for f in dataclasses.fields(cls) if SETTING_KEY not in f.metadata]
    assert not undeclared, f"step {number}: {cls.__name__} fields without a declaration: {undeclared}"
    resolved = config.resolved()
    assert type(resolved) is cls and resolved.resolved() == resolved, number


@pytest.mark.parametrize("number", list(STEPS))
def test_step_function_has_the_contract_signature(number):
    function = step_function(number)
    assert function.__name__.startswith("run_"), number
    params = list(inspect.signature(function).parameters.values())
    assert [p.name for p in params[:2]] == ["config", "progress"], (number, params)
    assert params[1].default is None, number
    extra = params[2:]  # only keyword-only hooks with defaults (tests pass a model loader)
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in extra), (number, extra)
    assert getattr(load_script(number), function.__name__) is function, number


@pytest.mark.parametrize("number", list(STEPS))
def test_script_parser_is_the_config_declaration(number):
    """No flag is written outside the config: every option maps to a declared field, every declared flag is
    offered, and no flag given means the dataclass defaults (declared once)."""
    module, config = _script_config(number)
    cls = type(config)
    assert config == cls(), number
    parser: argparse.ArgumentParser = module.build_parser()
    fields = {f.name for f, _ in _all_declared(cls)}
    for action in parser._actions:
        if set(action.option_strings) & RUN_FLAGS:
            continue
        assert action.dest in fields, f"step {number}: {action.option_strings} is not a field of {cls.__name__}"
    offered = {action.dest for action in parser._actions}
    for f, spec in _all_declared(cls):
        if spec.flag != "":
            assert f.name in offered, f"step {number}: {cls.__name__}.{f.name} is declared but has no flag"


def _all_declared(cls: type):
    """Declared fields of ``cls`` and of the settings nested in it (step 7b's training settings)."""
    for f, spec in declared_fields(cls):
        nested = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(nested) and declared_fields(type(nested)):
            yield from _all_declared(type(nested))
        else:
            yield f, spec


def test_merge_functions_take_the_step_shape():
    """merge_shards.py passes each merge function to the same boundary as the step itself."""
    mergers = load_script_file("merge_shards.py").MERGERS
    assert mergers
    for number, (module, name) in mergers.items():
        params = list(inspect.signature(getattr(importlib.import_module(module), name)).parameters.values())
        assert [p.name for p in params] == ["config", "progress"] and params[1].default is None, number


def test_run_finetune_has_no_default_config():
    from stylegan.finetune_step import run_finetune

    assert inspect.signature(run_finetune).parameters["config"].default is inspect.Parameter.empty


def test_step_scripts_are_thin():
    """A script holds its docstring, examples and three one-line functions; no flag is added by hand."""
    for number, step in STEPS.items():
        source = (SCRIPTS_DIR / step.script).read_text(encoding="utf-8")
        assert "add_argument(" not in source, step.script

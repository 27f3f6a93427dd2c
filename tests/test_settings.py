"""The declaration mechanism (common/settings.py): a field declared once gives its flag, its range, its help
and its config check; a flag outside the declaration is one line at parse time, exit 2."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from common.cli import make_parser, parse_step_config, step_parser
from common.settings import (
    SettingError,
    StepConfig,
    add_settings,
    config_from_args,
    device_setting,
    flag_of,
    seed_setting,
    setting,
)


@dataclass(frozen=True)
class ToyConfig(StepConfig):
    checkpoint: Path | None = setting(None, concept="stylegan_checkpoint", aliases=("--checkpoint",))
    out: Path | None = setting(None, path="generated_dir", output="dir", help="output folder")
    rate: float = setting(0.5, low=0.0, high=1.0, low_open=True, help="a rate")
    count: int = setting(3, low=1, help="a count")
    cap: float | None = setting(3.0, low=0.0, low_open=True, words={"none": None}, help="a cap ('none' = off)")
    tags: tuple[str, ...] = setting(("a",), choices=("a", "b"), help="tags")
    keep: bool = setting(True, flag="--no-keep", negate=True, help="do not keep")
    hold: bool = setting(True, both=True, help="hold")
    device: str = device_setting()
    seed: int = seed_setting()
    secret: int = setting(7, flag="", low=0, help="library only")


def _parser() -> argparse.ArgumentParser:
    return step_parser(ToyConfig, "toy")


def _parse(*argv: str) -> ToyConfig:
    return config_from_args(ToyConfig, _parser().parse_args(list(argv)))


def test_defaults_live_in_the_dataclass_only():
    assert _parse() == ToyConfig()
    assert _parse("--rate", "0.25", "--count", "9", "--cap", "none", "--tags", "a,b", "--no-keep",
                  "--no-hold", "--device", "CUDA:1") == ToyConfig(rate=0.25, count=9, cap=None, tags=("a", "b"),
                                                                  keep=False, hold=False, device="cuda:1")


def test_flags_come_from_field_names_and_concepts():
    options = set(_parser()._option_string_actions)
    assert {"--stylegan-checkpoint", "--checkpoint", "--out", "--rate", "--cap", "--no-keep", "--hold",
            "--no-hold", "--device", "--seed"} <= options
    assert "--secret" not in options and "--keep" not in options
    assert flag_of(ToyConfig, "checkpoint") == "--stylegan-checkpoint" and flag_of(ToyConfig, "rate") == "--rate"


@pytest.mark.parametrize("argv,needle", [
    (["--rate", "nan"], "error: --rate nan: not a finite value"),
    (["--rate", "inf"], "error: --rate inf: not a finite value"),
    (["--rate", "0"], "error: --rate 0: must be in (0, 1]"),
    (["--count", "0"], "error: --count 0: must be >= 1"),
    (["--count", "1.5"], "error: --count 1.5: not an integer"),
    (["--cap", "0"], "error: --cap 0: must be > 0"),
    (["--tags", "a,c"], "error: --tags a,c: values must be one of a, b"),
    (["--seed", "-1"], "error: --seed -1: must be >= 0"),
    (["--device", "meta"], "error: --device meta: not a device name"),
    (["--device", "mps"], "error: --device mps: not a device name"),
])
def test_a_value_outside_the_declaration_is_one_line_at_parse_time(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(needle) and len(err.strip().splitlines()) == 1, err


def test_the_config_checks_the_same_declaration():
    for bad, needle in ((dict(rate=0.0), "rate must be in (0, 1], got 0.0"), (dict(count=0), "count must be >= 1"),
                        (dict(rate=math.nan), "rate must be a finite number"), (dict(secret=-1), "secret must be"),
                        (dict(device="mps"), "device not a device name"), (dict(tags=("z",)), "tags values must"),
                        (dict(seed=-1), "seed must be >= 0")):
        with pytest.raises(SettingError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            ToyConfig(**bad)
    assert issubclass(SettingError, ValueError)


def test_an_old_spelling_works_and_says_so_once(capsys):
    assert _parse("--checkpoint", "x.pth").checkpoint == Path("x.pth")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--checkpoint is an old spelling of --stylegan-checkpoint" in err
    assert _parse("--stylegan-checkpoint", "x.pth").checkpoint == Path("x.pth")
    assert capsys.readouterr().err == ""


def test_help_shows_each_default_once():
    text = " ".join(_parser().format_help().split())
    assert text.count("(default: 3)") == 1 and "(default: None)" not in text
    assert "(default: stylegan/stylegan_model.pth under --root)" in text
    assert "(default: stylegan/synthesize_results under --root)" in text


def test_resolved_fills_default_paths_and_keeps_the_type(tmp_path):
    config = ToyConfig(root=tmp_path)
    resolved = config.resolved()
    assert type(resolved) is ToyConfig and resolved.resolved() == resolved
    assert resolved.checkpoint == tmp_path.resolve() / "stylegan" / "stylegan_model.pth"
    assert resolved.out == tmp_path.resolve() / "stylegan" / "synthesize_results"
    assert replace(config, out=tmp_path / "o").resolved().out == tmp_path / "o"


def test_a_cross_field_rule_is_a_one_line_usage_error(capsys):
    @dataclass(frozen=True)
    class Pair(StepConfig):
        low: int = setting(0, low=0, help="low")
        high: int = setting(1, low=0, help="high")

        def check(self) -> None:
            if self.high <= self.low:
                raise SettingError(f"--high must exceed --low, got {self.high} <= {self.low}")

    parser = make_parser("pair")
    add_settings(parser, Pair)
    with pytest.raises(SystemExit):
        parse_step_config(parser, lambda args: config_from_args(Pair, args), ["--low", "3", "--high", "2"])
    assert capsys.readouterr().err.startswith("error: --high must exceed --low, got 2 <= 3")

"""The step scripts' flags: every flag explained, contract spellings kept, one spelling per concept."""
import argparse

from pipeline.runner import STEP_ORDER, load_script

def _parsers() -> dict[str, argparse.ArgumentParser]:
    return {name: load_script(name).build_parser() for name in STEP_ORDER}


def test_every_flag_of_every_step_has_help_text():
    for name, parser in _parsers().items():
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help and action.help.strip(), f"step {name}: {action.option_strings} has no help"


def test_contract_spellings_and_one_spelling_per_concept():
    flags = {name: set(parser._option_string_actions) for name, parser in _parsers().items()}
    for name, options in flags.items():
        assert {"--root", "--help"} <= options, name
        assert "--input" not in options and "--which" not in options and "--trusted-checkpoint" not in options, name
    assert {"--checkpoint", "--stylegan-checkpoint", "--num", "--out"} <= flags["1"]
    assert {"--images", "--labels", "--host", "--port"} <= flags["2"]
    assert "--images" in flags["5"] and "--segmentation-dir" in flags["6"]
    for name in ("1", "7a", "7b", "8", "9"):
        assert "--weights" in flags[name], name
        choices = _parsers()[name]._option_string_actions["--weights"].choices
        assert tuple(choices) == ("auto", "ema", "raw"), (name, choices)
    for name in ("1", "3", "4", "5", "7a", "7b", "8", "9"):  # every step that runs a model
        assert "--device" in flags[name], name
    assert "--device" not in flags["2"] and "--seed" not in flags["2"]


def test_help_prints_each_default_once_and_keeps_example_line_breaks():
    text = load_script("1").build_parser().format_help()
    assert " ".join(text.split()).count("(default: 10000)") == 1
    examples = text[text.index("examples:"):].splitlines()
    assert len(examples) >= 3 and all(line.startswith("  ") for line in examples[1:] if line.strip())
    assert "(default: None)" not in "".join(p.format_help() for p in _parsers().values())


def test_a_device_that_does_not_exist_is_one_line_and_exit_2(tmp_path, capsys):
    """Refused while parsing (the one --device declaration), before any model loads; resolve_device agrees."""
    import pytest

    from common.runtime import DeviceError, resolve_device

    for name in ("gpu", "meta", "mps"):
        with pytest.raises(DeviceError, match="not a device name"):
            resolve_device(name)
    with pytest.raises(SystemExit) as info:
        load_script("8").main(["--root", str(tmp_path), "--device", "gpu", "-q"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device gpu: not a device name") and len(err.splitlines()) == 1

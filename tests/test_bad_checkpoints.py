"""Files that are not checkpoints, and checkpoints with bad contents, in every loader and script (issue 9).

Each case must end in ONE line naming the file, what is wrong and the fix, exit code 2, never a
traceback, never a hint to use --trust-checkpoint for a file that is not a checkpoint at all, and
never an output written before the model was validated.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import (
    BAD_CHECKPOINT_KINDS,
    CODE_GLOBAL,
    cheap_facexformer_state_dict,
    payload_marker,
    write_bad_checkpoint,
    write_finetune_stub,
    write_payload_checkpoint,
)
from PIL import Image
from tiny_models import TINY_G_16

from common.checkpoints import (
    CheckpointError,
    dtype_fits,
    load_state_dict_checked,
    read_checkpoint,
    sniff_non_checkpoint,
    torch_refusal_reason,
)
from common.paths import PROPERTY_NAMES
from common.pickle_globals import UNNAMED_GLOBAL, is_code_global, list_globals
from pipeline.runner import load_script_file
from segmentation.facexformer import load_facexformer
from stylegan.checkpoint import load_generator, write_random_checkpoint
from stylegan.conditional import build_conditional_generator, load_conditional_generator

pytestmark = pytest.mark.usefixtures("single_thread")

BAD_KINDS = BAD_CHECKPOINT_KINDS
write_bad_file = write_bad_checkpoint


def assert_one_line_error(err: str, path: Path, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert str(path) in lines[0], err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "stylegan_model.pth"
    write_random_checkpoint(path, seed=0, **TINY_G_16)
    return path


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_sniff_names_what_the_file_looks_like(kind, tmp_path):
    path = write_bad_file(kind, tmp_path / "x.pt")
    assert BAD_KINDS[kind] in sniff_non_checkpoint(path)


def test_sniff_accepts_real_checkpoints(tiny_ckpt, tmp_path):
    assert sniff_non_checkpoint(tiny_ckpt) is None
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert sniff_non_checkpoint(legacy) is None


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_step1_not_a_checkpoint_is_one_line_exit_2(kind, tmp_path, capsys):
    bad = write_bad_file(kind, tmp_path / "stylegan_model.pth")
    out = tmp_path / "out"
    rc = load_script_file("01_generate_images.py").main(
        ["--checkpoint", str(bad), "--out", str(out), "--num", "1", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, bad, "not a PyTorch checkpoint", BAD_KINDS[kind], "fix:")
    assert "trust" not in err
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_facexformer_not_a_checkpoint_never_suggests_trust(kind, tmp_path):
    bad = write_bad_file(kind, tmp_path / "segmentation_model.pt")
    with pytest.raises(CheckpointError) as info:
        load_facexformer(bad)
    message = str(info.value)
    assert "\n" not in message and BAD_KINDS[kind] in message and str(bad) in message
    assert "trust" not in message and "kartiknarayan/facexformer" in message


def test_step5_not_a_checkpoint_exit_2(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "000000.png")
    bad = write_bad_file("html", tmp_path / "segmentation_model.pt")
    out = tmp_path / "seg"
    rc = load_script_file("05_run_segmentation.py").main(
        ["--images", str(images), "--segmentation-checkpoint", str(bad), "--out", str(out), "--crop", "full", "--device", "cpu",
         "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, bad, "HTML page")
    assert "trust" not in err


def test_one_dimensional_style_weight_is_named_not_an_index_error(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    for entry in ("generator", "generator_smooth"):
        ckpt[entry]["synthesis.layer0.style.weight"] = torch.zeros(16)
    path = tmp_path / "flat.pth"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert str(path) in message and "wrong number of dimensions" in message and "\n" not in message


def _step1_on_edited(tiny_ckpt: Path, tmp_path: Path, capsys, name: str, edit) -> tuple[Path, Path, int, str]:
    """Step 1 on the tiny generator with ``edit(state_dict)`` applied to both entries: (file, out, rc, stderr)."""
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    for entry in ("generator", "generator_smooth"):
        edit(ckpt[entry])
    path = tmp_path / name
    torch.save(ckpt, path)
    out = tmp_path / "out"
    rc = load_script_file("01_generate_images.py").main(
        ["--checkpoint", str(path), "--out", str(out), "--num", "1", "--device", "cpu", "-q"])
    return path, out, rc, capsys.readouterr().err


def test_nan_weights_refused_before_any_output(tiny_ckpt, tmp_path, capsys):
    def nan_and_inf(sd):
        sd["synthesis.lod"] = torch.tensor(float("nan"))
        sd["mapping.dense0.weight"][0, 0] = float("inf")

    path, out, rc, err = _step1_on_edited(tiny_ckpt, tmp_path, capsys, "nan.pth", nan_and_inf)
    assert rc == 2
    assert_one_line_error(err, path, "NaN or infinite", "synthesis.lod", "fix:")
    assert not (out / "generation.json").exists()


# --- step 7 / step 8 checkpoints ------------------------------------------------------------------

def _finetune_ckpt(tiny_ckpt: Path, path: Path, **changes) -> Path:
    """A minimal step-7 style checkpoint (format 1) of a conditional generator; ``changes`` edit it."""
    generator = build_conditional_generator(load_generator(tiny_ckpt))
    sd = {k: v.clone() for k, v in generator.state_dict().items()}
    ckpt = {"format_version": 1, "step": 0, "generator": sd, "generator_ema": sd,
            "config": {"generator": generator.cond_config, "property_names": list(PROPERTY_NAMES)}}
    for key, value in changes.items():
        if key == "config_generator":
            ckpt["config"]["generator"] = value
        else:
            ckpt[key] = value
    torch.save(ckpt, path)
    return path


def test_finetuned_checkpoint_round_trip_is_fine(tiny_ckpt, tmp_path):
    generator = load_conditional_generator(_finetune_ckpt(tiny_ckpt, tmp_path / "ok.pt"))
    assert generator.num_properties == 5


@pytest.mark.parametrize("bad_config", [{"bogus": 1}, "not a dict", {"base_config": {"resolution": "x"}}])
def test_step8_bad_config_is_a_checkpoint_error_not_type_error(tiny_ckpt, tmp_path, capsys, bad_config):
    path = _finetune_ckpt(tiny_ckpt, tmp_path / "checkpoint_000004.pt", config_generator=bad_config)
    rc = load_script_file("08_generate_with_properties.py").main(
        ["--finetuned-checkpoint", str(path), "--out", str(tmp_path / "gen"), "--num", "1", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, path, "config['generator']", "fix:")


def test_step8_nan_weights_and_not_a_checkpoint(tiny_ckpt, tmp_path):
    generator = build_conditional_generator(load_generator(tiny_ckpt))
    sd = {k: v.clone() for k, v in generator.state_dict().items()}
    sd["mapping.dense0.weight"][0, 0] = float("nan")
    path = _finetune_ckpt(tiny_ckpt, tmp_path / "nan.pt", generator_ema=sd)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_conditional_generator(path)
    bad = write_bad_file("lfs", tmp_path / "lfs.pt")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        load_conditional_generator(bad)


def test_step7_truncated_resume_checkpoint_names_its_path(tmp_path, capsys):
    """Case s7b_corrupt_newest (kept): the resume refuses a bad newest checkpoint of its own run folder,
    where steps 8, 9 and the studio skip it; training on from an older one would drop steps silently."""
    from test_finetune_scripts import FAST, make_root  # tests/ is on sys.path (rootdir-relative import)

    paths = make_root(tmp_path / "root", num=6)
    script = load_script_file("07_finetune_stylegan.py")
    assert script.main(["--root", str(paths.root), "--steps", "2", "--checkpoint-every", "1", *FAST]) == 0
    capsys.readouterr()
    bad = paths.finetuned_dir / "checkpoints" / "checkpoint_000002.pt"
    bad.write_bytes(bad.read_bytes()[:5000])  # the newest, cut as by an interrupted copy
    rc = script.main(["--root", str(paths.root), "--steps", "3", "--checkpoint-every", "1", *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, bad, "truncated or corrupt zip", "fix:")
    assert not (paths.finetuned_dir / "checkpoints" / "checkpoint_000003.pt").exists()


# --- the one reader: what a refused file asks for (issue 19 §1, issue 20 §2) ----------------------

def _code_refusal(message: str) -> None:
    """The refusal of a file whose pickle asks to run code: one line, named, no advice to load it anyway."""
    assert "\n" not in message, message
    assert f"asks to run code ({CODE_GLOBAL}" in message and "it is not a" in message, message
    for advice in ("trust", "weights_only", "safe_globals", "allowlist"):
        assert advice not in message, (advice, message)


@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle0", "pickle1", "pickle2", "pickle4"])
def test_globals_are_listed_without_unpickling(fmt, tmp_path):
    path = write_payload_checkpoint(tmp_path / f"{fmt}.pt", fmt)
    found = list_globals(path)
    assert CODE_GLOBAL in found and is_code_global(CODE_GLOBAL)
    if fmt in ("zip", "legacy"):
        assert "torch._utils._rebuild_tensor_v2" in found  # the tensor it also holds
    assert not payload_marker(path).exists()


def test_a_stack_global_is_named_from_its_strings_or_counts_as_code(tmp_path):
    """Protocol 4 names a global by two strings on the stack (possibly from the memo); an attribute
    chain (``torch.serialization`` + ``os.system``) reaches any function, so it counts as code."""
    chain = (b"\x80\x04\x8c\x13torch.serialization\x94\x8c\tos.system\x94\x93\x94\x8c\x04true\x94\x85\x94R\x94.")
    (tmp_path / "chain.pkl").write_bytes(chain)
    assert list_globals(tmp_path / "chain.pkl") == ["torch.serialization:os.system"]
    memo = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93."  # both strings fetched from the memo
    (tmp_path / "memo.pkl").write_bytes(memo)
    assert list_globals(tmp_path / "memo.pkl") == ["posix.system"]
    built = b"\x80\x04\x8c\x05posix\x94K\x01\x93."  # the name is no string: cannot be named without running it
    (tmp_path / "built.pkl").write_bytes(built)
    assert list_globals(tmp_path / "built.pkl") == [UNNAMED_GLOBAL] and is_code_global(UNNAMED_GLOBAL)


@pytest.mark.parametrize("name", [
    "posix.system", "os.system", "nt.system", "os.path.join", "subprocess.Popen", "builtins.eval", "builtins.exec",
    "builtins.getattr", "builtins.__import__", "builtins.compile", "builtins.open", "__builtin__.eval", "pty.spawn",
    "shutil.rmtree", "importlib.import_module", "sys.exit", "runpy.run_path", "webbrowser.open", "socket.socket",
    "pickle.loads", "marshal.loads", "ctypes.CDLL", "operator.attrgetter", "functools.partial", "timeit.timeit",
    "torch.load", "torch.hub.load", "torch.jit.load", "torch.storage._load_from_bytes", "numpy.load",
    "numpy.lib.npyio.load", "torch.serialization:os.system", "io.open", "types.FunctionType", "code.interact",
])
def test_globals_that_can_run_code(name):
    assert is_code_global(name)


@pytest.mark.parametrize("name", [
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage", "argparse.Namespace",
    "numpy.dtype", "numpy._core.multiarray.scalar", "mylib.config.TrainConfig", "torch.nn.modules.linear.Linear",
])
def test_plain_globals_are_not_called_code(name):
    """Not code, which only decides the wording: whether a file loads is the allow-list's decision."""
    assert not is_code_global(name)


@pytest.mark.parametrize("trust", [None, False, True])
@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle0", "pickle1", "pickle2", "pickle4"])
def test_a_payload_is_refused_as_code_with_and_without_trust(fmt, trust, tmp_path):
    """Protocols 0 and 1 carry no protocol byte (0 is text): the first-bytes check refuses them before
    torch, and still names their code rather than calling them "plain text" or "random bytes"."""
    path = write_payload_checkpoint(tmp_path / f"{fmt}.pt", fmt)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, "get the real file", trust=trust)
    _code_refusal(str(info.value))
    assert str(path) in str(info.value) and not payload_marker(path).exists()


class SavedConfig:
    """A training script's own config class: no allow-list can know it."""

    def __init__(self) -> None:
        self.lr = 0.1


REBUILT: list[str] = []


def _rebuild_and_record() -> SavedConfig:
    REBUILT.append("ran")
    return SavedConfig()


class _Recorded:
    def __reduce__(self):
        return (_rebuild_and_record, ())


def test_allowed_plain_types_load_only_with_trust_and_are_logged(tmp_path, caplog):
    import argparse

    path = tmp_path / "with_args.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1), "best": np.float64(0.5),
                "history": np.arange(3.0)}, path)
    with pytest.raises(CheckpointError) as info:  # a loader without the flag: no hint to a flag it lacks
        read_checkpoint(path, "FIX", trust=None)
    assert "argparse.Namespace" in str(info.value) and "trust" not in str(info.value)
    with pytest.raises(CheckpointError, match="argparse.Namespace.*--trust-checkpoint loads it"):
        read_checkpoint(path, "FIX", trust=False)
    with caplog.at_level("WARNING", logger="common.checkpoints"):
        loaded = read_checkpoint(path, "FIX", trust=True)
    assert loaded["args"].lr == 0.1 and loaded["best"] == 0.5 and loaded["history"].tolist() == [0.0, 1.0, 2.0]
    assert "allowed argparse.Namespace" in caplog.text and "numpy.ndarray" in caplog.text


def test_other_types_are_refused_even_with_trust_and_never_rebuilt(tmp_path):
    """--trust-checkpoint is a restricted unpickler, never a full one: an unknown type is not rebuilt."""
    path = tmp_path / "custom.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "config": _Recorded()}, path)
    name = f"{__name__}._rebuild_and_record"
    for trust in (None, False, True):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path, "FIX", trust=trust)
        message = str(info.value)
        assert name in message and "\n" not in message and "weights_only" not in message
        assert ("--trust-checkpoint would not help" in message) == (trust is not None)
    assert REBUILT == []


def test_a_pickle_protocol_torch_cannot_read_is_named(tmp_path):
    path = tmp_path / "p4.pt"
    torch.save({"w": torch.ones(2)}, path, pickle_protocol=4)
    with pytest.raises(CheckpointError, match=r"Unsupported operand 149 \(pickle opcode FRAME of protocol 4") as info:
        read_checkpoint(path, "FIX")
    assert "weights_only" not in str(info.value) and "trust" not in str(info.value)


def test_torchs_reason_is_kept_whole_and_its_advice_dropped(tmp_path):
    path = write_payload_checkpoint(tmp_path / "p.pt")
    with pytest.raises(pickle.UnpicklingError) as info:
        torch.load(path, weights_only=True)
    reason = torch_refusal_reason(info.value)
    assert CODE_GLOBAL in reason and "weights_only" not in reason and "trust" not in reason
    assert "arbitrary code" not in reason and "\n" not in reason


def test_corrupt_files_are_one_line_errors_never_tracebacks(tmp_path):
    """Cut or damaged torch files (zip and legacy) end in a CheckpointError, never another exception.

    Found by fuzzing: a cut legacy file raised struct.error, a damaged storage key AssertionError, a
    damaged zip end record BadZipFile from ``zipfile.is_zipfile`` itself."""
    rng = np.random.default_rng(0)
    obj = {"generator": {"a.weight": torch.randn(4, 4), "b": torch.arange(3)}, "step": 3, "name": "x"}
    for fmt in ("zip", "legacy"):
        good = tmp_path / f"{fmt}.pt"
        torch.save(obj, good, _use_new_zipfile_serialization=fmt == "zip")
        data = good.read_bytes()
        for i in range(60):
            bad = bytearray(data[:int(rng.integers(1, len(data)))] if i % 3 == 0 else data)
            for _ in range(0 if i % 3 == 0 else int(rng.choice([1, 20]))):
                bad[int(rng.integers(len(bad)))] = int(rng.integers(256))
            path = tmp_path / "bad.pt"
            path.write_bytes(bytes(bad))
            for trust in (None, True):
                try:
                    read_checkpoint(path, "FIX", trust=trust)
                except CheckpointError as exc:
                    assert "\n" not in str(exc) and "weights_only" not in str(exc)


# --- the one fit report ----------------------------------------------------------------------------

def test_the_fit_report_names_every_kind_of_mismatch(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    found = {k: v.clone() for k, v in model.state_dict().items()}
    del found["1.bias"]
    found["extra"] = torch.zeros(1)
    found["0.weight"] = torch.zeros(2, 4)
    found["0.bias"] = torch.zeros(2, dtype=torch.int64)
    found["1.weight"] = "not a tensor"
    with pytest.raises(CheckpointError) as info:
        load_state_dict_checked(model, found, tmp_path / "m.pt", "re-save it", entry="net")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'm.pt'} [net] does not fit the model: ") and "\n" not in message
    for part in ("1 missing: 1.bias", "1 unexpected: extra", "1 wrong shape: 0.weight (file [2, 4], expected [2, 3])",
                 "1 wrong dtype: 0.bias (file int64, expected float32)", "1 not a tensor: 1.weight",
                 "fix: re-save it"):
        assert part in message, part


@pytest.mark.parametrize("found, expected, fits", [
    (torch.float16, torch.float32, True), (torch.bfloat16, torch.float32, True), (torch.float64, torch.float32, True),
    (torch.int64, torch.float32, False), (torch.int32, torch.float32, False), (torch.bool, torch.float32, False),
    (torch.float32, torch.int64, False), (torch.int32, torch.int64, True), (torch.bool, torch.bool, True),
    (torch.int64, torch.bool, False), (torch.complex64, torch.float32, False),
])
def test_the_dtype_rule(found, expected, fits):
    """Floats into floats (fp16/bf16 -> fp32 is exact), integers into integers, nothing across."""
    assert dtype_fits(torch.ones(3, dtype=found), torch.zeros(3, dtype=expected)) == fits


def test_an_integer_that_does_not_survive_the_cast_is_refused():
    big = torch.tensor([2**40], dtype=torch.int64)
    assert not dtype_fits(big, torch.zeros(1, dtype=torch.int32))
    assert dtype_fits(torch.tensor([7], dtype=torch.int64), torch.zeros(1, dtype=torch.int32))


def test_an_integer_weight_in_step_1_is_refused_naming_key(tiny_ckpt, tmp_path, capsys):
    """Case s1_long: an int64 conv weight was cast into the float model without a word.

    Reproduction: ``01_generate_images.py --checkpoint long.pth`` where ``long.pth`` is the demo
    generator with one conv weight stored as int64 (values truncated): 2 images written, rc 0."""
    key = "synthesis.layer1.weight"
    path, out, rc, err = _step1_on_edited(tiny_ckpt, tmp_path, capsys, "long.pth",
                                          lambda sd: sd.__setitem__(key, sd[key].long()))
    assert rc == 2
    assert_one_line_error(err, path, f"1 wrong dtype: {key} (file int64, expected float32)", "fix:")
    assert not list(out.glob("*.jpg"))


def test_half_precision_weights_still_load(tiny_ckpt, tmp_path):
    """fp16 -> fp32 is a lossless upcast: the file loads and gives the fp32 model's weights rounded to fp16."""
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["generator_smooth"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["generator_smooth"].items()}
    path = tmp_path / "half.pth"
    torch.save(ckpt, path)
    generator = load_generator(path)
    ref = ckpt["generator_smooth"]["mapping.dense0.weight"].float()
    assert torch.equal(generator.state_dict()["mapping.dense0.weight"], ref)


# --- FaceXFormer: --trust-checkpoint is a restricted load, a bug is not a bad file -------------------

def _step5(tmp_path, checkpoint: Path, *extra: str) -> int:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "000000.png")
    rc = load_script_file("05_run_segmentation.py").main(
        ["--images", str(images), "--segmentation-checkpoint", str(checkpoint), "--out", str(tmp_path / "seg"),
         "--crop", "full", "--device", "cpu", "-q", *extra])
    return rc


@pytest.mark.parametrize("flags", [(), ("--trust-checkpoint",)])
def test_step5_payload_is_code_not_a_trust_question(flags, tmp_path, capsys):
    """Cases s5_pickle_payload and s9_segck_payload (issue 19 §1, SECURITY).

    Reproduction: ``05_run_segmentation.py --checkpoint torch_payload.pth`` (torch.save of a dict whose
    only non-tensor global is posix.system) said the file "holds objects other than tensors (probably
    optimizer/scheduler state) ... rerun with --trust-checkpoint", with torch's line naming the global
    cut off; with ``--trust-checkpoint`` the file was fully unpickled and the payload ran (PWNED)."""
    path = write_payload_checkpoint(tmp_path / "segmentation_model.pt")
    rc = _step5(tmp_path, path, *flags)
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, path)
    _code_refusal(err.strip())
    assert not payload_marker(path).exists() and not (tmp_path / "seg" / "crops.csv").exists()


def test_facexformer_trust_rebuilds_no_unknown_type(tmp_path):
    """``trusted=True`` used ``torch.load(weights_only=False)``: any class in the file was rebuilt.

    Reproduction: a FaceXFormer file with an extra entry whose ``__reduce__`` calls a function of the
    saving script; ``load_facexformer(path, trusted=True)`` called it (here: appended to REBUILT)."""
    path = tmp_path / "model.pt"
    torch.save({"state_dict_backbone": cheap_facexformer_state_dict(), "config": _Recorded()}, path)
    with pytest.raises(CheckpointError, match="would not help"):
        load_facexformer(path, trusted=True)
    assert REBUILT == []


def test_facexformer_reader_bug_is_not_called_a_bad_file(tmp_path, monkeypatch):
    """``facexformer._read_checkpoint`` called any TypeError, AttributeError or KeyError "a truncated
    download": a bug in our code was reported as a bad file (issue 20 §2).

    Reproduction: make the load raise TypeError (a bug) for a good file: the old loader said "cannot
    read ... as a PyTorch checkpoint (truncated or interrupted download?)"; now the TypeError surfaces."""
    path = tmp_path / "model.pt"
    torch.save({"state_dict_backbone": cheap_facexformer_state_dict()}, path)
    assert not load_facexformer(path).training

    def buggy(*args, **kwargs):
        raise TypeError("unexpected keyword argument 'mmap' (a bug, not the file)")

    monkeypatch.setattr(torch, "load", buggy)
    with pytest.raises(TypeError, match="a bug, not the file"):
        load_facexformer(path)


def test_facexformer_integer_weight_is_refused(tmp_path):
    sd = cheap_facexformer_state_dict()
    sd["linear_fuse.weight"] = torch.zeros(1, dtype=torch.int64).expand(sd["linear_fuse.weight"].shape)
    path = tmp_path / "model.pt"
    torch.save({"state_dict_backbone": sd}, path)
    with pytest.raises(CheckpointError, match=r"1 wrong dtype: linear_fuse.weight \(file int64, expected float32\)"):
        load_facexformer(path)


# --- directions files: the same reader, and arrays checked against the file's own header ----------

@pytest.fixture(scope="module")
def directions_data(tmp_path_factory) -> dict:
    """The plain dict a directions file holds: 5 properties, 8-d w, the last property without scores."""
    from stylegan.directions import fit_directions

    rng = np.random.default_rng(0)
    w = rng.normal(size=(200, 8))
    scores = w[:, :5] @ np.eye(5) + 0.05 * rng.normal(size=(200, 5))
    scores[:, 4] = np.nan  # no direction: its intercept is NaN, which a valid file may hold
    return fit_directions(w, scores, method="ridge").to_dict()


def _directions(tmp_path: Path, data: dict, **changes) -> Path:
    path = tmp_path / "directions.pt"
    torch.save({**data, **changes}, path)
    return path


def test_a_valid_directions_file_with_an_unfitted_property_loads(directions_data, tmp_path):
    from stylegan.directions import load_directions

    loaded = load_directions(_directions(tmp_path, directions_data), w_dim=8)
    assert loaded.methods[4] == "none" and np.isnan(loaded.intercepts[4])


def test_nan_directions_are_refused_naming_the_file(directions_data, tmp_path):
    """Case s8_dir_nan: ``08 --control directions --directions dir_nan.pt`` (one NaN in 'directions')
    ended in "SVD did not converge in Linear Least Squares" after LAPACK's DLASCL lines: no file, no NaN;
    the studio started with it and answered every render with a 500 (case st_dir_nan)."""
    from stylegan.directions import DirectionsMismatchError, load_directions

    bad = directions_data["directions"].clone()
    bad[0, 0] = float("nan")
    path = _directions(tmp_path, directions_data, directions=bad)
    with pytest.raises(DirectionsMismatchError) as info:
        load_directions(path)
    message = str(info.value)
    assert str(path) in message and "NaN or infinite" in message and "(directions)" in message
    assert "\n" not in message and "07_fit_latent_directions.py" in message


def test_directions_of_another_width_are_refused_naming_file_and_shapes(directions_data, tmp_path):
    """Case s8_dir_shape: directions [5, 32] in a file whose w_dim is 64 gave "cannot reshape array of
    size 320 into shape (32,5)": no file, no cause."""
    from stylegan.directions import DirectionsMismatchError, load_directions

    path = _directions(tmp_path, directions_data, directions=directions_data["directions"][:, :4])
    with pytest.raises(DirectionsMismatchError) as info:
        load_directions(path)
    message = str(info.value)
    assert str(path) in message and "1 wrong shape: directions (file [5, 4], expected [5, 8])" in message
    assert "\n" not in message and "reshape" not in message


def test_integer_directions_are_refused(directions_data, tmp_path):
    from stylegan.directions import DirectionsMismatchError, load_directions

    path = _directions(tmp_path, directions_data, slopes=directions_data["slopes"].long())
    with pytest.raises(DirectionsMismatchError, match=r"1 wrong dtype: slopes \(file int64, expected float64\)"):
        load_directions(path)


@pytest.mark.parametrize("kind", ["random", "html", "lfs", "empty"])
def test_a_directions_path_that_is_no_torch_file_says_what_it_looks_like(kind, tmp_path):
    """Cases s8_dir_notckpt and s8_dir_empty: random bytes, an HTML page or an LFS pointer gave "is not a
    readable directions file: Weights only load failed ... Re-running torch.load with weights_only set
    to False will likely succeed" (6 lines of torch's text); an empty file "... directions file: " with
    an empty reason."""
    from stylegan.directions import DirectionsMismatchError, load_directions

    path = tmp_path / "directions.pt"
    if kind == "empty":
        path.write_bytes(b"")
    else:
        write_bad_file(kind, path)
    with pytest.raises(DirectionsMismatchError) as info:
        load_directions(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and "weights_only" not in message
    assert ("empty (0 bytes)" if kind == "empty" else BAD_KINDS[kind]) in message
    assert "07_fit_latent_directions.py" in message


def test_a_directions_payload_is_code(tmp_path):
    from stylegan.directions import DirectionsMismatchError, load_directions

    path = write_payload_checkpoint(tmp_path / "directions.pt")
    with pytest.raises(DirectionsMismatchError) as info:
        load_directions(path)
    _code_refusal(str(info.value))


# --- consumers of a fine-tune folder use its newest valid checkpoint ------------------------------

def _studio_root(tmp_path: Path, tiny_ckpt: Path):
    import shutil

    from common.paths import PipelinePaths

    paths = PipelinePaths(tmp_path / "root")
    paths.stylegan_checkpoint.parent.mkdir(parents=True)
    shutil.copy(tiny_ckpt, paths.stylegan_checkpoint)
    return paths


def test_studio_banner_for_a_corrupt_directions_file_is_one_line(tmp_path, tiny_ckpt):
    """The studio's corrupt ``directions.pt`` banner showed torch's multi-line text, including its advice
    to turn ``weights_only`` off (issue 19 §3, "the studio's own").

    Reproduction: random bytes at stylegan/directions/directions.pt; start the studio: the page's banner
    read "latent directions not loaded: ... is not a readable directions file: Weights only load failed.
    ... Re-running torch.load with weights_only set to False will likely succeed ..."."""
    from pipeline.studio.render import load_studio_models

    paths = _studio_root(tmp_path, tiny_ckpt)
    write_bad_file("random", paths.directions_pt)
    models = load_studio_models(paths)
    notes = [n for n in models.notes if "directions" in n and str(paths.directions_pt) in n]
    assert len(notes) == 1 and "\n" not in notes[0], models.notes
    assert "random bytes" in notes[0] and "weights_only" not in notes[0]
    assert models.directions is None


def test_a_truncated_newest_finetune_is_skipped_by_its_consumers(tmp_path, tiny_ckpt):
    """One truncated newest fine-tune checkpoint stopped the studio although a valid older one sat
    beside it (issue 19 §3); steps 8 and 9 stopped the same way. They now use the newest valid one and
    say which file they skipped. Step 7b's resume still refuses it (case s7b_corrupt_newest, tested above).

    Reproduction: ``head -c 100000 checkpoint_000016.pt > checkpoint_000024.pt``; ``studio.py --root R``:
    "... checkpoint_000024.pt is not a PyTorch checkpoint: it looks like a truncated or corrupt zip", exit 2."""
    from pipeline.studio.render import load_studio_models
    from stylegan.control_resolver import find_method_files

    paths = _studio_root(tmp_path, tiny_ckpt)
    folder = paths.finetuned_dir / "checkpoints"
    folder.mkdir(parents=True)
    valid = _finetune_ckpt(tiny_ckpt, folder / "checkpoint_000016.pt")
    cut = folder / "checkpoint_000024.pt"
    cut.write_bytes(valid.read_bytes()[:20_000])
    write_bad_file("html", folder / "checkpoint_000032.pt")

    models = load_studio_models(paths)
    assert models.identity["finetuned"]["path"] == str(valid)
    skipped = [n for n in models.notes if n.startswith("skipped")]
    assert len(skipped) == 2 and "checkpoint_000032.pt" in skipped[0] and "checkpoint_000024.pt" in skipped[1]
    assert any(n.startswith("using the newest valid") and str(valid) in n for n in models.notes)
    assert find_method_files(paths)["finetuned"] == valid  # steps 8 and 9 (the resolver) as well


def test_a_folder_of_bad_checkpoints_has_no_finetune(tmp_path):
    from stylegan.conditional import newest_valid_checkpoint

    folder = tmp_path / "finetuned"
    write_bad_file("html", folder / "checkpoints" / "checkpoint_000008.pt")
    notes: list[str] = []
    assert newest_valid_checkpoint(folder, notes) is None and len(notes) == 1
    write_finetune_stub(folder / "checkpoints" / "checkpoint_000004.pt")
    assert newest_valid_checkpoint(folder) == folder / "checkpoints" / "checkpoint_000004.pt"


def test_a_cnn_fold_of_another_shape_is_one_line_naming_the_file(tmp_path):
    """Step 3's fold files go through the same reader and report: a state_dict of other channel widths
    was a RuntimeError traceback from ``load_state_dict`` (size mismatch) instead of a named file."""
    from gender_cnn.classifier import build_classifier
    from gender_cnn.predict import model_from_blob

    config = {"channels": [4, 8], "dropout": 0.0}
    other = build_classifier({"channels": [4, 6], "dropout": 0.0}).state_dict()
    path = tmp_path / "gender_fold0.pt"
    with pytest.raises(CheckpointError) as info:
        model_from_blob({"config": config, "state_dict": other}, source=path)
    message = str(info.value)
    assert message.startswith(f"{path} does not fit the model: ") and "wrong shape" in message
    assert "\n" not in message and "re-run step 3" in message

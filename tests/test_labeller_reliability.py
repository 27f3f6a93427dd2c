"""Issue 9, hand labels: a full disk, torn journal lines, odd file names, --overwrite under a lock,
and every reader seeing "CSV + journal replay" (nothing acknowledged is ever left out)."""
from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from common.io import CsvSchemaError
from gender_cnn.hand_labels import load_hand_labels
from gender_cnn.labeller.store import (
    Label,
    LabelStore,
    StoreLock,
    StoreLockedError,
    journal_path_for,
    read_label_state,
)

REPO = Path(__file__).resolve().parents[1]
NAMES = [f"{i:06d}.jpg" for i in range(10)]


def _drop(store: LabelStore) -> None:
    """A simulated kill -9: the store disappears without close() (no compaction)."""
    del store
    gc.collect()


class _FlakyJournal:
    """Wraps the journal file: the first write is short (as on a nearly full disk), later ones follow ``then``."""

    def __init__(self, real, short_bytes: int, then: str) -> None:
        self.real, self.short_bytes, self.then, self.calls = real, short_bytes, then, 0

    def write(self, data) -> int:
        self.calls += 1
        if self.calls == 1:
            return self.real.write(bytes(data[:self.short_bytes]))
        if self.then == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real.write(data)

    def fileno(self) -> int:
        return self.real.fileno()

    def truncate(self, size: int) -> int:
        return self.real.truncate(size)

    def close(self) -> None:
        self.real.close()


def test_disk_full_decision_is_refused_and_the_next_one_survives(tmp_path):
    csv = tmp_path / "l.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    real = store._journal
    store._journal = _FlakyJournal(real, short_bytes=20, then="enospc")
    with pytest.raises(OSError, match="disk full"):
        store.set_label(NAMES[1], 0, 0)       # never acknowledged
    assert store.get(NAMES[1]) is None       # and not in the state either
    store._journal = real                    # space again
    store.set_label(NAMES[2], 0, 1)
    _drop(store)
    assert read_label_state(csv) == {NAMES[0]: Label(1, 1), NAMES[2]: Label(0, 1)}


def test_short_write_is_completed_not_torn(tmp_path):
    csv = tmp_path / "l.csv"
    store = LabelStore(csv)
    store._journal = _FlakyJournal(store._journal, short_bytes=15, then="ok")
    store.set_label(NAMES[0], 1, 0)          # acknowledged: its whole line must be on disk
    store.set_label(NAMES[1], 0, 1)
    _drop(store)
    assert read_label_state(csv) == {NAMES[0]: Label(1, 0), NAMES[1]: Label(0, 1)}


_FSIZE_WRITER = textwrap.dedent("""
    import os, resource, signal, sys
    from gender_cnn.labeller.store import LabelStore
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG instead
    store = LabelStore(sys.argv[1])
    store.set_label("000000.jpg", 1, 1)
    size = os.path.getsize(store.journal_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 180, hard))  # room for one line and a half
    for i in range(1, 5):
        try:
            store.set_label(f"{i:06d}.jpg", i % 2, 1)
            print("ack", i, flush=True)
        except OSError as exc:
            print("fail", i, exc.errno, flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space freed
    for i in range(5, 7):
        store.set_label(f"{i:06d}.jpg", 0, 0)
        print("ack", i, flush=True)
    os._exit(0)  # like kill -9: no compaction, no close
""")


def test_real_file_size_limit_never_acknowledges_a_torn_line(tmp_path):
    """A real short write from the kernel (RLIMIT_FSIZE): acknowledged == on disk, before and after."""
    csv = tmp_path / "l.csv"
    out = subprocess.run([sys.executable, "-c", _FSIZE_WRITER, str(csv)], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line.split() for line in out.stdout.splitlines()]
    acked = {f"{int(w[1]):06d}.jpg" for w in lines if w[0] == "ack"} | {"000000.jpg"}
    failed = {f"{int(w[1]):06d}.jpg" for w in lines if w[0] == "fail"}
    assert failed, out.stdout  # the limit really bit
    assert {"000005.jpg", "000006.jpg"} <= acked
    assert set(read_label_state(csv)) == acked


def test_torn_line_with_a_decision_glued_to_it_keeps_that_decision(tmp_path):
    """A journal an old writer left: torn bytes, then the next decision on the same line."""
    csv = tmp_path / "l.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    _drop(store)
    journal = journal_path_for(csv)
    with open(journal, "ab") as handle:
        handle.write(b'{"op": "set", "seq": 2, "t": 1.0, "items": [{"img": "0000')
        handle.write(b'{"op": "set", "seq": 3, "t": 2.0, "items": [{"img": "000003.jpg", '
                     b'"new": {"gender": 0, "quality": 1, "labeller": "hand"}, "prev": null}]}\n')
    assert read_label_state(csv) == {NAMES[0]: Label(1, 1), NAMES[3]: Label(0, 1)}
    reopened = LabelStore(csv)  # start-up repairs the journal and keeps the glued decision
    assert reopened.labels() == {NAMES[0]: Label(1, 1), NAMES[3]: Label(0, 1)}
    assert b"0000{" not in journal.read_bytes()
    reopened.close()


def test_odd_file_names_round_trip_through_the_csv(tmp_path):
    csv = tmp_path / "l.csv"
    odd = ['a,b.jpg', 'say "hi".jpg', 'two\nlines.jpg', "semi;colon 'q'.png"]
    store = LabelStore(csv, undo_depth=0)  # the clean close leaves everything in the CSV alone
    for i, name in enumerate(odd):
        store.set_label(name, i % 2, 1)
    store.close()
    assert not journal_path_for(csv).read_text().strip()
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert sorted(frame["img_name"]) == sorted(odd)
    assert read_label_state(csv) == {name: Label(i % 2, 1) for i, name in enumerate(odd)}


# ---- one reader for every consumer ----------------------------------------------------------------

def test_load_hand_labels_includes_journal_only_decisions(tmp_path):
    csv = tmp_path / "hand_labels.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    store.compact()
    store.set_label(NAMES[1], 0, None)   # only in the journal
    store.set_label(NAMES[0], 0, 0)      # a relabel, only in the journal
    _drop(store)
    frame = load_hand_labels(csv, known_images=NAMES)
    assert frame["img_name"].tolist() == NAMES[:2]
    assert frame["gender"].tolist() == [0.0, 0.0]
    assert frame["quality"].iloc[0] == 0.0 and np.isnan(frame["quality"].iloc[1])
    with pytest.raises(CsvSchemaError, match="000001.jpg"):
        load_hand_labels(csv, known_images=[NAMES[0]])
    with pytest.raises(FileNotFoundError):
        load_hand_labels(tmp_path / "none.csv")


def test_hand_labels_digest_sees_journal_decisions_not_compactions(tmp_path):
    from gender_cnn.hand_labels import hand_labels_digest

    csv = tmp_path / "hand_labels.csv"
    assert hand_labels_digest(csv) is None
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    store.compact()
    first = hand_labels_digest(csv)
    store.set_label(NAMES[1], 0, 1)   # journal only
    second = hand_labels_digest(csv)
    assert second != first
    store.compact()                   # same labels, new CSV bytes
    assert hand_labels_digest(csv) == second
    store.close()


def _images(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((16, 16, 3), 20 * i, np.uint8)).save(folder / name)
    return folder


def test_step3_trains_on_decisions_that_sit_only_in_the_journal(tmp_path, monkeypatch):
    """run_training's label set after a labeller kill -9 inside the compaction interval."""
    import gender_cnn.train as train

    names = [f"{i:06d}.png" for i in range(6)]
    images = _images(tmp_path / "images", names)
    csv = tmp_path / "hand_labels.csv"
    store = LabelStore(csv)
    store.set_label(names[0], 1, 1)
    store.compact()
    for name in names[1:4]:
        store.set_label(name, 0, 1)       # acknowledged, journal only
    _drop(store)
    seen = {}

    def fake_cache(paths, specs, workers, on_item=None):
        seen["names"] = [Path(p).name for p in paths]
        raise RuntimeError("stop after reading the labels")

    monkeypatch.setattr(train, "build_image_cache", fake_cache)
    with pytest.raises(RuntimeError, match="stop after"):
        train.run_training(train.TrainConfig(images=images, labels=csv, models_dir=tmp_path / "m",
                                             logs_dir=tmp_path / "logs", oof_csv=tmp_path / "oof.csv", device="cpu"))
    assert seen["names"] == names[:4]


def test_step4_uses_journal_decisions(tmp_path, monkeypatch):
    import gender_cnn.filter as filt

    names = [f"{i:06d}.png" for i in range(3)]
    csv = tmp_path / "hand_labels.csv"
    store = LabelStore(csv)
    store.set_label(names[2], 1, 1)       # journal only
    _drop(store)
    captured = {}
    real = filt.load_hand_labels

    def spy(path, known_images=None):
        captured["frame"] = real(path, known_images=known_images)
        raise RuntimeError("stop")

    monkeypatch.setattr(filt, "load_hand_labels", spy)
    with pytest.raises(RuntimeError, match="stop"):
        filt.run_filter(filt.FilterConfig(images=_images(tmp_path / "images", names), labels=csv,
                                          models=tmp_path / "models", scores_csv=tmp_path / "out.csv",
                                          filtered_dir=tmp_path / "filtered", logs_dir=tmp_path / "logs",
                                          device="cpu"))
    assert captured["frame"]["img_name"].tolist() == [names[2]]


# ---- --overwrite while another labeller runs --------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys, time
    from gender_cnn.labeller.store import LabelStore
    store = LabelStore(sys.argv[1], lock=True)
    store.set_label("000000.jpg", 1, 1)
    print("ready", flush=True)
    sys.stdin.readline()          # hold the lock until told
    store.set_label("000001.jpg", 0, 0)
    print("done", flush=True)
""")


def test_overwrite_while_another_labeller_runs_touches_nothing(tmp_path, capsys, caplog):
    from pipeline.runner import load_script_file

    images = _images(tmp_path / "images", NAMES[:3])
    csv = tmp_path / "labels" / "hand_labels.csv"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(csv)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = sorted(p.name for p in csv.parent.iterdir())
        code = load_script_file("02_label_images.py").main(
            ["--images", str(images), "--labels", str(csv), "--overwrite", "--port", "0"])
        assert code == 2
        assert "another labeller" in capsys.readouterr().err + caplog.text
        assert sorted(p.name for p in csv.parent.iterdir()) == before  # no .bak-*, nothing moved
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "done"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # the running session's decisions are all where the next start reads them
    assert read_label_state(csv) == {NAMES[0]: Label(1, 1), NAMES[1]: Label(0, 0)}


def test_overwrite_takes_the_lock_before_moving_files(tmp_path):
    csv = tmp_path / "hand_labels.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    store.close()
    with StoreLock(csv):
        with pytest.raises(StoreLockedError):
            StoreLock(csv)
        with pytest.raises(StoreLockedError):
            LabelStore(csv, lock=True)
    LabelStore(csv, lock=True).close()


def test_labeller_start_on_a_full_disk_is_one_line_naming_the_file(tmp_path):
    images = _images(tmp_path / "images", NAMES[:2])
    csv = tmp_path / "labels" / "hand_labels.csv"
    code = ("import resource, runpy, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "stylegan_and_segmentation" / "02_label_images.py"),
                          "--images", str(images), "--labels", str(csv), "--port", "0"],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "disk full" in lines[0] and str(csv) in lines[0]
    assert not csv.exists()

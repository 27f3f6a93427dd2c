"""Label store: journal, compaction, undo, kill-resume, import, ordering and the review list."""
from __future__ import annotations

import gc
import json
import math

import pandas as pd
import pytest

from common.io import CsvSchemaError
from gender_cnn.label_csv import read_hand_labels
from gender_cnn.labeller.queue import build_sequence, read_model_scores, uncertainty
from gender_cnn.labeller.review import build_review_list, read_oof_scores
from gender_cnn.labeller.store import (
    Label,
    LabelStore,
    StoreLockedError,
    journal_path_for,
    read_import_file,
    read_label_state,
)

NAMES = [f"{i:06d}.jpg" for i in range(10)]


def _csv_rows(path) -> dict[str, tuple]:
    frame = read_hand_labels(path)
    return {r.img_name: (None if math.isnan(r.gender) else int(r.gender),
                         None if math.isnan(r.quality) else int(r.quality), r.labeller)
            for r in frame.itertuples(index=False)}


def test_label_validation():
    assert Label(1, 0).to_json() == {"gender": 1, "quality": 0, "labeller": "hand"}
    assert Label(None, None).unsure
    for bad in (2, -1, True, "1", 0.5):
        with pytest.raises(ValueError):
            Label(bad, 1)
    with pytest.raises(ValueError):
        Label(1, 1, "a,b")


def test_decisions_compact_to_spec_csv(tmp_path):
    csv = tmp_path / "hand_labels.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    store.set_label(NAMES[1], 0, 0)
    store.set_label(NAMES[2], None, None)
    store.set_label(NAMES[3], 1, None)
    assert store.compact() is True
    assert store.compact() is False  # nothing changed since
    text = csv.read_text().splitlines()
    assert text[0] == "img_name,gender,quality,labeller"
    assert text[1:] == ["000000.jpg,1,1,hand", "000001.jpg,0,0,hand", "000002.jpg,,,hand", "000003.jpg,1,,hand"]
    store.close()
    assert journal_path_for(csv).name == "hand_labels.journal.jsonl"


def test_every_decision_is_in_the_journal_before_set_returns(tmp_path):
    csv = tmp_path / "l.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    # no compaction yet: the CSV holds only the header, the journal already has the decision
    assert _csv_rows(csv) == {}
    assert read_label_state(csv)[NAMES[0]] == Label(1, 1)
    lines = journal_path_for(csv).read_text().splitlines()
    assert json.loads(lines[-1])["items"][0]["img"] == NAMES[0]
    store.close()


def test_kill_resume_loses_nothing(tmp_path):
    """Simulated kill -9: the object is dropped without close(); a new store sees every decision."""
    csv = tmp_path / "l.csv"
    store = LabelStore(csv)
    for i, name in enumerate(NAMES[:6]):
        store.set_label(name, i % 2, 1)
    store.compact()
    store.set_label(NAMES[6], 1, 0)  # after the last compaction: only in the journal
    store.undo()                     # undo is journaled too
    store.set_label(NAMES[1], 0, 0)  # a relabel (was woman/good)
    del store
    gc.collect()
    reopened = LabelStore(csv)
    labels = reopened.labels()
    assert set(labels) == set(NAMES[:6])
    assert labels[NAMES[1]] == Label(0, 0)
    assert labels[NAMES[0]] == Label(0, 1)
    assert reopened.first_undecided(NAMES) == 6
    # the re-open compacted: the CSV alone now has everything
    assert _csv_rows(csv)[NAMES[1]] == (0, 0, "hand")
    # undo history survives the restart: the relabel of NAMES[1] is undone to its old value
    assert reopened.undo() == [NAMES[1]]
    assert reopened.get(NAMES[1]) == Label(1, 1)
    reopened.close()


def test_undo_reverts_to_previous_value_across_restart(tmp_path):
    csv = tmp_path / "l.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    store.set_label(NAMES[0], 0, 1)  # relabel
    store.set_label(NAMES[1], 1, 0)
    del store
    gc.collect()
    store = LabelStore(csv)
    assert store.undo_available == 3
    assert store.undo() == [NAMES[1]]
    assert store.get(NAMES[1]) is None
    assert store.undo() == [NAMES[0]]
    assert store.get(NAMES[0]) == Label(1, 1)  # back to the previous value, not removed
    assert store.undo() == [NAMES[0]]
    assert store.get(NAMES[0]) is None
    assert store.undo() == []  # nothing left
    store.close()
    assert read_label_state(csv) == {}
    assert _csv_rows(csv) == {}


def test_bulk_change_is_one_undo_step(tmp_path):
    store = LabelStore(tmp_path / "l.csv")
    store.set_label(NAMES[0], 1, 1)
    store.set_labels({NAMES[0]: Label(0, 0), NAMES[1]: Label(0, 0), NAMES[2]: None})
    assert store.decided() == 2
    assert sorted(store.undo()) == sorted(NAMES[:3])
    assert store.labels() == {NAMES[0]: Label(1, 1)}
    store.close()


def test_torn_last_journal_line_is_ignored(tmp_path):
    csv = tmp_path / "l.csv"
    store = LabelStore(csv)
    store.set_label(NAMES[0], 1, 1)
    del store
    gc.collect()
    with open(journal_path_for(csv), "ab") as handle:  # a kill in the middle of a write
        handle.write(b'{"op": "set", "seq": 2, "items": [{"img": "0000')
    store = LabelStore(csv)
    assert store.labels() == {NAMES[0]: Label(1, 1)}
    store.set_label(NAMES[1], 0, 1)  # the journal was rewritten clean: appends parse again
    del store
    gc.collect()
    assert read_label_state(csv) == {NAMES[0]: Label(1, 1), NAMES[1]: Label(0, 1)}


def test_journal_is_trimmed_to_undo_depth(tmp_path):
    csv = tmp_path / "l.csv"
    store = LabelStore(csv, undo_depth=3)
    for name in NAMES:
        store.set_label(name, 1, 1)
    store.close()
    assert len(journal_path_for(csv).read_text().splitlines()) == 3
    store = LabelStore(csv, undo_depth=3)
    assert store.decided() == len(NAMES)
    assert store.undo_available == 3
    store.undo()
    store.close()
    assert set(read_label_state(csv)) == set(NAMES[:-1])


def test_existing_csv_is_loaded_and_kept(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("img_name,gender,quality,labeller\n000000.jpg,1,0,demo\nother.jpg,,,hand\n")
    store = LabelStore(csv)
    assert store.get(NAMES[0]) == Label(1, 0, "demo")
    assert store.get("other.jpg") == Label(None, None)
    store.close()
    assert set(_csv_rows(csv)) == {NAMES[0], "other.jpg"}


def test_invalid_csv_fails_with_row_names(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("img_name,gender,quality\n000000.jpg,1,7\n")
    with pytest.raises(CsvSchemaError, match="000000.jpg"):
        LabelStore(csv)


def test_lock_refuses_second_writer(tmp_path):
    csv = tmp_path / "l.csv"
    first = LabelStore(csv, lock=True)
    with pytest.raises(StoreLockedError):
        LabelStore(csv, lock=True)
    first.close()
    LabelStore(csv, lock=True).close()  # released on close


def test_import_original_format_fills_only_undecided(tmp_path):
    original = tmp_path / "synthesize_results_quality_and_gender.csv"
    original.write_text("img_name,quality,gender\n000000.jpg,1,0\n000001.jpg,0,1\n")
    labels = read_import_file(original, known_images=NAMES)
    assert labels == {NAMES[0]: Label(0, 1), NAMES[1]: Label(1, 0)}
    store = LabelStore(tmp_path / "l.csv")
    store.set_label(NAMES[0], 1, 1)
    assert store.import_labels(labels) == 1
    assert store.get(NAMES[0]) == Label(1, 1)  # our own decision wins
    assert store.get(NAMES[1]) == Label(1, 0)
    assert store.undo_available == 0  # import is a barrier
    del store
    gc.collect()
    assert read_label_state(tmp_path / "l.csv")[NAMES[1]] == Label(1, 0)


def test_import_rejects_unknown_images(tmp_path):
    original = tmp_path / "orig.csv"
    original.write_text("img_name,quality,gender\nnope.jpg,1,0\n")
    with pytest.raises(CsvSchemaError, match="nope.jpg"):
        read_import_file(original, known_images=NAMES)


def test_build_sequence_name_order():
    assert build_sequence(list(reversed(NAMES)), [], 3) == NAMES[:3]
    with pytest.raises(ValueError):
        build_sequence(NAMES, [], 3, order="random")


def test_build_sequence_uncertainty_order():
    scores = {NAMES[2]: (0.9, 0.95), NAMES[3]: (0.52, 0.99), NAMES[4]: (0.1, 0.6), NAMES[5]: (0.99, 0.99)}
    assert uncertainty(0.52, 0.99) == pytest.approx(0.02)
    seq = build_sequence(NAMES[:7], decided=[NAMES[0]], num=4, order="uncertainty", scores=scores)
    # decided first, then |score-0.5| ascending (less certain task counts), unscored ones last
    assert seq == [NAMES[0], NAMES[3], NAMES[4], NAMES[2], NAMES[5]]
    seq_all = build_sequence(NAMES[:7], decided=[], num=None, order="uncertainty", scores=scores)
    assert seq_all[-3:] == [NAMES[0], NAMES[1], NAMES[6]]


def test_model_scores_and_oof_files(tmp_path):
    assert read_model_scores(tmp_path / "absent.csv") == {}
    assert read_oof_scores(tmp_path / "absent.csv") == {}
    scores_csv = tmp_path / "all.csv"
    pd.DataFrame({"img_name": NAMES[:3], "gender_score": [1.0, 0.4, 0.8], "quality_score": [1.0, 0.5, 0.2],
                  "source": ["hand", "cnn", "cnn"]}).to_csv(scores_csv, index=False)
    assert read_model_scores(scores_csv) == {NAMES[1]: (0.4, 0.5), NAMES[2]: (0.8, 0.2)}
    bad = tmp_path / "bad.csv"
    bad.write_text("img_name,score\na,1\n")
    with pytest.raises(CsvSchemaError):
        read_model_scores(bad)


def test_review_list_uses_current_labels(tmp_path):
    oof_csv = tmp_path / "oof.csv"
    rows = [
        (NAMES[0], "gender", 1, 0.05, 0), (NAMES[0], "quality", 1, 0.9, 0),   # gender disagrees strongly
        (NAMES[1], "gender", 0, 0.3, 1), (NAMES[1], "quality", 1, 0.3, 1),    # quality disagrees (0.7)
        (NAMES[2], "gender", 1, 0.9, 2), (NAMES[2], "quality", 0, 0.1, 2),    # agrees
        (NAMES[3], "gender", 1, 0.0, 3),                                      # label now unsure
        (NAMES[4], "gender", 1, 0.0, 4),                                      # relabelled since: agrees now
    ]
    pd.DataFrame(rows, columns=["img_name", "task", "label", "oof_score", "fold"]).to_csv(oof_csv, index=False)
    oof = read_oof_scores(oof_csv)
    labels = {NAMES[0]: Label(1, 1), NAMES[1]: Label(0, 1), NAMES[2]: Label(1, 0),
              NAMES[3]: Label(None, None), NAMES[4]: Label(0, 1)}
    review = build_review_list(oof, labels)
    assert [item.img_name for item in review] == [NAMES[0], NAMES[1]]
    assert review[0].disagreement == pytest.approx(0.95)
    assert review[0].tasks == (("gender", 1, 0.05),)
    assert review[1].to_json()["tasks"] == [{"task": "quality", "label": 1, "score": 0.3}]


_WRITER = """
import sys
from gender_cnn.labeller.store import LabelStore
store = LabelStore(sys.argv[1], lock=True)
i = 0
while True:  # label, relabel and undo forever; print an ack after each acknowledged decision
    name = f"{i % 50:06d}.jpg"
    if i % 7 == 6:
        store.undo()
        print("undo", flush=True)
    else:
        store.set_label(name, i % 2, (i // 2) % 2)
        print("set", name, i % 2, (i // 2) % 2, flush=True)
    if i % 13 == 0:
        store.compact()
    i += 1
"""


def test_real_kill9_during_writes_loses_no_acknowledged_decision(tmp_path):
    """A writer process is SIGKILLed at a random moment; every decision it acknowledged survives."""
    import subprocess
    import sys
    from pathlib import Path

    csv = tmp_path / "l.csv"
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(csv)], stdout=subprocess.PIPE, text=True,
                            cwd=repo, env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    acks = []
    for line in proc.stdout:
        acks.append(line.split())
        if len(acks) >= 200:
            break
    proc.kill()  # SIGKILL, somewhere in the middle of a decision
    proc.wait(timeout=10)
    acks += [line.split() for line in proc.stdout.read().splitlines()]  # acks printed before the kill
    proc.stdout.close()
    # replay the acknowledged history (set/undo) to get what must be on disk at least up to here
    expected: dict[str, Label] = {}
    history: list[tuple[str, Label | None]] = []
    for ack in acks:
        if ack[0] == "set":
            history.append((ack[1], expected.get(ack[1])))
            expected[ack[1]] = Label(int(ack[2]), int(ack[3]))
        else:
            name, prev = history.pop()
            if prev is None:
                expected.pop(name, None)
            else:
                expected[name] = prev
    state = LabelStore(csv, lock=True)  # the lock died with the process
    got = state.labels()
    state.close()
    assert len(acks) >= 200
    # the writer may have done at most one more (unacknowledged) step after its last ack
    differing = {n for n in set(got) | set(expected) if got.get(n) != expected.get(n)}
    assert len(differing) <= 1, differing

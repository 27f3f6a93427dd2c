"""The step contract's shared pieces (``common.steps``)."""
from __future__ import annotations

from common.steps import ProgressCounter


def test_the_progress_counter_reports_done_and_total_and_starts_at_resumed_items():
    calls = []
    tick = ProgressCounter(lambda done, total: calls.append((done, total)), total=5, done=2)
    tick()
    tick(2)
    tick(4)  # a callee that over-reports (a last partial batch) never passes the total
    assert calls == [(2, 5), (3, 5), (5, 5), (5, 5)]
    fresh = []
    ProgressCounter(lambda done, total: fresh.append((done, total)), total=3)(1)
    assert fresh == [(1, 3)]  # nothing to announce before the first item
    quiet = ProgressCounter(None, total=3)
    quiet(3)
    assert quiet.done == 3


def test_the_progress_bar_counts_the_steps_unit_and_is_not_drawn_before_the_first_report(capsys):
    """Noticed on the demo: step 3's bar counted folds as "img", 7b's counted training steps as "img", and
    7a (which reports nothing without a scorer) drew an empty "0img" bar."""
    from common.cli import progress_bar
    from gender_cnn.train import TrainConfig
    from stylegan.finetune_step import FinetuneStepConfig

    assert TrainConfig.progress_unit == "fold" and FinetuneStepConfig.progress_unit == "step"
    with progress_bar("silent step") as progress:
        pass
    assert "silent step" not in capsys.readouterr().err
    with progress_bar("training", unit="fold") as progress:
        progress(2, 5)
        progress(5, 5)
    err = capsys.readouterr().err
    assert "training" in err and "5/5" in err and "fold" in err and "img" not in err

"""Step 2: the local web labeller for gender and image quality (see server.py and store.py)."""
from __future__ import annotations

from gender_cnn.labeller.queue import build_sequence
from gender_cnn.labeller.review import build_review_list
from gender_cnn.labeller.server import LabellerApp, LabellerConfig, LabellerServer, create_app, make_server
from gender_cnn.labeller.step import LabellerError, LabellerSummary, run_labeller
from gender_cnn.labeller.store import (
    JournalWriteError,
    Label,
    LabelStore,
    StoreLock,
    StoreLockedError,
    journal_path_for,
    read_label_state,
)

__all__ = [
    "JournalWriteError", "Label", "LabelStore", "LabellerApp", "LabellerConfig", "LabellerError", "LabellerServer",
    "LabellerSummary", "StoreLock", "StoreLockedError",
    "build_review_list", "build_sequence", "create_app", "journal_path_for", "make_server",
    "read_label_state", "run_labeller",
]

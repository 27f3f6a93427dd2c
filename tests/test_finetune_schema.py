"""What a fine-tune run writes, read back: its settings (typed, old checkpoints too) and its files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.paths import PROPERTY_NAMES
from stylegan.finetune_schema import (
    DEFAULT_MEDIANS,
    FinetuneRunFiles,
    FinetuneSettings,
    find_latest_checkpoint,
    property_ranges,
)

NORMALIZATION = {"format_version": 1, "method": "minmax", "properties": list(PROPERTY_NAMES),
                 "scales": {p: {"kind": "minmax", "min": 0.0, "max": 100.0,
                                "target": [-1.0, 1.0] if p == "face_pose" else [0.0, 1.0]} for p in PROPERTY_NAMES}}
STATS = {p: {"min": 0.1, "max": 0.9, "median": 0.2 + 0.1 * j, "mean": 0.4, "std": 0.1}
         for j, p in enumerate(PROPERTY_NAMES)}

# the `config` of a checkpoint written before FinetuneSettings existed (format 1, 2026-12-01): the training
# settings still held `which`, and there was no world_size
OLD_CONFIG = {
    "format_version": 1, "property_names": list(PROPERTY_NAMES),
    "generator": {"base_config": {"resolution": 16}, "num_properties": 5, "embed_dim": 16, "embed_hidden": 64,
                  "cond_lr_mul": 1.0},
    "discriminator": {"base_config": {"resolution": 16}, "num_properties": 5, "embed_hidden": 64},
    "embed_dim": 16, "normalization": NORMALIZATION, "condition_stats": STATS,
    "finetune": {"steps": 4, "batch_size": 4, "seed": 0, "which": "auto"}, "base_checkpoint": "/x/stylegan_model.pth",
    "base_entry": "generator_smooth", "num_train_images": 11,
    "property_ranges": {p: [-1.0, 1.0] if p == "face_pose" else [0.0, 1.0] for p in PROPERTY_NAMES},
    "regressor": {"input_size": 64, "width": 32, "num_outputs": 5}, "regressor_metrics": {"num_val": 1},
}


def test_an_old_checkpoints_settings_read_with_ranges_and_medians():
    settings = FinetuneSettings.from_dict(OLD_CONFIG)
    assert settings.world_size == 1 and settings.base_entry == "generator_smooth"
    assert settings.training["which"] == "auto" and settings.num_train_images == 11
    assert settings.ranges == {p: tuple(v) for p, v in OLD_CONFIG["property_ranges"].items()}
    assert settings.medians == pytest.approx({p: 0.2 + 0.1 * j for j, p in enumerate(PROPERTY_NAMES)})
    assert settings.median_vector().dtype == np.float32 and settings.median_vector()[4] == pytest.approx(0.6)
    again = FinetuneSettings.from_dict(settings.to_dict())
    assert again == settings
    assert {k: v for k, v in settings.to_dict().items() if k != "world_size"} == OLD_CONFIG


def test_settings_survive_a_weights_only_checkpoint(tmp_path):
    settings = FinetuneSettings(generator={"base_config": {"resolution": 16}}, normalization=NORMALIZATION,
                                condition_stats=STATS, training={"steps": 2}, world_size=2)
    torch.save({"config": settings.to_dict()}, tmp_path / "c.pt")
    assert FinetuneSettings.from_dict(torch.load(tmp_path / "c.pt", weights_only=True)["config"]) == settings


def test_a_minimal_config_takes_defaults_and_a_wrong_kind_is_a_value_error():
    settings = FinetuneSettings.from_dict({"generator": {}})
    assert settings.medians == DEFAULT_MEDIANS
    assert settings.ranges == property_ranges({})
    with pytest.raises(ValueError, match=r"config\['condition_stats'\] must be a dict"):
        FinetuneSettings.from_dict({"condition_stats": [1, 2]})
    with pytest.raises(ValueError, match="property_names"):
        FinetuneSettings.from_dict({"property_names": "eyes"})
    with pytest.raises(ValueError, match="must be a dict"):
        FinetuneSettings.from_dict(["not", "a", "dict"])


def test_settings_of_a_generator():
    class Holder:
        pass

    typed, legacy, bare = Holder(), Holder(), Holder()
    typed.finetune_settings = FinetuneSettings(condition_stats=STATS)
    legacy.finetune_config = {"condition_stats": STATS}
    assert FinetuneSettings.of(typed) is typed.finetune_settings
    assert FinetuneSettings.of(legacy).medians == typed.finetune_settings.medians
    with pytest.raises(ValueError, match="no fine-tune settings"):
        FinetuneSettings.of(bare)


def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path):
    """Past step 999999 the names grow a digit: 'checkpoint_1000000' sorts before 'checkpoint_999000' as text,
    so pruning by name would delete the newest checkpoint."""
    files = FinetuneRunFiles(tmp_path / "run")
    for step in (999_000, 1_000_000, 5):
        path = files.checkpoint(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (files.checkpoints_dir / "checkpoint_12.pt.tmp").write_bytes(b"partial")
    assert [p.name for p in files.checkpoints()] == ["checkpoint_000005.pt", "checkpoint_999000.pt",
                                                     "checkpoint_1000000.pt"]
    assert find_latest_checkpoint(files.folder) == files.checkpoint(1_000_000)
    assert find_latest_checkpoint(files.checkpoints_dir) == files.checkpoint(1_000_000)
    assert find_latest_checkpoint(tmp_path / "absent") is None

"""Unit tests of gender_cnn.data / classifier / train / predict (small tensors, seconds each)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from cnn_world import write_synthetic_set
from gender_cnn.classifier import SmallCNN
from gender_cnn.data import (
    AugmentConfig,
    InputSpec,
    augment_batch,
    crop_for_model,
    default_input_spec,
    stratified_folds,
)
from gender_cnn.predict import load_ensemble, load_model_file, model_from_blob, model_logits, model_path
from gender_cnn.train import (
    OOF_COLUMNS,
    TrainConfig,
    accuracy_f1,
    auroc,
    best_threshold,
    binary_nll,
    fit_temperature,
    run_training,
    train_task,
)

TINY = dict(folds=2, epochs=2, patience=2, batch_size=8, input_size=16, quality_size=(16, 32),
            channels=(4, 8), workers=1)


def test_stratified_folds_are_disjoint_balanced_and_deterministic():
    labels = np.array([1] * 30 + [0] * 12)
    folds = stratified_folds(labels, 3, seed=5)
    assert sorted(set(folds.tolist())) == [0, 1, 2]
    for k in range(3):
        sel = folds == k
        assert (labels[sel] == 1).sum() == 10 and (labels[sel] == 0).sum() == 4
    assert np.array_equal(folds, stratified_folds(labels, 3, seed=5))
    assert not np.array_equal(folds, stratified_folds(labels, 3, seed=6))


def test_quality_crop_is_the_top_centre_region_and_scales_with_image_size():
    image = np.zeros((256, 256, 3), np.uint8)
    image[0:64, 64:192] = 200  # exactly the region
    crop = crop_for_model(image, default_input_spec("quality"))
    assert crop.shape == (3, 64, 128) and (crop == 200).all()
    small = np.zeros((128, 128, 3), np.uint8)
    small[0:32, 32:96] = 90
    crop = crop_for_model(small, InputSpec(64, 128, (0, 64, 64, 192)))
    assert crop.shape == (3, 64, 128) and (crop == 90).all()
    whole = crop_for_model(image, default_input_spec("gender", input_size=32))
    assert whole.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="region"):
        InputSpec(8, 8, (0, 300, 0, 10))


def test_augmentation_is_seeded_and_flip_only_flips():
    x = torch.rand(4, 3, 16, 16)
    a = augment_batch(x.clone(), AugmentConfig(), torch.Generator().manual_seed(3))
    b = augment_batch(x.clone(), AugmentConfig(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    flip_only = augment_batch(x.clone(), AugmentConfig(True, 0.0, 0.0, 0.0), torch.Generator().manual_seed(0))
    for i in range(4):
        assert torch.equal(flip_only[i], x[i]) or torch.equal(flip_only[i], x[i].flip(2))


def test_metrics_on_hand_computed_cases():
    y = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), y) == 0.5
    assert auroc(np.array([0.1, 0.6, 0.4, 0.9]), y) == 0.75
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))
    acc, f1 = accuracy_f1(np.array([0.1, 0.7, 0.4, 0.9]), y, 0.5)
    assert acc == 0.5 and f1 == pytest.approx(0.5)
    # scores 0.3 / 0.6 separate perfectly only with a threshold in (0.3, 0.6]
    t = best_threshold(np.array([0.2, 0.3, 0.6, 0.8]), y)
    assert 0.3 < t <= 0.6
    assert accuracy_f1(np.array([0.2, 0.3, 0.6, 0.8]), y, t)[0] == 1.0


def test_temperature_scaling_recovers_an_overconfident_scale():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    temperature = fit_temperature(3.0 * true_logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.08)
    assert binary_nll(3.0 * true_logits / temperature, labels) < binary_nll(3.0 * true_logits, labels)


def test_eval_mode_turns_dropout_off():
    torch.manual_seed(0)
    model = SmallCNN((4, 8), dropout=0.9)
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    model.train()
    with torch.no_grad():  # dropout on: two passes differ (the original's inference bug)
        model.head.weight.fill_(1.0)
        noisy = [model((x.float() / 255)) for _ in range(2)]
    assert not torch.allclose(noisy[0], noisy[1])
    first = model_logits(model, x, [0.5] * 3, [0.25] * 3)
    second = model_logits(model, x, [0.5] * 3, [0.25] * 3)
    assert not model.training and torch.equal(first, second)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    labels = write_synthetic_set(root / "images", 24, seed=1, size=64)
    return root, labels


def test_model_file_round_trip_with_weights_only(tiny_set, tmp_path):
    root, labels = tiny_set
    from gender_cnn.data import build_image_cache

    config = TrainConfig(tasks=("gender",), **TINY)
    cache = build_image_cache(sorted((root / "images").glob("*.jpg")), [config.spec("gender")], workers=1)
    result = train_task("gender", cache.tensors[0], cache.names, labels["gender"].to_numpy(), config,
                        tmp_path, torch.device("cpu"))
    assert result.trained == 2 and set(result.oof["img_name"]) == set(cache.names)
    blob = torch.load(model_path(tmp_path, "gender", 0), map_location="cpu", weights_only=True)
    cfg = blob["config"]
    for key in ("task", "input", "channels", "mean", "std", "temperature", "threshold"):
        assert key in cfg
    assert blob["format_version"] == 1 and cfg["task"] == "gender" and cfg["temperature"] > 0
    # the rebuilt model reproduces the stored out-of-fold logits exactly
    model = model_from_blob(load_model_file(model_path(tmp_path, "gender", 0)))
    rows = [cache.names.index(n) for n in blob["oof"]["names"]]
    logits = model_logits(model, cache.tensors[0][rows], cfg["mean"], cfg["std"])
    assert torch.allclose(logits, blob["oof"]["logits"], atol=1e-5)
    ensemble = load_ensemble(tmp_path, "gender")
    assert len(ensemble.models) == 2 and all(not m.training for m in ensemble.models)
    p1, p2 = ensemble.predict_proba(cache.tensors[0]), ensemble.predict_proba(cache.tensors[0])
    assert np.array_equal(p1, p2) and ((p1 >= 0) & (p1 <= 1)).all()


def test_unsure_rows_are_left_out_per_task(tiny_set, tmp_path):
    root, labels = tiny_set
    labels = labels.copy().astype({"gender": "object", "quality": "object"})
    labels.loc[:3, "gender"] = ""  # unsure gender, decided quality
    labels.loc[4:5, "quality"] = ""
    labels.to_csv(tmp_path / "labels.csv", index=False)
    config = TrainConfig(**TINY)
    oof_csv = tmp_path / "logs" / "oof_predictions.csv"
    summary = run_training(replace(config, images=root / "images", labels=tmp_path / "labels.csv",
                                   models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", oof_csv=oof_csv,
                                   device="cpu"))
    oof = pd.read_csv(oof_csv, dtype={"img_name": str})
    assert list(oof.columns) == list(OOF_COLUMNS)
    gender_names = set(oof.loc[oof["task"] == "gender", "img_name"])
    quality_names = set(oof.loc[oof["task"] == "quality", "img_name"])
    unsure_gender = set(labels["img_name"][:4])
    unsure_quality = set(labels["img_name"][4:6])
    assert not gender_names & unsure_gender and unsure_gender <= quality_names
    assert not quality_names & unsure_quality and unsure_quality <= gender_names
    assert summary.results["gender"].n_labelled == 20 and summary.results["gender"].n_unsure == 4
    assert summary.results["quality"].n_labelled == 22
    epochs = pd.read_csv(tmp_path / "logs" / "gender_epochs.csv")
    assert list(epochs.columns[:5]) == ["fold", "epoch", "train_loss", "val_loss", "val_acc"]
    folds = pd.read_csv(tmp_path / "logs" / "quality_folds.csv")
    assert list(folds.columns[:8]) == ["fold", "accuracy", "f1", "auroc", "threshold", "n_train", "n_val",
                                       "best_epoch"]
    assert folds["fold"].astype(str).tolist() == ["0", "1", "all"]

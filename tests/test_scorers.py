"""The independent scorer of step 9 (pipeline.scorers): crop -> FaceXFormer -> step-6 scores -> normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from common.paths import PROPERTY_NAMES
from pipeline.scorers import SegmentationScorer, gender_callable
from segmentation import full_image_crop, load_facexformer, normalize_crops, save_random_facexformer_checkpoint
from segmentation.normalize import PropertyNormalizer
from segmentation.property_scores import raw_scores


@pytest.fixture(scope="module")
def scorer_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scorer")
    checkpoint = save_random_facexformer_checkpoint(folder / "segmentation_model.pt", seed=0)
    rng = np.random.default_rng(0)
    raw = {name: rng.uniform(0, 200, size=20) for name in PROPERTY_NAMES}
    raw["face_pose"] = rng.uniform(-0.5, 0.5, size=20)
    normalization = PropertyNormalizer.fit(raw).save(folder / "normalization.json")
    return checkpoint, normalization


def test_full_crop_scores_equal_the_step_5_and_6_algorithm(scorer_files):
    checkpoint, normalization = scorer_files
    scorer = SegmentationScorer(checkpoint, normalization, "full", "cpu")
    images = np.random.default_rng(1).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    scores = scorer(images)
    assert scores.shape == (2, len(PROPERTY_NAMES))
    # the same numbers by hand: full crop -> FaceXFormer argmax -> raw_scores -> the fitted normalisation
    model = load_facexformer(checkpoint)
    normalizer = PropertyNormalizer.load(normalization)
    faces = np.stack([full_image_crop(image).image for image in images])
    with torch.inference_mode():  # one batch, as the scorer runs it (batch size can move an argmax pixel)
        label_maps = model.segment(normalize_crops(faces)).numpy()
    for row, (face, label_map) in enumerate(zip(faces, label_maps)):
        expected = normalizer.apply(raw_scores(label_map, face))
        np.testing.assert_allclose(scores[row], [expected[name] for name in PROPERTY_NAMES], equal_nan=True)
    assert np.isfinite(scores[:, [0, 3]]).all()  # eyes and mouth are never NaN when a map exists
    assert "full crop" in scorer.name


def test_mtcnn_crop_gives_nan_rows_without_a_face(scorer_files, real_faces):
    checkpoint, normalization = scorer_files
    scorer = SegmentationScorer(checkpoint, normalization, "mtcnn", "cpu")
    face = np.asarray(Image.open(real_faces[0]).convert("RGB"))
    blank = np.full_like(face, 128)
    scores = scorer(np.stack([face, blank]))
    assert np.isfinite(scores[0, [0, 3]]).all()
    assert np.isnan(scores[1]).all()
    assert np.isnan(scorer(blank[None])).all()


def test_gender_callable_is_none_without_models(tmp_path):
    assert gender_callable(tmp_path / "no_models", "cpu") is None

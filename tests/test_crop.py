"""The official MTCNN face crop: golden astronaut crop, real faces, no-face cases, input kinds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation import FaceCrop, detect_and_crop, full_image_crop, normalize_crops
from segmentation.crop import get_mtcnn, widen_box


@pytest.fixture(scope="module")
def golden_pre(reference_dir):
    return torch.load(reference_dir / "golden_facexformer_preprocess.pt", weights_only=True)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    data = pytest.importorskip("skimage.data")
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def faces(real_faces) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in real_faces]


def test_astronaut_matches_official_preprocessing(astronaut, golden_pre):
    (crop,) = detect_and_crop([astronaut])
    assert crop.found
    assert crop.box == tuple(golden_pre["crop_box_int"].tolist()) == (159, 34, 289, 199)
    assert all(type(v) is int for v in crop.box)
    assert crop.prob == pytest.approx(golden_pre["mtcnn_probs"][0].item(), abs=1e-6)
    assert crop.image.dtype == np.uint8 and crop.image.shape == (224, 224, 3)
    np.testing.assert_array_equal(crop.image, golden_pre["resized_uint8_hwc"].numpy())
    torch.testing.assert_close(normalize_crops([crop.image])[0], golden_pre["input_tensor"],
                               atol=1e-6, rtol=0)


def test_raw_mtcnn_boxes_close_to_golden(astronaut, golden_pre):
    boxes, probs = get_mtcnn().detect(astronaut)
    np.testing.assert_allclose(np.asarray(boxes, dtype=np.float64),
                               golden_pre["mtcnn_boxes"].double().numpy(), atol=1e-3)
    assert float(probs[0]) == pytest.approx(golden_pre["mtcnn_probs"][0].item(), abs=1e-6)


def test_widen_box_by_hand():
    # box 100x40 at (50, 20): +25 px left/right, +10 px top/bottom
    assert widen_box((50.0, 20.0, 150.0, 60.0), 1000, 1000) == (25.0, 10.0, 175.0, 70.0)
    # clamped to the image on every side
    assert widen_box((10.0, 5.0, 190.0, 95.0), 200, 100) == (0, 0, 200, 100)


def test_face_found_in_every_real_face(faces):
    crops = detect_and_crop(faces)
    assert len(crops) == len(faces)
    missing = [i for i, c in enumerate(crops) if not c.found]
    assert missing == []
    for crop, face in zip(crops, faces):
        x0, y0, x1, y1 = crop.box
        assert 0 <= x0 < x1 <= face.width and 0 <= y0 < y1 <= face.height
        assert crop.image.shape == (224, 224, 3) and 0.9 < crop.prob <= 1.0


def test_batched_detection_gives_the_one_image_crops(faces):
    batched = detect_and_crop(faces[:12], batch=True)
    single = detect_and_crop(faces[:12], batch=False)
    assert [c.box for c in batched] == [c.box for c in single]
    for a, b in zip(batched, single):
        np.testing.assert_array_equal(a.image, b.image)


@pytest.mark.parametrize("size", [(256, 256), (300, 200), (10, 10)])
def test_no_face_is_not_an_exception(size):
    (crop,) = detect_and_crop([Image.new("RGB", size, (120, 120, 120))])
    assert crop == FaceCrop(found=False, box=None, prob=None, image=None)


def test_array_and_pil_inputs_agree(faces):
    as_arrays = detect_and_crop([np.asarray(f) for f in faces[:2]])
    as_pil = detect_and_crop(faces[:2])
    for a, b in zip(as_arrays, as_pil):
        assert a.box == b.box and a.prob == b.prob
        np.testing.assert_array_equal(a.image, b.image)


def test_other_modes_are_converted(faces):
    rgba, grey = faces[0].convert("RGBA"), faces[1].convert("L")
    crops = detect_and_crop([rgba, grey])
    assert crops[0].found and crops[0].box == detect_and_crop([faces[0]])[0].box
    assert crops[1].image.shape == (224, 224, 3)


def test_mixed_sizes_keep_order(astronaut, faces):
    blank = Image.new("RGB", (300, 200))
    inputs = [faces[0], astronaut, blank, faces[1]]
    crops = detect_and_crop(inputs)
    assert [c.found for c in crops] == [True, True, False, True]
    assert crops[1].box == (159, 34, 289, 199)
    for image, crop in zip(inputs, crops):
        assert detect_and_crop([image])[0].box == crop.box


def test_empty_list():
    assert detect_and_crop([]) == []


def test_bad_array_is_a_value_error():
    with pytest.raises(ValueError, match="uint8"):
        detect_and_crop([np.zeros((50, 50, 3), dtype=np.float32)])


def test_full_image_crop(astronaut):
    crop = full_image_crop(np.asarray(astronaut))
    assert crop.found and crop.box == (0, 0, 512, 512) and crop.prob is None
    np.testing.assert_array_equal(crop.image, np.asarray(astronaut.resize((224, 224), Image.BICUBIC)))


def test_normalize_crops_shape_and_values():
    crops = np.full((2, 224, 224, 3), 255, dtype=np.uint8)
    x = normalize_crops(crops)
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0, :, 0, 0], expected)
    with pytest.raises(ValueError):
        normalize_crops(np.zeros((224, 224, 3), dtype=np.uint8))

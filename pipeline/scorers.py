"""The scorers step 9 passes into ``stylegan.control_measures``: where the segmentation, step-6 and CNN packages meet.

``stylegan.control_measures`` only sees callables ``images_u8 [N, H, W, 3] -> array``, so it stays free of
these packages, and tests and the demo can pass stand-ins.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.checkpoints import CheckpointError
from common.paths import PROPERTY_NAMES


class SegmentationScorer:
    """images_u8 -> [N, 5] normalised scores: crop -> FaceXFormer -> step-6 raw scores -> normalization.json.

    Where packages meet (the style guide's seam): stylegan.control_measures only sees this callable.
    No face (MTCNN) or a NaN raw score gives NaN in that row, never an exception.
    """

    judge = "segmentation"

    def __init__(self, segmentation_checkpoint: Path, normalization_json: Path, crop: str,
                 device, trusted: bool = False):
        import segmentation
        from segmentation.normalize import PropertyNormalizer

        self.model = segmentation.load_facexformer(segmentation_checkpoint, device=device, trusted=trusted)
        self.normalizer = PropertyNormalizer.load(normalization_json)
        self.crop = crop
        self.device = device
        self.name = f"FaceXFormer segmentation + step-6 scores ({crop} crop), normalised with {normalization_json}"
        self.last_yaw = np.zeros(0)  # FaceXFormer's head-pose yaw (degrees) of the last call: a third pose opinion

    def __call__(self, images_u8: np.ndarray) -> np.ndarray:
        import torch

        import segmentation
        from segmentation.property_scores import raw_scores

        if self.crop == "mtcnn":
            crops = segmentation.detect_and_crop(list(images_u8), device=self.device)
        else:
            crops = [segmentation.full_image_crop(image) for image in images_u8]
        out = np.full((len(images_u8), len(PROPERTY_NAMES)), np.nan)
        self.last_yaw = np.full(len(images_u8), np.nan)
        found = [i for i, c in enumerate(crops) if c.found]
        if not found:
            return out
        faces = np.stack([crops[i].image for i in found])
        with torch.inference_mode():  # parsing and the pose heads from one backbone pass
            maps, heads = self.model.parse_with_heads(segmentation.normalize_crops(faces).to(self.device))
        parsing = maps.cpu().numpy()
        self.last_yaw[found] = heads["headpose"][:, 1].cpu().numpy()
        raw = {name: np.full(len(found), np.nan) for name in PROPERTY_NAMES}
        for row, (face, label_map) in enumerate(zip(faces, parsing)):
            for name, value in raw_scores(label_map, face).items():
                raw[name][row] = value
        normalised = self.normalizer.apply(raw)
        for j, name in enumerate(PROPERTY_NAMES):
            out[found, j] = normalised[name]
        return out


def gender_callable(models_dir: Path, device):
    """images_u8 -> P(woman) from the step-3 ensemble, or None when no gender model exists."""
    import torch

    from gender_cnn.data import crop_for_model
    from gender_cnn.predict import load_ensemble

    try:
        ensemble = load_ensemble(models_dir, "gender", device=device)
    except CheckpointError:
        return None

    def female_prob(images_u8: np.ndarray) -> np.ndarray:
        batch = np.stack([crop_for_model(image, ensemble.spec) for image in images_u8])
        return ensemble.predict_proba(torch.from_numpy(batch), device=device)

    return female_prob

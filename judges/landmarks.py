"""dlib's 68-point landmarks and face-recognition embedding: a judge from another model family.

FaceXFormer (a Swin transformer trained on LaPa) parses the faces that train and judge the
fine-tune; dlib's shape predictor is a regression-tree ensemble trained on iBUG 300-W, so a
closed eye FaceXFormer misreads is unlikely to be misread the same way. About 25 ms per 256 px face
on one CPU core. The face box comes from MTCNN (:mod:`judges.face_box`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from judges.dlib_models import DlibModelFiles, find_dlib_model_files


class LandmarkJudge:
    """Loads dlib's two models once; ``landmarks`` and ``descriptor`` work on HxWx3 uint8 RGB images.

    Raises :class:`judges.JudgeUnavailable` when the optional extra is not installed.
    """

    def __init__(self, files: DlibModelFiles | None = None) -> None:
        files = files or find_dlib_model_files()
        import dlib

        self._dlib = dlib
        self.files = files
        self._predictor = dlib.shape_predictor(str(files.shape_predictor))
        self._encoder = dlib.face_recognition_model_v1(str(files.face_recognition))

    def _shape(self, image_u8: np.ndarray, box: Sequence[float]):
        image = np.ascontiguousarray(image_u8)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}"
            )
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty face box {tuple(box)}")
        return image, self._predictor(image, self._dlib.rectangle(x0, y0, x1, y1))

    def landmarks(self, image_u8: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """[68, 2] float64 points (x, y) in image pixels for the face in ``box`` (x0, y0, x1, y1)."""
        _, shape = self._shape(image_u8, box)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def descriptor(self, image_u8: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """dlib's 128-d face-recognition embedding (aligned with the 68 points); distances below 0.6
        are dlib's usual "same person" rule."""
        image, shape = self._shape(image_u8, box)
        return np.asarray(self._encoder.compute_face_descriptor(image, shape), dtype=np.float64)

"""Draw the README's figures: the pipeline diagram and real generated faces with step 5's crop boxes.

    python images/make_figures.py            # faces from tests/data/real_faces (or $TESTDATA_DIR)
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

HERE = Path(__file__).resolve().parent

STEPS = [
    ("1 generate", "01_generate_images.py", "synthesize_results/\n000000.jpg, latents.npy"),
    ("2 label", "02_label_images.py", "hand_labels.csv\n(~2,000 images)"),
    ("3 train CNNs", "03_train_gender_cnn.py", "models/{gender,quality}\n_fold{k}.pt"),
    ("4 filter", "04_filter_images.py", "synthesize_results_filtered/\n(women, good quality)"),
    ("5 segment", "05_run_segmentation.py", "parsing_*.png, face_*.png\ncrops.csv"),
    ("6 score", "06_compute_property_scores.py", "all_scores.csv\nnormalization.json"),
    ("7 fine-tune", "07_finetune_stylegan.py", "finetuned/ checkpoints\ntrain_log.csv"),
    ("8 generate", "08_generate_with_properties.py", "images for chosen\nproperty values"),
    ("9 evaluate", "09_evaluate_control.py", "evaluation/ report\nr, rho, leakage"),
]


def pipeline_diagram(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(13, 4.2))
    ax.set_xlim(0, 5 * 2.6)
    ax.set_ylim(0, 4.2)
    ax.axis("off")
    positions = [(0.2 + 2.6 * i, 2.3) for i in range(5)] + [(0.2 + 2.6 * (8 - i), 0.2) for i in range(5, 9)]
    colours = ["#cfe2ff"] * 1 + ["#ffe5b4"] * 3 + ["#d4f4dd"] * 2 + ["#f8d7da"] * 3
    for (title, script, out), (x, y), colour in zip(STEPS, positions, colours):
        ax.add_patch(FancyBboxPatch((x, y), 2.2, 1.6, boxstyle="round,pad=0.05", fc=colour, ec="#444"))
        ax.text(x + 1.1, y + 1.3, title, ha="center", va="center", fontsize=11, weight="bold")
        ax.text(x + 1.1, y + 0.98, script, ha="center", va="center", fontsize=7, family="monospace")
        ax.text(x + 1.1, y + 0.45, out, ha="center", va="center", fontsize=7.5)
    for i in range(8):
        (x0, y0), (x1, y1) = positions[i], positions[i + 1]
        if y0 == y1:
            start, end = ((x0 + 2.25, y0 + 0.8), (x1 - 0.05, y1 + 0.8)) if x1 > x0 else \
                ((x0 - 0.05, y0 + 0.8), (x1 + 2.25, y1 + 0.8))
        else:
            start, end = (x0 + 1.1, y0 - 0.05), (x1 + 1.1, y1 + 1.65)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#444"))
    ax.text(0.2, 4.05, "StyleGAN (genforce celeba-partial-256)  ->  hand labels + CNNs  ->  FaceXFormer + "
            "property scores  ->  latent-conditioned fine-tuning", fontsize=9.5, color="#333")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def real_faces_with_crops(path: Path, testdata: Path, count: int = 8) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from common.contact_sheet import make_contact_sheet
    from segmentation import detect_and_crop

    faces = sorted((testdata / "real_faces").glob("*.jpg"))[:: max(1, 40 // count)][:count]
    images = [Image.open(p).convert("RGB") for p in faces]
    crops = detect_and_crop(images)
    drawn = []
    for image, crop in zip(images, crops):
        image = image.copy()
        if crop.found:
            ImageDraw.Draw(image).rectangle(crop.box, outline=(255, 40, 40), width=3)
        drawn.append(np.asarray(image))
    sheet = make_contact_sheet(drawn + [c.image for c in crops], ncols=count, thumb=160,
                               title="real images of the pre-trained generator (top) and step 5's 224x224 "
                                     "MTCNN crops (bottom; red box = widened crop)")
    sheet.save(path, quality=88)


def main() -> int:
    pipeline_diagram(HERE / "pipeline.png")
    testdata = Path(os.environ.get("TESTDATA_DIR", HERE.parent / "tests" / "data"))
    if (testdata / "real_faces").is_dir():
        real_faces_with_crops(HERE / "real_faces_crops.jpg", testdata)
    else:
        print(f"no test faces at {testdata}: skipped real_faces_crops.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

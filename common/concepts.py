"""One flag per concept: the table every script's flags are checked against (``tests/test_flag_concepts.py``).

A concept is a thing a user names on the command line in more than one script: the pre-trained
generator, FaceXFormer, a step's CSV. Each has exactly one spelling here. A config field declares
its concept (``common.settings.setting(concept=...)``) and gets the flag, the meaning and the
pipeline default from this table, so two scripts cannot spell one file two ways, nor one spelling
mean two files. Older spellings stay as aliases of the field that used them (a one-line note on
stderr; they go in 0.4, except those outside checks use, see docs/flags.md).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Concept:
    flag: str                   # the one spelling
    meaning: str                # what the value is, in the user's words (start of the flag's help)
    default_path: str | None = None  # the ``PipelinePaths`` attribute used when the flag is not given


CONCEPTS: dict[str, Concept] = {
    "root": Concept("--root", "root that every default input/output path is relative to"),
    "device": Concept("--device", "compute device: auto (cuda when available) | cpu | cuda | cuda:N"),
    "stylegan_checkpoint": Concept("--stylegan-checkpoint", "the pre-trained genforce StyleGAN checkpoint",
                                   "stylegan_checkpoint"),
    "segmentation_checkpoint": Concept("--segmentation-checkpoint", "the FaceXFormer checkpoint",
                                       "segmentation_checkpoint"),
    "finetuned_checkpoint": Concept("--finetuned-checkpoint",
                                    "a fine-tuned checkpoint of step 7b (default: the newest in "
                                    "stylegan/finetuned/checkpoints)"),
    "trust_checkpoint": Concept("--trust-checkpoint", "allow the FaceXFormer file's saved args or numpy values, "
                                                      "never code (docs/checkpoints.md)"),
    "directions": Concept("--directions", "the latent directions file of step 7a", "directions_pt"),
    "hand_labels_csv": Concept("--labels", "the hand labels CSV of step 2 (its journal sits next to it)",
                               "hand_labels_csv"),
    "quality_gender_csv": Concept("--quality-gender-csv", "step 4's scores CSV (img_name,gender_score,"
                                                          "quality_score,source)", "quality_gender_csv"),
    "all_scores_csv": Concept("--all-scores-csv", "step 6's property scores CSV (all_scores.csv)",
                              "all_scores_csv"),
    "normalization_json": Concept("--normalization", "step 6's normalization.json", "normalization_json"),
    "weights": Concept("--weights", "generator weights: ema = the smoothed copy (genforce's generator_smooth, "
                                    "the fine-tune's EMA), raw = the trained weights, auto = ema when the "
                                    "checkpoint has it"),
    "seed": Concept("--seed", "random seed (results are reproducible)"),
    "batch_size": Concept("--batch-size", "items per forward pass"),
    "limit": Concept("--limit", "process at most N items (smoke runs)"),
    "overwrite": Concept("--overwrite", "ignore finished work and redo it"),
    "shard": Concept("--shard", "process only images with index i mod N == K (K from 0), for N separate "
                                "machines; merge afterwards with merge_shards.py (under torchrun the ranks "
                                "split the work instead)"),
}
"""concept -> its one flag. Flags of other settings are free, but may not reuse one of these spellings."""

OLD_SPELLINGS: dict[str, str] = {
    "--checkpoint": "one of --stylegan-checkpoint, --segmentation-checkpoint, --finetuned-checkpoint",
    "--scores": "--quality-gender-csv (step 4's CSV) or --all-scores-csv (step 6's)",
    "--scores-csv": "--quality-gender-csv",
    "--trusted-checkpoint": "--trust-checkpoint",
    "--which": "--weights",
    "--input": "--images",
}
"""Spellings that meant different things in different scripts: only an alias of the concept flag may use them."""


def concept_of_flag(flag: str) -> str | None:
    """The concept whose one spelling is ``flag``, or None."""
    for name, concept in CONCEPTS.items():
        if concept.flag == flag:
            return name
    return None

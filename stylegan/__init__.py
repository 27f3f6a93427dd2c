"""genforce-compatible StyleGAN (v1): networks, checkpoint loading, step-1 generation."""
from stylegan.checkpoint import load_discriminator, load_generator, write_random_checkpoint
from stylegan.networks import StyleGANDiscriminator, StyleGANGenerator, postprocess_uint8

__all__ = [
    "StyleGANGenerator", "StyleGANDiscriminator", "postprocess_uint8",
    "load_generator", "load_discriminator", "write_random_checkpoint",
]

# step 7-9 (conditional fine-tuning and control evaluation)
from stylegan.conditional import (  # noqa: E402
    ConditionalDiscriminator, ConditionalGenerator, load_conditional_generator, property_ranges,
)

__all__ += ["ConditionalGenerator", "ConditionalDiscriminator", "load_conditional_generator", "property_ranges"]

# step 7, second route: latent directions (no training)
from stylegan.directions import (  # noqa: E402
    DirectionsMismatchError, LatentDirections, fit_directions, load_directions, select_by_control,
)

__all__ += ["LatentDirections", "fit_directions", "load_directions", "DirectionsMismatchError", "select_by_control"]

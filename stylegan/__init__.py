"""genforce-compatible StyleGAN (v1): networks, checkpoint loading, the conditional fine-tune, latent directions."""
from stylegan.checkpoint import load_discriminator, load_generator, write_random_checkpoint
from stylegan.conditional import (
    ConditionalDiscriminator,
    ConditionalGenerator,
    load_conditional_generator,
    property_ranges,
)
from stylegan.directions import (
    DirectionsMismatchError,
    LatentDirections,
    fit_directions,
    load_directions,
    select_by_control,
)
from stylegan.networks import StyleGANDiscriminator, StyleGANGenerator, postprocess_uint8

__all__ = [
    "StyleGANGenerator", "StyleGANDiscriminator", "postprocess_uint8",
    "load_generator", "load_discriminator", "write_random_checkpoint",
    "ConditionalGenerator", "ConditionalDiscriminator", "load_conditional_generator", "property_ranges",
    "LatentDirections", "fit_directions", "load_directions", "DirectionsMismatchError", "select_by_control",
]

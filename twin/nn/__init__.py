"""Neural building blocks: encoder and decoder families behind small interfaces."""

from twin.nn.decoders import DECODER_FAMILIES, Decoder, MLPDecoder, build_decoder, register_decoder
from twin.nn.encoders import (
    ENCODER_FAMILIES,
    Encoder,
    GaussianExpert,
    MLPEncoder,
    build_encoder,
    register_encoder,
)

__all__ = [
    "DECODER_FAMILIES",
    "ENCODER_FAMILIES",
    "Decoder",
    "Encoder",
    "GaussianExpert",
    "MLPDecoder",
    "MLPEncoder",
    "build_decoder",
    "build_encoder",
    "register_decoder",
    "register_encoder",
]

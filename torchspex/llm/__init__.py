"""LLM and layer helpers: prompt interactions for a target's log-probability, per-layer sweeps."""

from torchspex.llm.layer import (
    LayerSpectralInteraction,
    LayerSweep,
    sweep_layers,
    transformer_blocks,
)
from torchspex.llm.llm import DEFAULT_GEN_ARGS, LLMInteractions, LLMSpectralInteraction

__all__ = [
    "DEFAULT_GEN_ARGS",
    "LLMInteractions",
    "LLMSpectralInteraction",
    "LayerSpectralInteraction",
    "LayerSweep",
    "sweep_layers",
    "transformer_blocks",
]

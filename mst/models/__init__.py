"""Backbones (timm ViT with a [MASK] token and class-token attention), the DINO head and the decoders."""

from .backbone import BackboneOutput, MaskedViT, backbone_names, build_backbone
from .decoder import build_decoder
from .head import DINOHead

__all__ = ["BackboneOutput", "DINOHead", "MaskedViT", "backbone_names", "build_backbone", "build_decoder"]

"""Masked-convolution op: one entry point, a pure-PyTorch reference and a fused Triton kernel."""

from pixelcnn.ops.masked_conv import CONV_IMPLS, masked_conv2d
from pixelcnn.ops.reference import masked_conv2d_reference

__all__ = ["CONV_IMPLS", "masked_conv2d", "masked_conv2d_reference"]

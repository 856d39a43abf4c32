"""Class-conditional PixelCNN: model, training, samplers and fast paths (see docs/DESIGN.md)."""

from pixelcnn.toolkit import use_cuda_toolkit

use_cuda_toolkit()  # before anything imports torch.utils.cpp_extension (the build, or inductor under torch.compile)

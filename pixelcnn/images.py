"""Image files: PNG grids of uint8 samples (training's per-epoch samples, ``python -m pixelcnn.sample``) and reading
a given image for completion."""

from __future__ import annotations

import torch

from pixelcnn.atomic import atomic_write


def save_grid(path: str, images: torch.Tensor, nrow: int) -> None:
    """uint8 ``[N, C, H, W]`` -> PNG grid, ``nrow`` images per row, small images enlarged (nearest) to >= 32 px."""
    from torchvision.utils import make_grid, save_image

    x = images.float().cpu() / 255.0
    scale = max(1, 32 // x.shape[-1])
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    grid = make_grid(x, nrow=nrow, padding=2, pad_value=0.5)
    atomic_write(path, lambda tmp: save_image(grid, tmp, format="png"))


def read_image(path: str, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """An image file -> uint8 ``[channels, H, W]``; it must already have the model's size (no resizing)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            width, height = img.size
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except FileNotFoundError:
        raise ValueError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image {path} could not be read ({e}); pass a PNG") from None
    if (height, width) != tuple(size):
        raise ValueError(
            f"image {path} is {height}x{width}, the model takes {size[0]}x{size[1]}: crop or resize "
            f"it to the model's size first"
        )
    return data.view(height, width, channels).permute(2, 0, 1).contiguous()

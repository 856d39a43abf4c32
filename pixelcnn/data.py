"""Datasets as uint8 tensors ``[N, C, H, W]`` with int64 labels ``[N]`` (docs/DESIGN.md §2).

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (17 grey levels mapped to 0..255); offline default.
- ``mnist`` / ``fashion-mnist`` / ``cifar10``: torchvision's datasets under ``--data-dir`` (``--download`` fetches).
- ``folder``: any torchvision ``ImageFolder`` tree (class sub-folders of images); ``train/`` and ``test/``
  sub-trees are used as the splits when present, otherwise a fixed 10% of the images is held out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from pixelcnn.config import Config


class DataError(ValueError):
    """A dataset could not be opened; the message says which files were expected and how to get them."""


@dataclass
class ImageData:
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _missing(name: str, data_dir: str, detail: str) -> DataError:
    return DataError(
        f"{name} data not found under --data-dir {data_dir!r} ({detail}). Pass --download to fetch "
        f"it (needs internet), or point --data-dir at a folder that already holds it."
    )


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1234))
    n_test = len(labels) // 6
    te, tr = perm[:n_test], perm[n_test:]
    return images[tr], labels[tr], images[te], labels[te], [str(i) for i in range(10)]


def _torchvision(cfg: Config):
    from torchvision import datasets

    name = cfg.dataset
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}.get(name) or _cifar10_files_class()
    splits = []
    for train in (True, False):
        try:
            ds = cls(cfg.data_dir, train=train, download=cfg.download)
        except RuntimeError as e:
            raise _missing(name, cfg.data_dir, str(e).split(".")[0]) from None
        except OSError as e:  # download failures (no network) and unreadable files
            raise _missing(name, cfg.data_dir, f"{type(e).__name__}: {e}") from None
        data = torch.as_tensor(np.asarray(ds.data))
        data = data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2)
        splits += [data.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)]
    return (*splits, [str(c) for c in ds.classes])


def _cifar10_files_class():
    from torchvision.datasets import CIFAR10

    class Cifar10Files(CIFAR10):
        """CIFAR-10 in its official on-disk layout. torchvision checks the md5 of the archive when it downloads
        it; reading accepts any batch files in that layout, so re-packed or subset copies open too."""

        def _check_integrity(self) -> bool:
            return all(
                os.path.isfile(os.path.join(self.root, self.base_folder, f))
                for f, _ in self.train_list + self.test_list
            )

        def _load_meta(self) -> None:
            import pickle

            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            if not os.path.isfile(path):
                raise RuntimeError(f"Dataset metadata file {self.meta['filename']} not found")
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return Cifar10Files


def _load_image(path: str, mode: str):
    """The image at ``path`` in ``mode`` (fully decoded), or the reason it cannot be: unreadable, truncated, not an
    image, or a mode that does not convert to ``mode``."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later
            try:
                return img.convert(mode), None
            except (ValueError, OSError) as e:
                return None, f"its mode {img.mode!r} cannot become {mode!r} ({e})"
    except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"


def _read_folder(root: str, channels: int, img_size: int, skip_bad: bool = False):
    from torchvision.datasets import ImageFolder

    try:
        ds = ImageFolder(root)
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(
            f"no images found in folder dataset {root!r}: {e}. A folder dataset is a tree "
            f"root/<class>/<image>.png (optionally with train/ and test/ splits); "
            f"set --data-dir to its root"
        ) from None
    mode = "L" if channels == 1 else "RGB"
    images, labels, size, bad = [], [], None, []
    for path, label in ds.samples:
        img, why = _load_image(path, mode)
        if img is None:
            bad.append((path, why))
            continue
        if img_size and img.size != (img_size, img_size):
            img = img.resize((img_size, img_size), resample=3)  # bicubic, as torchvision's Resize
        arr = np.asarray(img, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if size is None:
            size = arr.shape
        elif arr.shape != size:
            raise DataError(
                f"folder dataset images differ in size ({path} is {arr.shape[1:]}, earlier ones "
                f"{size[1:]}); pass --img-size N to resize them all to N x N"
            )
        images.append(arr)
        labels.append(label)
    if bad and not skip_bad:
        shown = "; ".join(f"{p} ({why})" for p, why in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(
            f"folder dataset {root!r}: {len(bad)} of {len(ds.samples)} image file(s) cannot be read as "
            f"{'greyscale' if channels == 1 else 'RGB'} images: {shown}{more}. Replace or delete them, or pass "
            f"--skip-bad-images to train without them"
        )
    if bad:
        print(f"skipped {len(bad)} unreadable image file(s) in {root!r} (--skip-bad-images), first: {bad[0][0]}")
    if not images:
        raise DataError(f"folder dataset {root!r}: none of its {len(ds.samples)} image file(s) could be read")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64), list(ds.classes)


def _folder(cfg: Config):
    root = cfg.data_dir
    if not os.path.isdir(root):
        raise DataError(
            f"folder dataset root --data-dir {root!r} does not exist; point it at a folder of class "
            f"sub-folders (root/<class>/<image>.png, optionally split into train/ and test/)"
        )
    channels = cfg.channels or 3
    if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
        xtr, ytr, classes = _read_folder(os.path.join(root, "train"), channels, cfg.img_size, cfg.skip_bad_images)
        xte, yte, classes_te = _read_folder(os.path.join(root, "test"), channels, cfg.img_size, cfg.skip_bad_images)
        if classes_te != classes:
            raise DataError(f"folder dataset {root!r}: train/ classes {classes} differ from test/ classes {classes_te}")
        return xtr, ytr, xte, yte, classes
    x, y, classes = _read_folder(root, channels, cfg.img_size, cfg.skip_bad_images)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    n_test = max(1, len(y) // 10)
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]], classes


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2.functional import resize

    if tuple(images.shape[-2:]) == (size, size):
        return images
    return resize(images, [size, size], antialias=True)


def load_data(cfg: Config) -> ImageData:
    """Load the configured dataset's train and test splits into memory as uint8 tensors."""
    if cfg.dataset == "digits":
        parts = _digits()
    elif cfg.dataset == "folder":
        parts = _folder(cfg)
    else:
        parts = _torchvision(cfg)
    xtr, ytr, xte, yte, classes = parts
    if cfg.channels and cfg.dataset != "folder" and cfg.channels != xtr.shape[1]:
        raise DataError(
            f"--channels {cfg.channels} does not match dataset {cfg.dataset!r}, which has "
            f"{xtr.shape[1]} channel(s); --channels applies to --dataset folder"
        )
    if cfg.train_limit:
        xtr, ytr = xtr[: cfg.train_limit], ytr[: cfg.train_limit]
    if cfg.test_limit:
        xte, yte = xte[: cfg.test_limit], yte[: cfg.test_limit]
    if cfg.img_size:
        xtr, xte = _resize(xtr, cfg.img_size), _resize(xte, cfg.img_size)
    if len(ytr) == 0 or len(yte) == 0:
        raise DataError(f"dataset {cfg.dataset!r} has an empty train or test split")
    return ImageData(xtr.contiguous(), ytr, xte.contiguous(), yte, classes)


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
):
    """DataLoader whose order is a pure function of (seed, epoch): call ``loader.sampler.set_epoch(e)``.

    A DistributedSampler is used even in one process so that the data order, and so a resumed run's loss
    curve, does not depend on how many processes share the work.
    """
    ds = TensorDataset(images, labels)
    sampler = DistributedSampler(
        ds,
        num_replicas=world_size,
        rank=rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=shuffle and len(ds) >= batch_size * world_size,
    )
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=shuffle and len(ds) >= batch_size * world_size,
        persistent_workers=num_workers > 0,
    )

"""Dataset wiring: each loader opens files in the real on-disk format (written here), the real MNIST folder tree
in ../shared/data, the embedded digits, and missing data gives the clear offline error."""

import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from pixelcnn.config import Config
from pixelcnn.data import DataError, load_data, make_loader


def write_idx(folder, prefix, images, labels):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
    with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_reads_idx_files(tmp_path, dataset, folder):
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    tr, te = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(raw, "train", tr, np.array([1, 2, 3, 4, 5]))
    write_idx(raw, "t10k", te, np.array([9, 8, 7]))
    d = load_data(Config(dataset=dataset, data_dir=str(tmp_path)))
    assert d.train_images.dtype == torch.uint8 and d.train_images.shape == (5, 1, 28, 28)
    assert torch.equal(d.train_images[:, 0], torch.from_numpy(tr))
    assert torch.equal(d.test_images[:, 0], torch.from_numpy(te))
    assert d.test_labels.tolist() == [9, 8, 7] and d.num_classes == 10


def test_cifar10_reads_python_batches(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        batches[name] = data
        with open(root / name, "wb") as f:
            pickle.dump({"data": data, "labels": [3, 7]}, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
            f,
        )
    d = load_data(Config(dataset="cifar10", data_dir=str(tmp_path), img_size=16))
    assert d.train_images.shape == (10, 3, 16, 16) and d.test_images.shape == (2, 3, 16, 16)
    full = load_data(Config(dataset="cifar10", data_dir=str(tmp_path)))
    # CHW order of the official format: the first 1024 bytes are the red plane
    assert torch.equal(full.test_images[0, 0].reshape(-1), torch.from_numpy(batches["test_batch"][0, :1024]))
    assert full.class_names[3] == "cat"


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_dataset_offline_names_data_dir_and_download(tmp_path, dataset):
    with pytest.raises(DataError, match=r"--data-dir.*--download"):
        load_data(Config(dataset=dataset, data_dir=str(tmp_path / "empty")))


def test_missing_folder_dataset_names_data_dir(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        load_data(Config(dataset="folder", data_dir=str(tmp_path / "nothing")))


def test_real_mnist_folder_tree_loads_with_folder_labels(shared_data):
    d = load_data(Config(dataset="folder", data_dir=os.path.join(shared_data, "mnist-t10k-folder"), channels=1))
    assert d.train_images.shape == (9000, 1, 28, 28) and d.test_images.shape == (1000, 1, 28, 28)
    assert d.class_names == [str(i) for i in range(10)]
    assert sorted(d.test_labels.unique().tolist()) == list(range(10))
    assert 20 < d.train_images.float().mean() < 60  # real digits: mostly black background


def test_colour_folder_dataset_and_resize(tmp_path):
    rng = np.random.default_rng(2)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_data(Config(dataset="folder", data_dir=str(tmp_path), channels=3, img_size=8))
    assert d.channels == 3 and d.image_size == (8, 8) and d.class_names == ["cats", "dogs"]
    assert len(d.train_labels) + len(d.test_labels) == 10
    with pytest.raises(DataError, match="--img-size"):
        (tmp_path / "dogs" / "odd.png").unlink(missing_ok=True)
        Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(tmp_path / "dogs" / "odd.png")
        load_data(Config(dataset="folder", data_dir=str(tmp_path), channels=3))


def test_digits_default_is_embedded_and_scaled_to_full_range():
    d = load_data(Config())
    assert d.train_images.shape[1:] == (1, 8, 8) and d.num_classes == 10
    assert d.train_images.max() == 255 and len(d.train_labels) + len(d.test_labels) == 1797


def test_loader_order_depends_only_on_seed_and_epoch():
    x, y = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1), torch.arange(40)

    def order(epoch):
        loader = make_loader(x, y, 8, True, seed=3)
        loader.sampler.set_epoch(epoch)
        return torch.cat([b[1] for b in loader]).tolist()

    assert order(0) == order(0) and order(0) != order(1) and sorted(order(1)) == list(range(40))

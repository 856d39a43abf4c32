"""Checkpoint safety: atomic writes, weights_only loads, clear errors for corrupt, foreign and mismatched files."""

import os

import pytest
import torch

from pixelcnn.checkpoint import CheckpointError, check_compatible, load_checkpoint, load_model, save_checkpoint
from pixelcnn.config import Config, ModelConfig
from pixelcnn.model import PixelCNN


def config(hidden=64, blocks=5, **kw) -> Config:
    return Config(model=ModelConfig(channels=1, image_size=(8, 8), num_classes=10, hidden=hidden, blocks=blocks), **kw)


def saved_model(tmp_path, cfg=config()):
    model = PixelCNN(cfg.model)
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, {"config": cfg.to_dict(), "model": model.state_dict()})
    return path, model


def test_round_trip_rebuilds_identical_model(tmp_path):
    path, model = saved_model(tmp_path, config(hidden=8, blocks=1))
    loaded, cfg, _ = load_model(path)
    x, y = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8), torch.tensor([1, 2])
    assert cfg.model.hidden == 8 and torch.equal(loaded(x, y), model.eval()(x, y))
    assert os.listdir(tmp_path) == ["m.pt"]  # no temp file left behind


def test_truncated_checkpoint_is_reported_corrupt(tmp_path):
    path, _ = saved_model(tmp_path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_payload_is_refused_by_weights_only(tmp_path):
    path = str(tmp_path / "evil.pt")
    torch.save({"format": "pixelcnn-checkpoint-v1", "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path)


def test_foreign_file_and_missing_file(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pixelcnn checkpoint"):
        load_checkpoint(str(tmp_path / "other.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.pt"))


def test_other_architecture_is_named_in_the_error(tmp_path):
    path, _ = saved_model(tmp_path, config(hidden=8))
    with pytest.raises(CheckpointError, match="model.hidden: checkpoint 8 vs requested 16"):
        check_compatible(load_checkpoint(path), config(hidden=16), path)
    with pytest.raises(CheckpointError, match="dataset"):
        check_compatible(load_checkpoint(path), config(hidden=8, dataset="mnist"), path)


def test_failed_write_keeps_previous_file(tmp_path):
    path, _ = saved_model(tmp_path)
    before = open(path, "rb").read()
    with pytest.raises((AttributeError, TypeError)):
        save_checkpoint(path, {"bad": lambda: 0})  # cannot be pickled
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["m.pt"]


def test_checkpoint_of_the_flat_config_layout_still_loads(tmp_path):
    """Checkpoints written before ModelConfig kept hidden_channels/residual_blocks/kernel_size in the run config and
    the data's channels/size/classes beside it."""
    model = PixelCNN(ModelConfig(channels=1, image_size=(8, 8), num_classes=10, hidden=8, blocks=1, kernel_size=5))
    old = {k: v for k, v in Config().to_dict().items() if k != "model"}
    old.update(hidden_channels=8, residual_blocks=1, kernel_size=5)
    path = str(tmp_path / "old.pt")
    save_checkpoint(
        path,
        {"config": old, "model": model.state_dict(), "data": {"channels": 1, "image_size": [8, 8], "num_classes": 10}},
    )
    loaded, cfg, meta = load_model(path)
    assert cfg.model == model.config and meta["num_classes"] == 10
    x, y = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8), torch.tensor([1, 2])
    assert torch.equal(loaded(x, y), model.eval()(x, y))
    save_checkpoint(path, {"config": old, "model": model.state_dict()})  # no data metadata: a clear refusal
    with pytest.raises(CheckpointError, match="stored config is invalid.*data metadata"):
        load_model(path)

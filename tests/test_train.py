"""Training CLI end to end on the real MNIST images (../shared/data, `--dataset folder`)."""

import csv
import os

import pytest

from pixelcnn import train as train_cli

OUTPUTS = ("config.json", "last.pt", "best.pt", "metrics.csv", "loss_curve.png", "samples/epoch_001.png")
IMPROVEMENT = 4.0  # bits/dim below the 8.0 of the uniform initial model after 2 short epochs


def cli(save_dir, shared_data, *extra):
    return [
        "--dataset",
        "folder",
        "--channels",
        "1",
        "--data-dir",
        os.path.join(shared_data, "mnist-t10k-folder"),
        "--train-limit",
        "640",
        "--test-limit",
        "200",
        "--hidden",
        "16",
        "--blocks",
        "2",
        "--batch-size",
        "32",
        "--epochs",
        "2",
        "--n-per-class",
        "1",
        "--save-dir",
        str(save_dir),
        "--model-name",
        "m",
        *extra,
    ]


def metrics(run):
    with open(os.path.join(run, "metrics.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [[], ["--compile"], ["--arch", "gated", "--compile"]], ids=["eager", "compile", "gated-compile"]
)
def test_short_run_on_real_mnist_lowers_bits_per_dim_and_writes_outputs(tmp_path, shared_data, extra):
    argv = cli(tmp_path, shared_data) + extra
    assert train_cli.main(argv) == 0
    run = tmp_path / "m"
    for name in OUTPUTS + ("samples/epoch_002.png",):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    rows = metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_bpd"]) < 8.0 - IMPROVEMENT, rows
    assert float(rows[-1]["images_per_s"]) > 0
    assert not [p for p in os.listdir(run) if p.startswith(".tmp")]


@pytest.mark.slow
def test_resume_continues_from_the_last_epoch(tmp_path, shared_data):
    assert train_cli.main(cli(tmp_path, shared_data, "--epochs", "1")) == 0
    first = metrics(tmp_path / "m")
    assert train_cli.main(cli(tmp_path, shared_data, "--epochs", "2", "--resume")) == 0
    rows = metrics(tmp_path / "m")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[0] == first[0]  # epoch 1 kept, not retrained
    assert int(rows[1]["step"]) == 2 * int(rows[0]["step"])


def test_bad_config_file_and_temperature_give_clear_errors(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text('{"model": {"hidden": "wide"}, "epochs": 1}')
    assert train_cli.main(["--config", str(bad)]) == 2
    assert "'hidden' must be int" in capsys.readouterr().err
    bad.write_text('{"hidden_channels": 8}')  # the flat key of old configs names its new place
    assert train_cli.main(["--config", str(bad)]) == 2
    assert "'hidden_channels' is now 'model.hidden'" in capsys.readouterr().err
    bad.write_text('{"hiden_channels": 8}')
    assert train_cli.main(["--config", str(bad)]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert train_cli.main(["--temperature", "0", "--save-dir", str(tmp_path)]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "pixelcnn").exists()

"""Training CLI end to end on the real MNIST images (../shared/data, `--dataset folder`)."""

import csv
import os
import socket

import pytest
import torch

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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gated_two_process_gloo_first_step_gradients_equal_one_process(tmp_path):
    """DDP on the gated architecture: two gloo processes on half batches average to the one-process gradients."""
    import torch.multiprocessing as mp

    from tests.ddp_worker import first_step_grads

    mp.spawn(first_step_grads, args=(2, free_port(), str(tmp_path), 32, "gated"), nprocs=2, join=True)
    first_step_grads(0, 1, free_port(), str(tmp_path), 32, "gated")
    g2, g1 = torch.load(tmp_path / "grads2.pt"), torch.load(tmp_path / "grads1.pt")
    assert g1.keys() == g2.keys() and any(name.startswith("layers.") for name in g1)
    for name in g1:
        assert torch.allclose(g1[name], g2[name], rtol=1e-4, atol=1e-6), name
    assert all(g.abs().sum() > 0 for name, g in g1.items() if "weight" in name and "embed" not in name)


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_amp_step_tracks_the_fp32_step(arch):
    """--amp (bf16 autocast: ``pixelcnn.train.loss_fn`` on CUDA; on CPU the same autocast on the CPU device, the
    Triton op in the interpreter): the loss within 2 % of the fp32 loss; fp32 gradients on the fp32 parameters,
    pointing the fp32 gradient's way (cosine >= 0.95); the Triton op's bf16 gradients no further from fp32 than
    twice what the reference path's bf16 (PyTorch's convolutions) loses, plus 1 % of the gradient's norm (5 % in the
    interpreter)."""
    from pixelcnn.likelihood import nll_nats
    from pixelcnn.ops.precision import conv_precision
    from pixelcnn.train import loss_fn
    from tests.helpers import random_model

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    model = random_model(
        channels=1,
        num_classes=10,
        hidden=8,
        blocks=1,
        kernel_size=5,
        size=(6, 6),
        dtype=torch.float32,
        std=0.1,
        arch=arch,
    ).to(device)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (4, 1, 6, 6), generator=g, dtype=torch.uint8).to(device)
    labels = (torch.arange(4) % 10).to(device)

    def step(impl, amp):
        model.set_conv_impl(impl).zero_grad()
        if cuda:
            loss = loss_fn(model, image, labels, amp)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                logits = model(image, labels)
            loss = nll_nats(logits, image)
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}

    # Triton's interpreter converts fp32 to bf16 by truncation, a GPU rounds to nearest (tests/test_triton_masked_conv)
    slack = 1e-2 if cuda else 5e-2
    impls = ["reference"] + (["triton"] if cuda or os.environ.get("TRITON_INTERPRET") == "1" else [])
    with conv_precision("ieee"):  # the fp32 side exact, so the gap is bf16's
        fp32_loss, fp32 = step("reference", False)
        runs = {impl: step(impl, True) for impl in impls}
    for impl, (amp_loss, grads) in runs.items():
        assert abs(amp_loss - fp32_loss) <= 2e-2 * abs(fp32_loss), impl
        for name, want in fp32.items():
            got, ref = grads[name], runs["reference"][1][name]
            assert got.dtype == torch.float32 and torch.isfinite(got).all(), (impl, name)
            if want.norm() > 0:
                assert torch.cosine_similarity(got.flatten(), want.flatten(), dim=0) >= 0.95, (impl, name)
                assert (got - want).norm() <= 2 * (ref - want).norm() + slack * want.norm(), (impl, name)

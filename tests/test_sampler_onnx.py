"""The ONNX sampler model (export/sampler.py): one ONNX Runtime run samples whole images, equal to the Python cached
sampler for the same uniforms (docs/DESIGN.md §5), completes images keeping every known sub-pixel, and its Python
front-end (export/ort_sampler.py) rejects bad inputs before anything runs or is written."""

import os

import numpy as np
import pytest
import torch

from export.__main__ import main as export_main
from export.onnx import ExportError, export_sampler_onnx, export_step_onnx
from export.ort_sampler import OrtSampler
from export.ort_sampler import main as ort_sampler_main
from export.parity import BOUNDARY_TOL, boundary_distance
from pixelcnn.draw import draw_values
from pixelcnn.sampling import draw_uniforms, sample
from tests.helpers import random_model, write_checkpoint

T = 0.75  # a float32 value: the graph's temperature input is float32


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    """Class-conditional colour model exported in float64."""
    model = random_model(channels=3, num_classes=4, hidden=8, blocks=2, kernel_size=5, size=(5, 6))
    path = export_sampler_onnx(model, str(tmp_path_factory.mktemp("colour") / "s.onnx"), precision="float64")
    return model, OrtSampler(path), path


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    """Unconditional grey model (no label input) exported in float64."""
    model = random_model(channels=1, num_classes=0, hidden=8, blocks=1, kernel_size=3, size=(6, 5))
    path = export_sampler_onnx(model, str(tmp_path_factory.mktemp("grey") / "s.onnx"), precision="float64")
    return model, OrtSampler(path), path


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """Class-conditional colour gated model exported in float64."""
    model = random_model(channels=3, num_classes=4, hidden=8, blocks=2, kernel_size=5, size=(5, 6), arch="gated")
    path = export_sampler_onnx(model, str(tmp_path_factory.mktemp("gated") / "s.onnx"), precision="float64")
    return model, OrtSampler(path), path


@pytest.fixture(scope="module")
def gated_grey(tmp_path_factory):
    """Unconditional grey gated model exported in float64."""
    model = random_model(channels=1, num_classes=0, hidden=8, blocks=1, kernel_size=3, size=(6, 5), arch="gated")
    path = export_sampler_onnx(model, str(tmp_path_factory.mktemp("gated_grey") / "s.onnx"), precision="float64")
    return model, OrtSampler(path), path


def uniforms(n, model, seed):
    return draw_uniforms((n, model.channels, *model.image_size), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fixture", ["colour", "gated"])
@pytest.mark.parametrize("n,temperature", [(1, 1.0), (3, T), (5, 0.5)])
def test_colour_sampler_model_equals_cached_sampler_in_float64(request, fixture, n, temperature):
    model, sampler, _ = request.getfixturevalue(fixture)
    labels = torch.tensor([3, 0, 1, 2, 1][:n])
    u = uniforms(n, model, seed=n)
    want = sample(model, labels, temperature, uniforms=u, method="cached")
    got = sampler.sample(u.numpy(), labels.numpy(), temperature)
    assert got.dtype == np.uint8 and got.shape == (n, 3, 5, 6)
    assert want.float().std() > 10  # a real spread of values
    np.testing.assert_array_equal(got, want.numpy())


@pytest.mark.parametrize("fixture", ["grey", "gated_grey"])
def test_unconditional_sampler_model_has_no_label_input_and_equals_cached(request, fixture):
    model, sampler, _ = request.getfixturevalue(fixture)
    assert sampler.inputs == ["uniforms", "temperature", "known", "known_mask"]
    u = uniforms(4, model, seed=7)
    want = sample(model, None, T, uniforms=u, method="cached", n=4)
    np.testing.assert_array_equal(sampler.sample(u.numpy(), None, T), want.numpy())


@pytest.mark.parametrize("fixture", ["colour", "grey", "gated", "gated_grey"])
def test_completion_keeps_known_subpixels_and_equals_python(request, fixture):
    model, sampler, _ = request.getfixturevalue(fixture)
    n, c, (h, w) = 3, model.channels, model.image_size
    labels = torch.tensor([1, 2, 0]) if model.num_classes else None
    given = sample(model, labels, T, uniforms=uniforms(n, model, seed=1), method="cached", n=n)
    mask = torch.zeros(n, c, h, w, dtype=torch.bool)
    mask[:, :, :2] = True  # the top two rows
    mask[1, 0, 3, 2] = True  # and single sub-pixels further down
    mask[2, c - 1, h - 1, w - 1] = True
    u = uniforms(n, model, seed=2)
    want = sample(model, labels, T, uniforms=u, method="cached", n=n, known=given, known_mask=mask)
    got = sampler.sample(u.numpy(), labels.numpy() if labels is not None else None, T, given.numpy(), mask.numpy())
    np.testing.assert_array_equal(got[mask.numpy()], given.numpy()[mask.numpy()])
    np.testing.assert_array_equal(got, want.numpy())
    plain = sampler.sample(u.numpy(), labels.numpy() if labels is not None else None, T)
    assert (plain[~mask.numpy()] != got[~mask.numpy()]).any()  # the known part changed what follows


def scans(graph):
    return [node for node in graph.node if node.op_type == "Scan"]


def body(node):
    return next(a.g for a in node.attribute if a.name == "body")


@pytest.mark.parametrize("fixture", ["colour", "gated"])
def test_the_sampler_is_a_scan_over_rows_around_a_scan_over_pixels_with_an_index_free_body(request, fixture):
    import onnx

    _, _, path = request.getfixturevalue(fixture)
    proto = onnx.load(path)
    (rows,) = scans(proto.graph)
    (pixels,) = scans(body(rows))
    ops = {node.op_type for node in body(pixels).node}
    # standard operators only, and none of the index arithmetic or cache scatters of a traced step
    assert all(node.domain in ("", "ai.onnx") for node in body(pixels).node)
    assert not ops & {"Loop", "Scan", "If", "ScatterND", "ScatterElements", "GatherND", "Mod", "Unsqueeze"}, ops
    assert {"Gemm", "CumSum"} <= ops
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["pixelcnn.graph"] == "sampler" and props["pixelcnn.channels"] == "3"
    assert props["pixelcnn.image_size"] == "[5, 6]" and props["pixelcnn.precision"] == "float64"
    assert [o.name for o in proto.graph.output] == ["image"]
    assert [i.name for i in proto.graph.input] == ["label", "uniforms", "temperature", "known", "known_mask"]


def test_default_model_sampler_body_has_at_most_100_nodes_per_subpixel():
    from export.sampler import sampler_proto

    model = random_model(channels=1, num_classes=10, hidden=64, blocks=5, kernel_size=7, size=(28, 28))
    (rows,) = scans(sampler_proto(model, torch.float32).graph)
    (pixels,) = scans(body(rows))
    assert len(body(pixels).node) <= 100, len(body(pixels).node)


def test_float32_sampler_model_agrees_except_at_cdf_boundaries(tmp_path):
    model = random_model(
        channels=1, num_classes=10, hidden=12, blocks=2, kernel_size=5, size=(8, 8), dtype=torch.float32
    )
    sampler = OrtSampler(export_sampler_onnx(model, str(tmp_path / "s32.onnx"), precision="float32"))
    n = 16
    labels = torch.arange(n) % 10
    u = uniforms(n, model, seed=3)
    want = sample(model, labels, T, uniforms=u, method="cached")
    got = torch.from_numpy(sampler.sample(u.numpy(), labels.numpy(), T))
    assert (got == want).float().mean() >= 0.999
    # every draw of the ONNX model, given its own image as context, is Python's draw or sits at a CDF boundary
    with torch.no_grad():
        logits = model(got, labels)  # [N, 256, C, H, W], teacher-forced on the ONNX images
    flat = logits.permute(0, 2, 3, 4, 1).reshape(-1, 256)
    python_draw = draw_values(flat, u.reshape(-1), T).to(torch.uint8)
    differ = python_draw != got.reshape(-1)
    if differ.any():
        d = boundary_distance(flat[differ], u.reshape(-1)[differ], T, python_draw[differ], got.reshape(-1)[differ])
        assert float(d.max()) < BOUNDARY_TOL, d


def test_front_end_rejects_bad_inputs_clearly(colour, tmp_path, capsys):
    model, sampler, path = colour
    u = uniforms(2, model, seed=0).numpy()
    labels = np.array([0, 1])
    with pytest.raises(ValueError, match=r"uniforms must be float32 \[N, 3, 5, 6\]"):
        sampler.sample(u[:, :, :, :5], labels)
    with pytest.raises(ValueError, match=r"uniforms must be float32 \[N, 3, 5, 6\], got float64"):
        sampler.sample(u.astype(np.float64), labels)
    with pytest.raises(ValueError, match=r"uniforms must lie in \[0, 1\)"):
        sampler.sample(u + 1, labels)
    with pytest.raises(ValueError, match="labels must lie in 0..3"):
        sampler.sample(u, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"labels must be int64 \[2\] in 0..3"):
        sampler.sample(u, None)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sampler.sample(u, labels, 0.0)
    known = np.zeros(u.shape, np.uint8)
    with pytest.raises(ValueError, match=r"known_mask must be bool \[2, 3, 5, 6\]"):
        sampler.sample(u, labels, 1.0, known, np.zeros((2, 3, 5, 5), bool))
    with pytest.raises(ValueError, match=r"known must be uint8 \[2, 3, 5, 6\]"):
        sampler.sample(u, labels, 1.0, known.astype(np.float32), np.zeros(u.shape, bool))
    with pytest.raises(ValueError, match="pass both known"):
        sampler.sample(u, labels, 1.0, known, None)
    step = export_step_onnx(
        random_model(channels=1, num_classes=0, hidden=4, blocks=1, kernel_size=3, size=(4, 4)),
        str(tmp_path / "step.onnx"),
    )
    with pytest.raises(ExportError, match="not a pixelcnn sampler model"):
        OrtSampler(step)

    np.save(tmp_path / "bad_u.npy", u[:, :1])
    out = tmp_path / "never.png"
    assert (
        ort_sampler_main([path, "--labels", "0", "1", "--uniforms", str(tmp_path / "bad_u.npy"), "--out", str(out)])
        == 2
    )
    assert "uniforms must be float32" in capsys.readouterr().err
    assert ort_sampler_main([path, "--labels", "0", "9", "--out", str(out)]) == 2
    assert "labels must lie in 0..3" in capsys.readouterr().err
    assert ort_sampler_main([path, "--labels", "0", "--out", str(tmp_path / "x.jpg")]) == 2
    assert "must end in .npy or .png" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "x.jpg").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_ort_sampler_cli_samples_and_completes(colour, tmp_path, capsys):
    model, _, path = colour
    u = uniforms(2, model, seed=4)
    np.save(tmp_path / "u.npy", u.numpy())
    out = tmp_path / "img.npy"
    assert (
        ort_sampler_main(
            [
                path,
                "--labels",
                "0",
                "2",
                "--uniforms",
                str(tmp_path / "u.npy"),
                "--temperature",
                str(T),
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "images/s" in capsys.readouterr().out
    want = sample(model, torch.tensor([0, 2]), T, uniforms=u, method="cached")
    np.testing.assert_array_equal(np.load(out), want.numpy())
    np.save(tmp_path / "given.npy", want.numpy())
    out2 = tmp_path / "completed.npy"
    assert (
        ort_sampler_main(
            [
                path,
                "--labels",
                "0",
                "2",
                "--complete",
                str(tmp_path / "given.npy"),
                "--keep-rows",
                "3",
                "--temperature",
                str(T),
                "--out",
                str(out2),
            ]
        )
        == 0
    )
    completed = np.load(out2)
    np.testing.assert_array_equal(completed[:, :, :3], want.numpy()[:, :, :3])
    assert ort_sampler_main([path, "--labels", "0", "--out", str(tmp_path / "grid.png")]) == 0


def test_export_cli_sampler_prints_parity_and_writes_one_file(tmp_path, capsys):
    path, _ = write_checkpoint(tmp_path, size=(6, 6), hidden=8, blocks=1, kernel_size=3)
    out = tmp_path / "s.onnx"
    assert export_main(["onnx", "--checkpoint", path, "--sampler", "--precision", "float64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0 of 216 sub-pixels differ" in printed and "kept" in printed and "-> OK" in printed, printed
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "s.onnx"]
    with pytest.raises(SystemExit):  # one graph per export
        export_main(["onnx", "--checkpoint", path, "--sampler", "--step"])
    assert "not allowed with argument" in capsys.readouterr().err

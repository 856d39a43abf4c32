"""Export in each format, reload, and parity against eager on real data; dynamic batch; clear errors."""

import os

import pytest

from export.__main__ import main as export_main
from export.__main__ import run as export_run
from export.onnx import ExportError, export_onnx, ort_runner, ort_session
from export.parity import BPD_TOL, LOGIT_TOL, compare, parity_inputs
from tests.helpers import write_checkpoint


def checkpoint(tmp_path, channels=1, size=(28, 28), num_classes=10, arch="pixelcnn"):
    return write_checkpoint(tmp_path, channels=channels, size=size, num_classes=num_classes, std=0.05, arch=arch)


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_export_reload_and_parity_on_real_mnist(tmp_path, shared_data, fmt, arch):
    path, model = checkpoint(tmp_path, arch=arch)
    r = export_run([fmt, "--checkpoint", path, "--out", str(tmp_path / f"m.{fmt}"), "--data", shared_data])
    assert r["ok"] and r["max_abs_logit_diff"] <= LOGIT_TOL and r["bpd_diff"] <= BPD_TOL, r
    weight_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert os.path.getsize(r["path"]) > 0.9 * weight_bytes  # weights inline, no side .data file
    assert sorted(os.listdir(tmp_path)) == sorted(["model.pt", f"m.{fmt}"])  # one file, nothing partial


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_onnx_colour_model_dynamic_batch_and_metadata(tmp_path, arch):
    import onnx

    _, model = checkpoint(tmp_path, channels=3, size=(8, 8), num_classes=4, arch=arch)
    out = str(tmp_path / "c.onnx")
    export_onnx(model, out)
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["pixelcnn.channels"] == "3" and props["pixelcnn.levels"] == "256"
    assert props["pixelcnn.image_size"] == "[8, 8]"
    run = ort_runner(ort_session(out))
    for batch in (1, 7):  # exported with batch 2
        image, label = parity_inputs(model, None, batch=batch)
        r = compare(run, model, image, label)
        assert r["ok"], r


def test_export_errors_are_clear_and_leave_no_file(tmp_path, capsys):
    path, _ = checkpoint(tmp_path)
    out = tmp_path / "x.onnx"
    assert export_main(["onnx", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint at all")
    assert export_main(["onnx", "--checkpoint", str(tmp_path / "foreign.pt"), "--out", str(out)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert export_main(["onnx", "--checkpoint", path, "--out", str(out), "--opset", "9"]) == 2
    assert "unsupported ONNX opset 9" in capsys.readouterr().err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    with pytest.raises(ExportError, match="onnxruntime-gpu"):
        ort_session(path, ["CUDAExecutionProvider"])

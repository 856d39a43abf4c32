"""The web demo (export/examples/web) in a real browser: headless Chromium, driven through puppeteer-core, loads the
page, which runs the sampler model with onnxruntime-web (wasm). For the same uniforms the page draws the same
images as pixelcnn.sampling.sample (sampling and completion), its canvases show exactly those images, and bad
inputs get clear errors from the page's front-end."""

import base64
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from export.__main__ import main as export_main
from pixelcnn.sampling import draw_uniforms, sample
from tests.helpers import write_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(ROOT, "export", "examples", "web")
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome")


def missing(reason: str):
    """Skip where the machine lacks the browser (or Node.js); under CI the test must run, so fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


def browser_command() -> tuple[str, str]:
    """(node, chromium) executables; skips or fails as ``missing`` says."""
    chromium = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUMS)), None)
    if chromium is None:
        missing(
            "no Chromium found: apt-get install chromium (make install does it as root), or set "
            "CHROMIUM=/path/to/chrome"
        )
    node = shutil.which("node")
    if node is None:
        missing("Node.js is not installed (apt-get install nodejs npm, then make install)")
    for package in ("onnxruntime-web", "puppeteer-core"):
        if not os.path.isdir(os.path.join(WEB, "node_modules", package)):
            pytest.fail(f"{package} is not installed: run `make install` (npm ci in {WEB})")
    return node, chromium


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def run_page(tmp_path, model_path, calls, ui=False, screenshot=None) -> dict:
    node, chromium = browser_command()
    out = tmp_path / "page"
    out.mkdir()
    job = {
        "model": model_path,
        "chromium": chromium,
        "out": str(out),
        "calls": calls,
        "ui": ui,
        "screenshot": screenshot,
        "timeout_ms": 240000,
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = subprocess.run(
        [node, os.path.join(WEB, "drive.mjs"), str(tmp_path / "job.json")], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert not [line for line in result["console"] if line.startswith(("pageerror", "error"))], result["console"]
    result["calls"] = {c["name"]: c for c in result["calls"]}
    result["out"] = out
    return result


def page_images(call: dict) -> np.ndarray:
    assert call["ok"], call
    return np.frombuffer(base64.b64decode(call["images_b64"]), np.uint8).reshape(call["shape"])


def grid(cells: np.ndarray, layout: dict) -> np.ndarray:
    """RGB picture of ``cells`` [M, C, H, W] as the page lays them out (``layout``: its cols, scale, gap,
    background), built here independently of the page's drawing code."""
    m, c, h, w = cells.shape
    cols, rows, s, gap = layout["cols"], layout["rows"], layout["scale"], layout["gap"]
    assert layout["count"] == m and rows == -(-m // cols)
    picture = np.empty((rows * (h * s + gap) + gap, cols * (w * s + gap) + gap, 3), np.uint8)
    picture[:] = layout["background"]
    rgb = np.repeat(cells, 3, axis=1) if c == 1 else cells
    for k in range(m):
        y, x = gap + (k // cols) * (h * s + gap), gap + (k % cols) * (w * s + gap)
        picture[y : y + h * s, x : x + w * s] = rgb[k].transpose(1, 2, 0).repeat(s, 0).repeat(s, 1)
    return picture


def canvas(result: dict, name: str) -> np.ndarray:
    return np.asarray(Image.open(result["out"] / f"{name}.png").convert("RGB"))


@pytest.fixture(
    scope="module",
    params=[
        (1, 3, (8, 8), "float32", "pixelcnn"),
        (3, 0, (5, 6), "float64", "pixelcnn"),
        (1, 3, (8, 8), "float32", "gated"),
        (3, 0, (5, 6), "float64", "gated"),
    ],
    ids=[
        "grey-conditional-float32",
        "rgb-uncond-float64",
        "gated-grey-conditional-float32",
        "gated-rgb-uncond-float64",
    ],
)
def sampler(request, tmp_path_factory):
    """(model in the export's precision, sampler ONNX path): a tiny random model and its one-call sampler export
    (float64: what the web demo serves; float32: the default export, which onnxruntime-web runs too)."""
    browser_command()  # skip (or fail under CI) before the export when there is no browser
    channels, num_classes, size, precision, arch = request.param
    folder = tmp_path_factory.mktemp("web")
    checkpoint, model = write_checkpoint(
        folder, channels=channels, size=size, num_classes=num_classes, hidden=8, blocks=2, kernel_size=5, arch=arch
    )
    path = str(folder / "sampler.onnx")
    assert export_main(["onnx", "--checkpoint", checkpoint, "--sampler", "--precision", precision, "--out", path]) == 0
    return model.to(getattr(torch, precision)).eval(), path


def test_page_draws_the_same_images_as_python(tmp_path, sampler):
    model, path = sampler
    c, (h, w), k = model.channels, model.image_size, model.num_classes
    gen = torch.Generator().manual_seed(11)
    n = 3
    labels = torch.tensor([0, 2, 1]) if k else None

    def feed(args_labels):
        return {"labels": args_labels.tolist()} if k else {"n": n}

    u1, u2, u3 = (draw_uniforms((n, c, h, w), gen) for _ in range(3))
    # completion: the top rows of Python samples kept, plus scattered sub-pixels below (any mask must work)
    given = sample(model, labels, uniforms=u3, method="cached", n=n)
    mask = torch.zeros(n, c, h, w, dtype=torch.bool)
    mask[:, :, : h // 2] = True
    mask |= torch.rand(n, c, h, w, generator=gen) < 0.15
    known = torch.where(mask, given, torch.randint(0, 256, given.shape, generator=gen, dtype=torch.uint8))
    calls = [
        {"name": "sample", "fn": "sample", "args": {**feed(labels), "temperature": 1.0, "uniforms_b64": b64(u1)}},
        {"name": "cold", "fn": "sample", "args": {**feed(labels), "temperature": 0.7, "uniforms_b64": b64(u2)}},
        {
            "name": "complete",
            "fn": "complete",
            "args": {
                **feed(labels),
                "temperature": 1.0,
                "uniforms_b64": b64(u1),
                "known_b64": b64(known),
                "knownMask_b64": b64(mask),
            },
        },
    ]
    result = run_page(tmp_path, path, calls, ui=True, screenshot=str(tmp_path / "shot.png"))
    assert result["info"]["channels"] == c and [result["info"]["height"], result["info"]["width"]] == [h, w]
    assert result["info"]["numClasses"] == k and result["info"]["crossOriginIsolated"]
    got = result["calls"]

    want = sample(model, labels, uniforms=u1, method="cached", n=n)
    np.testing.assert_array_equal(page_images(got["sample"]), want.numpy())
    # the page feeds the temperature as float32 (the sampler model's input), so Python samples at that value
    want_cold = sample(model, labels, float(np.float32(0.7)), uniforms=u2, method="cached", n=n)
    np.testing.assert_array_equal(page_images(got["cold"]), want_cold.numpy())
    completed = page_images(got["complete"])
    want_completed = sample(model, labels, uniforms=u1, method="cached", n=n, known=known, known_mask=mask)
    np.testing.assert_array_equal(completed, want_completed.numpy())
    assert (completed[mask.numpy()] == known.numpy()[mask.numpy()]).all()
    assert (completed != want.numpy()).any()  # the known sub-pixels changed the draws after them

    # what the page shows: the sampled grid, and the given part (dropped sub-pixels grey) beside the completions
    np.testing.assert_array_equal(canvas(result, "sample"), grid(want.numpy(), got["sample"]["layout"]))
    shown = np.where(mask[:1].numpy(), known[:1].numpy(), result["info"]["dropped"]).astype(np.uint8)
    np.testing.assert_array_equal(
        canvas(result, "complete"), grid(np.concatenate([shown, want_completed.numpy()]), got["complete"]["layout"])
    )

    # the buttons (sample, take the first sample, complete) ran without error, and the screenshot shows the page
    assert result["status"].startswith("Completed"), result["status"]
    with Image.open(tmp_path / "shot.png") as shot:
        assert shot.format == "PNG" and shot.width >= 800 and shot.height >= 600
    rate = n / (got["sample"]["ms"] / 1000)
    print(
        f"web page (onnxruntime-web wasm, {result['info']['threads']} threads): {rate:.1f} images/s at batch "
        f"{n}, {c}x{h}x{w}, hidden 8, 2 blocks (tiny test model)"
    )


def test_page_rejects_bad_input_with_clear_errors(tmp_path, sampler):
    model, path = sampler
    c, (h, w), k = model.channels, model.image_size, model.num_classes
    u = draw_uniforms((2, c, h, w), torch.Generator().manual_seed(0)).numpy()
    size = 2 * c * h * w
    base = {"labels": [0, 1]} if k else {"n": 2}
    full_mask = np.ones(size, np.uint8)
    calls = {
        "short_uniforms": (
            {**base, "uniforms_b64": b64(u.reshape(-1)[:-1])},
            f"uniforms must have shape [2, {c}, {h}, {w}] = {size} values (C-order), got {size - 1}",
        ),
        "uniform_one": ({**base, "uniforms_b64": b64(np.ones(size, np.float32))}, "uniforms must lie in [0, 1)"),
        "temperature": ({**base, "temperature": 0, "uniforms_b64": b64(u)}, "temperature must be a number > 0"),
        "mask_shape": (
            {
                **base,
                "uniforms_b64": b64(u),
                "known_b64": b64(np.zeros(size, np.uint8)),
                "knownMask_b64": b64(full_mask[:-c]),
            },
            f"knownMask must have shape [2, {c}, {h}, {w}] = {size} values",
        ),
        "known_alone": (
            {**base, "uniforms_b64": b64(u), "known_b64": b64(np.zeros(size, np.uint8))},
            "completion needs both known",
        ),
    }
    if k:
        calls["label_range"] = (
            {"labels": [0, k], "uniforms_b64": b64(u)},
            f"label {k} (image 1) is out of range: this model has {k} classes, labels 0..{k - 1}",
        )
        calls["label_missing"] = ({"n": 2, "uniforms_b64": b64(u)}, "labels are required")
    else:
        calls["labels_given"] = ({"labels": [0, 0], "uniforms_b64": b64(u)}, "this model is unconditional")
    jobs = [
        {"name": name, "fn": "complete" if "knownMask_b64" in args else "sample", "args": args}
        for name, (args, _) in calls.items()
    ]
    result = run_page(tmp_path, path, jobs)
    for name, (_, message) in calls.items():
        got = result["calls"][name]
        assert not got["ok"] and message in got["error"], (name, got)
        assert got["status"] == f"Error: {got['error']}"  # the page shows it too

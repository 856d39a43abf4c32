"""ONNX export of the full model (dynamo exporter, dynamic batch, one self-contained file) with metadata props,
``onnx.checker`` and ONNX Runtime parity right after writing."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import Optional

import torch

from export import sampler as sampler_graph
from export.step import StepModule, example_step_inputs, input_names, output_names
from export.wrapper import ExportModule, example_inputs
from pixelcnn.atomic import atomic_path

MIN_OPSET, MAX_OPSET = 18, 23
DEFAULT_OPSET = 18


class ExportError(ValueError):
    """The export could not be done as asked (message names the problem and the fix)."""


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"unsupported ONNX opset {opset}: the dynamo exporter supports {MIN_OPSET}..{MAX_OPSET}; "
            f"pass --opset {DEFAULT_OPSET}"
        )


def metadata(model, cfg_dict: Optional[dict] = None, config_hash: str = "") -> dict:
    return {
        "pixelcnn.image_size": json.dumps(list(model.image_size)),
        "pixelcnn.channels": str(model.channels),
        "pixelcnn.num_classes": str(model.num_classes),
        "pixelcnn.levels": "256",
        "pixelcnn.normalisation": "x / 127.5 - 1 applied inside the graph; input is uint8 0..255",
        "pixelcnn.input_layout": "image uint8 [N, C, H, W], label int64 [N]",
        "pixelcnn.output_layout": "logits float32 [N, 256, C, H, W]; softmax over dim 1",
        "pixelcnn.config": json.dumps(cfg_dict or {}, sort_keys=True),
        "pixelcnn.config_hash": config_hash,
    }


def export_onnx(model, path: str, opset: int = DEFAULT_OPSET, props: Optional[dict] = None) -> str:
    """Write ``path`` (atomically): inputs ``image``/``label``, output ``logits``, dynamic batch, weights inline."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    return _write(
        ExportModule(model),
        example_inputs(model, batch=2),
        ["image", "label"],
        ["logits"],
        ({0: batch}, {0: batch}),
        props or metadata(model),
        path,
        opset,
    )


def export_step_onnx(model, path: str, opset: int = DEFAULT_OPSET, props: Optional[dict] = None) -> str:
    """Write the one-sub-pixel step model (``export.step``) to ``path`` (atomically), dynamic batch."""
    step = StepModule(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    names = input_names(step)
    props = dict(props or metadata(model))
    props.update(step_metadata(step))
    # position: static; last and label: batch first; caches: batch last. The varargs after ``last`` form one tuple.
    rest = tuple({0: batch} if name == "label" else {3: batch} for name in names[2:])
    return _write(
        step,
        example_step_inputs(step, batch=2),
        names,
        output_names(step),
        (None, {0: batch}, rest),
        props,
        path,
        opset,
    )


def step_metadata(step: StepModule) -> dict:
    return {
        "pixelcnn.graph": "step",
        "pixelcnn.input_layout": "position int64 [3] (i, j, c); last uint8 [N]; "
        "label int64 [N] (class-conditional only); "
        "cache_k float32 [*cache_shapes[k], N] (batch last), zeros at the start",
        "pixelcnn.output_layout": "logits float32 [N, 256] for sub-pixel (i, j, c); cache_k_next",
        "pixelcnn.cache_shapes": json.dumps([list(s) for s in step.cache_shapes()]),
    }


PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def export_sampler_onnx(
    model, path: str, opset: int = DEFAULT_OPSET, props: Optional[dict] = None, precision: str = "float32"
) -> str:
    """Write the sampler model (``export.sampler``: whole images in one run, a Scan over rows around a Scan over
    pixels) to ``path`` (atomically), dynamic batch. ``precision``: the network's float type (the draw is float64)."""
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; pass one of {sorted(PRECISIONS)}")
    check_opset(opset)
    props = dict(props or metadata(model))
    props.update(sampler_metadata(model, precision))
    # written node by node from the cached step's weights (export/sampler.py says why), not traced
    return _save(sampler_graph.sampler_proto(model, PRECISIONS[precision], opset), props, path)


def sampler_metadata(model, precision: str) -> dict:
    label = "label int64 [N] (class-conditional only); " if model.num_classes > 0 else ""
    return {
        "pixelcnn.graph": "sampler",
        "pixelcnn.precision": precision,
        "pixelcnn.input_layout": f"{label}uniforms float32 [N, C, H, W] in [0, 1); temperature float32 []; "
        "known uint8 [N, C, H, W]; known_mask bool [N, C, H, W]",
        "pixelcnn.output_layout": "image uint8 [N, C, H, W]",
    }


def _write(module, args, inputs, outputs, dynamic_shapes, props, path, opset) -> str:
    check_opset(opset)
    module.eval()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # every batch-sized input shares one Dim; the exporter says so once per input
        warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape constraints")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=opset,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
            report=False,
        )
        _finish(program.model_proto, props, tmp)
    return path


def _save(proto, props, path) -> str:
    with atomic_path(path) as tmp:
        _finish(proto, props, tmp)
    return path


def _finish(proto, props, tmp) -> None:
    """Metadata props, the full ONNX check, then one self-contained file at ``tmp``."""
    import onnx

    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, tmp, save_as_external_data=False)
    if os.path.exists(tmp + ".data"):
        raise ExportError("the ONNX exporter wrote external data; the model must stay one file")


def ort_session(path: str, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0):
    """An ONNX Runtime session on ``providers``; ``threads``: intra-op threads (0 = ONNX Runtime's default, one per
    core; the sampler model's loop runs many tiny ops, which one thread often runs faster on a busy machine)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ExportError(
            f"ONNX Runtime providers {missing} are not available here (have {available}); for "
            f"CUDAExecutionProvider install onnxruntime-gpu (pip install 'pixelcnn[gpu]') on a GPU "
            f"machine"
        )
    opts = []
    for p in providers:
        opts.append((p, {"cudnn_conv_algo_search": "EXHAUSTIVE"}) if p == "CUDAExecutionProvider" else p)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=opts)


def ort_runner(session):
    def run(image: torch.Tensor, label: torch.Tensor):
        feeds = {"image": image.numpy(), "label": label.numpy()}
        feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
        return session.run(["logits"], feeds)[0]

    return run

"""torch.export (.pt2) export with a dynamic batch dimension: the format to prefer for PyTorch runtimes."""

from __future__ import annotations

import torch

from export.wrapper import ExportModule, example_inputs
from pixelcnn.atomic import atomic_path


def export_pt2(model, path: str) -> str:
    module = ExportModule(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        module, example_inputs(model, batch=2), dynamic_shapes={"image": {0: batch}, "label": {0: batch}}
    )
    with atomic_path(path) as tmp:
        torch.export.save(program, tmp)
    return path


def load_pt2(path: str):
    return torch.export.load(path).module()

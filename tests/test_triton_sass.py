"""Static proof of the Triton masked-conv kernels without a GPU: compile for sm_90 and sm_80 with Triton's
ahead-of-time path, disassemble the cubin (cuobjdump, shipped in the triton wheel) and check what a GPU would run:
tensor-core instructions (HGMMA / HMMA) in every bf16 / fp16 / TF32 kernel, no register spills, shared memory within
the arch's limit, vector (not scalar 16-bit) global loads in the main loop, a reasonable compile time
(docs/DESIGN.md §6). ``benchmarks.triton_sass`` runs in a subprocess when the tests use Triton's interpreter."""

import json
import os

import pytest

triton = pytest.importorskip("triton")

from benchmarks import triton_sass as ts  # noqa: E402
from pixelcnn.ops import triton_masked_conv as tmc  # noqa: E402

MAX_COMPILE_S = 120  # per kernel on a busy 2-core machine (the old unrolled IEEE kernel took 84 s on its own)
# each kernel, each dtype, both arches, the folded first layer and per-tap layers
SUBSET = [
    "forward:3x3B-h256:bf16:90",
    "forward:7x7A-C3:tf32:80",
    "grad_input:3x3B-h64:fp16:90",
    "grad_input:3x3B-h256:tf32:90",
    "grad_weight:3x3B-h64:bf16:80",
    "grad_weight:7x7A-C1:tf32:90",
]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(os.path.join(ts.BIN, "cuobjdump")), reason="triton without cuobjdump"),
]


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sass")
    argv = ["--case", *SUBSET, "--json", str(out / "t.json"), "--markdown", str(out / "t.md"), "--dump", str(out)]
    assert ts.main(argv) == 0
    return out, json.loads((out / "t.json").read_text())


def assert_fast_kernel(row):
    where = f"{row['kernel']} {row['shape']} {row['dtype']} sm_{row['arch']} {row['config']}"
    assert row["spill_bytes"] == 0 and row["local_ops"] == 0, f"{where}: spills ({row})"
    assert 0 < row["shared"] <= ts.SMEM_LIMIT[row["arch"]], f"{where}: shared memory {row['shared']}"
    assert row["hgmma"] + row["hmma"] > 0, f"{where}: no tensor-core instruction"
    assert row["loop_scalar16_loads"] == 0, f"{where}: scalar loads ({row})"
    # the known gap (benchmarks/results/triton-sass.md): TF32 grad_weight on sm_90 (wgmma) loads 4-byte LDGSTS
    if not (row["kernel"] == "grad_weight" and row["dtype"] == "tf32" and row["arch"] == 90):
        assert row["loop_vector_loads"] > 0, f"{where}: no vector loads in the loop ({row})"
    assert row["compile_s"] < MAX_COMPILE_S, f"{where}: compiled in {row['compile_s']} s"


def test_every_kernel_compiles_to_tensor_cores_without_spills(subset):
    _, rows = subset
    assert [f"{r['kernel']}:{r['shape']}:{r['dtype']}:{r['arch']}" for r in rows] == SUBSET
    for row in rows:
        assert_fast_kernel(row)
        warps = int(row["config"].split("w")[1].split("s")[0])
        if row["arch"] == 90 and warps >= 4:  # grad_weight of the folded first layer included
            assert row["hgmma"] > 0, f"sm_90 kernel with a whole warpgroup did not use wgmma: {row}"


def test_cli_writes_table_and_cubins(subset):
    out, _ = subset
    md = (out / "t.md").read_text()
    assert "ESTIMATE" in md and "| forward | 3x3B-h256 | bf16 | 90 |" in md
    assert (out / "forward-3x3B-h256-bf16-sm90.cubin").stat().st_size > 0
    with pytest.raises(SystemExit):
        ts.main(["--arch", "75"])


def test_no_autotune_config_spills(tmp_path):
    """Every config the autotuner may pick for the seed's widest layer compiles for sm_80 in TF32 (the most
    registers: operands pass through registers on their way to HMMA) without spills, within shared memory."""
    layer = next(layer for layer in ts.SEED_LAYERS if layer.name == "3x3B-h256")
    argv = ["--kernel", "forward", "grad_weight", "--shape", layer.name, "--dtype", "tf32", "--arch", "80"]
    assert ts.main([*argv, "--configs", "all", "--json", str(tmp_path / "all.json")]) == 0
    rows = json.loads((tmp_path / "all.json").read_text())
    expected = len(ts.picked_configs("forward", layer, "tf32")) + len(ts.picked_configs("grad_weight", layer, "tf32"))
    assert len(rows) == expected and expected >= len(tmc.CONFIGS) + len(tmc.WGRAD_CONFIGS) - 2
    for row in rows:
        assert_fast_kernel(row)


# the gated stacks' layers: the horizontal one with the link's residual in its epilogue, the folded first layers
GATED_SUBSET = [
    "forward:3x3hB-h40:tf32:90",
    "forward:3x3vB-h128:bf16:90",
    "grad_input:3x3hB-h128:fp16:80",
    "grad_weight:3x3hB-h128:bf16:90",
    "forward:7x7hA-C1:bf16:80",
    "grad_weight:7x7vA-C1:bf16:90",
]


def test_gated_layers_compile_to_tensor_cores_without_spills(tmp_path):
    assert ts.main(["--case", *GATED_SUBSET, "--json", str(tmp_path / "g.json")]) == 0
    rows = json.loads((tmp_path / "g.json").read_text())
    assert [f"{r['kernel']}:{r['shape']}:{r['dtype']}:{r['arch']}" for r in rows] == GATED_SUBSET
    for row in rows:
        where = f"{row['kernel']} {row['shape']} {row['dtype']} sm_{row['arch']} {row['config']}"
        assert row["spill_bytes"] == 0 and row["local_ops"] == 0, f"{where}: spills ({row})"
        assert 0 < row["shared"] <= ts.SMEM_LIMIT[row["arch"]], f"{where}: shared memory {row['shared']}"
        assert row["hgmma"] + row["hmma"] > 0, f"{where}: no tensor-core instruction"
        # a horizontal layer's loop has 2 (tap, K-chunk) steps, all in the pipeline's prologue: vector loads are
        # counted over the whole kernel
        assert row["vector_loads"] > 0 and row["loop_scalar16_loads"] == 0, f"{where}: scalar loads ({row})"
    live = {layer.name: layer.taps for layer in ts.GATED_LAYERS}
    assert live["3x3hB-h40"] == 2 and live["3x3vB-h40"] == 6 and live["7x7vA-C1"] == 21  # 1 x 2, 2 x 3, 3 x 7


def test_no_residual_epilogue_config_spills(tmp_path):
    """Every config the autotuner may pick for the gated horizontal layer (residual epilogue) in TF32 on sm_90, the
    most registers (fp32 accumulator, wgmma), compiles without spills: the wide fp32 tiles are pruned there."""
    argv = ["--kernel", "forward", "--shape", "3x3hB-h128", "--dtype", "tf32", "--arch", "90", "--configs", "all"]
    assert ts.main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) >= 3
    for row in rows:
        assert row["spill_bytes"] == 0 and row["local_ops"] == 0, row

"""Static proof of the Triton masked-conv kernels without a GPU: compile for sm_90 and sm_80 with Triton's
ahead-of-time path, disassemble the cubin (cuobjdump, shipped in the triton wheel) and check what a GPU would run:
tensor-core instructions (HGMMA / HMMA) in every bf16 / fp16 / TF32 kernel, no register spills, shared memory within
the arch's limit, vector (not scalar 16-bit) global loads, and a reasonable compile time (docs/DESIGN.md §6)."""

import json
import os

import pytest

triton = pytest.importorskip("triton")

from benchmarks import triton_sass as ts  # noqa: E402
from pixelcnn.ops import triton_masked_conv as tmc  # noqa: E402

LAYERS = {layer.name: layer for layer in ts.SEED_LAYERS}
MAX_COMPILE_S = 120  # per kernel on a busy 2-core machine (the old unrolled IEEE kernel took 84 s on its own)


def _tool_missing():
    return not os.path.exists(os.path.join(ts.BIN, "cuobjdump"))


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_tool_missing(), reason="triton wheel without cuobjdump")]


def assert_fast_kernel(row, arch):
    where = f"{row['kernel']} {row['shape']} {row['dtype']} sm_{arch} {row['config']}"
    assert row["spill_bytes"] == 0 and row["local_ops"] == 0, f"{where}: spills ({row})"
    assert 0 < row["shared"] <= ts.SMEM_LIMIT[arch], f"{where}: shared memory {row['shared']}"
    assert row["hgmma"] + row["hmma"] > 0, f"{where}: no tensor-core instruction"
    assert row["vector_loads"] > 0 and row["scalar16_loads"] == 0, f"{where}: scalar loads ({row})"
    assert row["compile_s"] < MAX_COMPILE_S, f"{where}: compiled in {row['compile_s']} s"


# a subset covering each kernel, each dtype, both arches and both the folded first layer and a per-tap layer
SUBSET = [
    ("forward", "3x3B-h256", "bf16", 90),
    ("forward", "7x7A-C3", "tf32", 80),
    ("grad_input", "3x3B-h64", "fp16", 90),
    ("grad_input", "3x3B-h256", "tf32", 90),
    ("grad_weight", "3x3B-h64", "bf16", 80),
    ("grad_weight", "7x7A-C1", "tf32", 90),
]


@pytest.mark.parametrize("kernel,shape,dtype,arch", SUBSET, ids=["-".join(map(str, s)) for s in SUBSET])
def test_kernel_compiles_to_tensor_cores_without_spills(kernel, shape, dtype, arch):
    (row,) = ts.rows([kernel], [LAYERS[shape]], [dtype], [arch], log=open(os.devnull, "w"))
    assert_fast_kernel(row, arch)
    if arch == 90 and row["config"].split("w")[1][0] in "48":  # 4 or 8 warps: one warpgroup or more
        assert row["hgmma"] > 0, f"sm_90 kernel with >= 4 warps did not use wgmma: {row}"


@pytest.mark.parametrize(
    "kind,index", [("conv", i) for i in range(len(tmc.CONFIGS))] + [("wgrad", i) for i in range(len(tmc.WGRAD_CONFIGS))]
)
def test_no_autotune_config_spills(kind, index):
    """Every config the autotuner may pick compiles for sm_80 in TF32 (the most registers: operands pass through
    registers on the way to HMMA) without spills and within shared memory."""
    cfg = (tmc.CONFIGS if kind == "conv" else tmc.WGRAD_CONFIGS)[index]
    kernel = "forward" if kind == "conv" else "grad_weight"
    ck = ts.compile_kernel(kernel, LAYERS["3x3B-h256"], "tf32", 80, cfg)
    stats = ts.sass_stats(ck.asm["cubin"])
    assert stats["spill_bytes"] == 0 and stats["local_ops"] == 0, (ts.config_name(cfg), stats)
    assert ck.metadata.shared <= ts.SMEM_LIMIT[80], (ts.config_name(cfg), ck.metadata.shared)
    assert stats["hmma"] > 0, (ts.config_name(cfg), stats)


def test_cli_writes_table_json_and_cubins(tmp_path):
    out_json, out_md, dump = tmp_path / "t.json", tmp_path / "t.md", tmp_path / "cubins"
    assert (
        ts.main(
            [
                "--arch",
                "90",
                "--dtype",
                "bf16",
                "--kernel",
                "forward",
                "--shape",
                "3x3B-h64",
                "--json",
                str(out_json),
                "--markdown",
                str(out_md),
                "--dump",
                str(dump),
            ]
        )
        == 0
    )
    (row,) = json.loads(out_json.read_text())
    assert (row["kernel"], row["shape"], row["dtype"], row["arch"]) == ("forward", "3x3B-h64", "bf16", 90)
    assert "ESTIMATE" in out_md.read_text() and "| forward | 3x3B-h64 | bf16 | 90 |" in out_md.read_text()
    assert (dump / "forward-3x3B-h64-bf16-sm90.cubin").stat().st_size > 0
    with pytest.raises(SystemExit):
        ts.main(["--arch", "75"])

"""`make gpu-check` (benchmarks.gpu_check): the parts that run without a GPU — argument handling, the CPU path, and the
report rendered from a fixture run — and, on a GPU, one timed case."""

import json

import pytest
import torch

from benchmarks import gpu_check

FIXTURE = {
    "device": "NVIDIA H100 80GB HBM3",
    "torch": "2.11.0",
    "triton": "3.6.0",
    "cuda": "12.8",
    "date": "2026-01-01",
    "tests": "passed",
    "kernels": [
        {"case": "3x3B-h256", "precision": "bf16", "impl": "reference", "mode": "fwd", "ms": 0.3, "tflops": 143.2},
        {"case": "3x3B-h256", "precision": "bf16", "impl": "cropped", "mode": "fwd", "ms": 0.24, "tflops": 179.0},
        {"case": "3x3B-h256", "precision": "bf16", "impl": "triton", "mode": "fwd", "ms": 0.12, "tflops": 358.0},
        {"case": "3x3B-h256", "precision": "tf32", "impl": "reference", "mode": "fwd+bwd", "ms": 1.5, "tflops": 86.0},
    ],
    "train_step": [{"impl": "triton", "amp": True, "ms": 21.5, "images_per_s": 2976.7}],
}


def test_machine_name_is_file_safe():
    assert gpu_check.machine_name("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_check.machine_name("  ") == "gpu"


def test_report_from_fixture_json(tmp_path):
    src = tmp_path / "run.json"
    src.write_text(json.dumps(FIXTURE))
    assert gpu_check.main(["--from-json", str(src), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "nvidia-h100-80gb-hbm3.md").read_text()
    assert "NVIDIA H100 80GB HBM3" in md and "torch 2.11.0, triton 3.6.0" in md and "Tests: passed" in md
    # 0.3 / 0.12 and 0.24 / 0.12: Triton's speedups over cuDNN on W*M and on the crop
    assert "| 3x3B-h256 | bf16 | fwd | 0.3 | 0.24 | 0.12 | 358.0 | 2.50x | 2.00x |" in md
    assert "| 3x3B-h256 | tf32 | fwd+bwd | 1.5 | - | - | - | - | - |" in md  # a row without Triton: no speedup
    assert "| triton | True | False | 21.5 | 2976.7 |" in md  # rows of runs before --compile: eager
    assert json.loads((tmp_path / "out" / "nvidia-h100-80gb-hbm3.json").read_text()) == FIXTURE


def test_one_failing_step_is_reported_and_the_others_still_run(monkeypatch):
    """The rehearsal's steps on the CPU: a step that raises is a FAILED row, the later steps still measure, and the
    report ends with the summary table in the plan's order."""

    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(gpu_check, "time_kernels", boom)
    result = dict(device="rehearsal-cpu", torch=torch.__version__, triton="3.x")
    assert gpu_check.run_plan(result, rehearse=True, skip_build=True, skip_tests=True, quick=True) == 1
    assert [r["step"] for r in result["steps"]] == [name for name, _, _ in gpu_check.PLAN]
    status = {r["step"]: r["status"] for r in result["steps"]}
    assert status["kernels"] == "FAILED: RuntimeError: kernel exploded"
    assert status["sampler"] == status["train_step"] == "ok" and status["build"] == "skipped"
    assert {(r["batch"], r["method"]) for r in result["sampler"]} == {
        (n, m) for n in (1, 2) for m in ("naive", "cached", "cached_ext")
    }
    assert all(r["ms"] > 0 for r in result["sampler"] + result["train_step"])
    md = gpu_check.render_report(result)
    assert md.rstrip().splitlines()[-1].startswith("| train_step | ok |")
    assert "| kernels | FAILED: RuntimeError: kernel exploded |" in md


def test_plan_prints_every_step_with_its_minutes(capsys):
    assert gpu_check.main(["--plan"]) == 0
    out = capsys.readouterr().out
    for name, minutes, _ in gpu_check.PLAN:
        assert f"{name}" in out and f"~{minutes:.1f} min" in out
    assert sum(m for _, m, _ in gpu_check.PLAN) <= 8.0  # the one GPU command's budget


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path of gpu-check")
def test_without_a_gpu_it_says_so_runs_static_checks_and_exits_0(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(gpu_check, "static_checks", lambda: ran.append(1) or 0)
    assert gpu_check.main([]) == 0
    assert ran == [1]
    assert "no CUDA GPU" in capsys.readouterr().out


def test_version_floor_is_checked(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.10.1")
    assert any("torch 2.10.1 is older than 2.11" in p for p in gpu_check.check_versions())


def test_bad_arguments_exit_with_usage():
    with pytest.raises(SystemExit):
        gpu_check.main(["--no-such-flag"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (times the kernels)")
def test_gpu_times_every_implementation_on_one_layer():
    from benchmarks.bench_masked_conv import SEED_CASES

    rows = gpu_check.time_kernels(SEED_CASES[2:3], ("bf16",), rep_ms=5)
    assert {r["impl"] for r in rows} == {"reference", "cropped", "triton"}
    assert all(r["ms"] > 0 and r["tflops"] > 0 for r in rows)

"""benchmarks/report.py: the targets table computes each ratio from the run's medians, names the CPU, and writes
the markdown and one PNG per group."""

import json

from benchmarks.report import TARGETS, build_report, main, target_lines


def bench(group, path, median, reference=False, paired=None):
    extra = {"path": path, "items": 16, "unit": "images", "reference": reference}
    if paired is not None:
        extra["paired_speedup"] = paired
    return {
        "group": group,
        "name": f"test_x[{path}]",
        "stats": {"median": median, "iqr": median / 10},
        "extra_info": extra,
    }


def results():
    return {
        "datetime": "now",
        "machine_info": {
            "python_version": "3.11",
            "pixelcnn_cpu": {
                "model": "Test CPU 9000",
                "logical_cores": 2,
                "torch_threads": 2,
                "vector_flags": ["avx2", "fma"],
            },
        },
        "benchmarks": [
            bench("forward 28x28x1", "reference", 0.30, True),
            bench("forward 28x28x1", "eager", 0.20),
            bench("forward 28x28x1", "compile", 0.10),
            bench("forward 32x32x3", "reference", 1.0, True),
            bench("forward 32x32x3", "compile", 0.5, paired=2.4),
            bench("forward 32x32x3", "onnxruntime", 0.4, paired=2.0),  # medians: ORT 1.25x faster; paired: 1.2x slower
            bench("train_step 28x28x1", "reference", 0.50, True),
            bench("train_step 28x28x1", "compile", 0.25, paired=1.4),  # medians say 2x, the paired rounds 1.4x
            bench("forward 28x28x1", "onnxruntime", 0.12),
            bench("sampling batch 16", "naive-reference", 40.0, True),
            bench("sampling batch 16", "naive", 30.0),
            bench("sampling batch 16", "cached_ext", 0.06),
        ],
    }


def test_targets_table_ratios_and_verdicts():
    groups = {}
    for b in results()["benchmarks"]:
        groups.setdefault(b["group"], []).append(b)
    rows = [r for r in target_lines(groups) if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) == len(TARGETS)
    eager = next(r for r in rows if "forward 28x28x1 | eager vs reference" in r)
    assert "1.50x" in eager and eager.endswith("| met |")  # 0.30 / 0.20 >= 1.3
    compiled = next(r for r in rows if "forward 28x28x1 | compile vs reference" in r)
    assert "3.00x" in compiled and compiled.endswith("| met |")
    ort = next(r for r in rows if "forward 28x28x1 | compile vs onnxruntime" in r)
    assert "1.20x" in ort and ort.endswith("| met |")  # compiled faster than ORT: within 10 %
    assert "(medians)" in compiled
    via = next(r for r in rows if "forward 32x32x3 | compile vs onnxruntime" in r)
    assert "1.20x (paired, via reference)" in via and via.endswith("| met |")
    train = next(r for r in rows if "train_step 28x28x1 | compile vs reference" in r)
    assert "1.40x (paired)" in train and train.endswith("| missed |")  # the paired ratio decides: 1.4 < 1.5
    sampling = next(r for r in rows if "sampling batch 16 | cached_ext vs naive" in r)
    assert "500.00x" in sampling and sampling.endswith("| missed |")  # 30 / 0.06 < 600
    assert next(r for r in rows if "forward 32x32x3 | eager" in r).endswith("| not run |")  # no eager in the run
    assert next(r for r in rows if "sampling batch 1 |" in r).endswith("| not run |")


def test_report_names_the_cpu_and_writes_files(tmp_path):
    path = build_report(results(), "test-machine", str(tmp_path))
    text = open(path).read()
    assert "Test CPU 9000" in text and "avx2, fma" in text
    assert "| naive | 30000.00 ms |" in text and "1.33x" in text  # speedup vs the group's reference (naive-reference)
    assert "| compile | 250.00 ms | 25.00 ms | 64.0 images/s | - | 2.00x | 1.40x |" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "test-machine-forward-28x28x1.png",
        "test-machine-forward-32x32x3.png",
        "test-machine-sampling-batch-16.png",
        "test-machine-train-step-28x28x1.png",
        "test-machine.md",
    ]


def test_report_cli_refuses_empty_results(tmp_path, capsys):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"benchmarks": []}))
    assert main([str(f), "--out-dir", str(tmp_path)]) == 2
    assert "holds no benchmarks" in capsys.readouterr().err

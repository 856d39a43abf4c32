"""`--conv auto`: the reference on CPU; on CUDA the implementation measured faster, cached per device and shape."""

import logging
import time

import torch

from pixelcnn.ops import masked_conv as mc


def test_auto_is_the_reference_on_cpu_without_timing_anything():
    calls = []
    assert mc.choose_conv_impl(calls.append, torch.device("cpu"), key="any") == "reference"
    assert calls == []


def test_auto_times_each_impl_picks_the_faster_caches_and_logs(monkeypatch, caplog):
    """CUDA calls replaced so the choice logic runs on CPU: a step that is slower for the reference must pick triton,
    once per (device, key), and log the timings."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(mc, "_AUTO_CHOICE", {})
    calls = []

    def step(impl):
        calls.append(impl)
        time.sleep(0.02 if impl == "reference" else 0.001)

    with caplog.at_level(logging.INFO, logger=mc.__name__):
        assert mc.choose_conv_impl(step, torch.device("cuda", 0), key="shape-a", iterations=2) == "triton"
    assert calls.count("reference") == 3 and calls.count("triton") == 3  # one untimed warm-up + 2 timed each
    assert "--conv auto on Fake GPU: triton" in caplog.text
    calls.clear()
    assert mc.choose_conv_impl(step, torch.device("cuda", 0), key="shape-a") == "triton"
    assert calls == []  # cached
    mc.choose_conv_impl(step, torch.device("cuda", 0), key="shape-b", iterations=1)
    assert calls  # another shape is measured again


def test_train_resolve_conv_keeps_explicit_choices_and_is_reference_on_cpu():
    from pixelcnn.train import resolve_conv

    assert resolve_conv("triton", torch.device("cpu")) == "triton"
    assert resolve_conv("auto", torch.device("cpu")) == "reference"

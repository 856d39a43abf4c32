"""pixelcnn.ops.precision: one way to read and set PyTorch's fp32 convolution precision on torch 2.11 and 2.14,
never leaving torch in a state that its own ``allow_tf32`` read (torch.export, ONNX export) rejects."""

import pytest
import torch

from pixelcnn.ops.precision import (
    conv_fp32_precision,
    conv_precision,
    legacy_flag_readable,
    set_conv_fp32_precision,
)

PER_OP = hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


def _state():
    cudnn = torch.backends.cudnn
    return (cudnn.allow_tf32, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision) if PER_OP else (cudnn.allow_tf32,)


@pytest.mark.parametrize("first,second", [("ieee", "tf32"), ("tf32", "ieee")])
def test_set_and_restore_keep_torch_readable(first, second):
    before = _state()
    with conv_precision(first):
        assert conv_fp32_precision() == first
        assert torch.backends.cudnn.allow_tf32 == (first == "tf32")  # torch's own read agrees and does not raise
        with conv_precision(second):
            assert conv_fp32_precision() == second
            assert legacy_flag_readable()
        assert conv_fp32_precision() == first
    assert _state() == before
    assert legacy_flag_readable()


def test_restored_after_an_error_inside():
    before = _state()
    with pytest.raises(ZeroDivisionError), conv_precision("ieee"):
        1 / 0  # noqa: B018
    assert _state() == before


@pytest.mark.skipif(not PER_OP, reason="torch < 2.9 has only allow_tf32")
def test_the_conv_only_setting_that_torch_rejects_is_what_the_helper_avoids():
    """The independent check: setting conv alone (what the project did before) makes torch's allow_tf32 read raise
    on this torch; the helper's setter on the same starting state does not."""
    cudnn = torch.backends.cudnn
    with conv_precision("tf32"):
        cudnn.conv.fp32_precision = "ieee"  # conv alone
        assert not legacy_flag_readable()
        cudnn.rnn.fp32_precision = "ieee"  # conv and RNN by the new API alone: still rejected
        assert not legacy_flag_readable()
        set_conv_fp32_precision("ieee")
        assert legacy_flag_readable() and cudnn.allow_tf32 is False
        assert cudnn.conv.fp32_precision == "ieee" and conv_fp32_precision() == "ieee"


def test_export_runs_after_a_precision_change():
    """torch.export reads allow_tf32; after the helper changed (and restored) the precision it must still work."""
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 5, 5)
    with conv_precision("ieee"):
        exported = torch.export.export(conv, (x,))
    set_conv_fp32_precision(conv_fp32_precision())  # a no-op write of the current value
    torch.testing.assert_close(exported.module()(x), conv(x))


@pytest.mark.parametrize("bad", ["TF32", "highest", None])
def test_bad_precision_names_the_choices(bad):
    with pytest.raises(ValueError, match="'tf32' or 'ieee'"):
        set_conv_fp32_precision(bad)
    with pytest.raises(ValueError, match="'tf32' or 'ieee'"), conv_precision(bad):
        pass

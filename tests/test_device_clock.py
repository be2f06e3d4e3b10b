"""mlxprof.device_clock off a CUDA GPU: it says so, clearly (the kernels
themselves compile in test_cuda_sources.py and run on the GPU machine)."""
import mlx.core as mx
import pytest

from mlxprof import device_clock as dc


def test_not_available_on_cpu():
    assert dc.available() is False


def test_device_ms_needs_cuda():
    with pytest.raises(RuntimeError, match="CUDA backend"):
        dc.device_ms(lambda a: a + 1, mx.ones((4,)))


def test_clean_reading_means_encode_fit_in_the_hold():
    assert dc.DeviceTime(1.0, encode_ms=5.0, hold_ms=50.0).clean
    assert not dc.DeviceTime(1.0, encode_ms=45.0, hold_ms=50.0).clean

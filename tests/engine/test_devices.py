import pytest
import torch

from reconstruction.engine.devices import DeviceUnavailable, resolve_device


def test_auto_and_cpu_resolve_to_what_the_machine_has():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_device_is_refused_with_its_code():
    with pytest.raises(DeviceUnavailable, match="no CUDA device") as caught:
        resolve_device("cuda")
    assert caught.value.code == "no_cuda"

import os

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


def test_idle_cores_are_measured_over_a_short_window(monkeypatch):
    from reconstruction.engine import devices

    samples = iter([(1000, 4000), (1150, 4200)])  # 150 of 200 ticks idle across all cores
    monkeypatch.setattr(devices, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 4)
    assert devices.idle_cpus(window_s=0) == 3.0


def test_idle_cores_fall_back_on_the_load_average_without_proc_stat(monkeypatch):
    from reconstruction.engine import devices

    monkeypatch.setattr(devices, "_cpu_times", lambda: None)
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert devices.idle_cpus() == 0.5


def test_idle_cores_of_this_machine_lie_between_none_and_all():
    from reconstruction.engine import devices

    assert devices._cpu_times() is not None  # Linux
    assert 0.0 <= devices.idle_cpus(window_s=0.05) <= (os.cpu_count() or 1)

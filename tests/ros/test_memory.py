"""depth_ros.ros.memory: glibc keeps multi-MB buffers for reuse (the node applies it at startup)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_malloc_tuning_applies_once_and_reports_it() -> None:
    code = ("from depth_ros.ros.memory import tune_malloc_for_large_messages as t\n"
            "print(t(), t())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]

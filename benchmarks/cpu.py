"""What every benchmark prints first: the CPU, its bf16 instructions, and how the AVX2-only emulation is made.

A figure measured on a CPU with native bf16 (AMX, AVX512-BF16) says little about one without, so each benchmark
names the CPU in its first line, and those that compare both kinds run the slow kind by emulation:

- ``ONEDNN_MAX_CPU_ISA=AVX2`` caps oneDNN, which runs torch's bf16 matrix products, at AVX2: it then uses its
  reference bf16 kernels, as on a CPU without bf16 instructions;
- ``ATEN_CPU_CAPABILITY=avx2`` caps ATen's own vectorised kernels (element-wise ops, reductions) at AVX2.

torch still reports the CPU's bf16 flags from cpuid under the emulation, so ``tasks/precision.py`` reads
``ONEDNN_MAX_CPU_ISA`` too, and ``train.precision: auto`` picks fp32 under it. ``check()`` verifies that the
emulation took: a 512x512 bf16 matrix product must be much slower than fp32 (it is ~80x under the emulation on a
Zen 4 CPU, and ~2x faster than fp32 without it).
"""

from __future__ import annotations

import os
import platform

EMULATE_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_matmul_ratio(n: int = 512, reps: int = 20) -> float:
    """Seconds of an n x n bf16 matrix product over the same in fp32, in this process (its ISA caps)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        for _ in range(3):
            x @ y
        t0 = time.perf_counter()
        for _ in range(reps):
            x @ y
        out[dtype] = time.perf_counter() - t0
    return out[torch.bfloat16] / out[torch.float32]


def describe() -> str:
    """One line: the CPU model, its bf16 and AMX flags as torch reports them, ATen's capability, the oneDNN cap,
    what ``train.precision: auto`` picks here, and the measured bf16/fp32 matmul time ratio."""
    import torch

    from tasks.precision import resolve

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    return (f"CPU: {cpu_model()}, {os.cpu_count()} cores | avx512_bf16={torch.cpu._is_avx512_bf16_supported()} "
            f"amx={torch.cpu._is_amx_tile_supported()} | aten={torch.backends.cpu.get_cpu_capability()} "
            f"ONEDNN_MAX_CPU_ISA={cap} | auto -> {resolve('auto', 'cpu').dtype} | "
            f"bf16/fp32 matmul time {bf16_matmul_ratio():.2f}x")


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(describe())

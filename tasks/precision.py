"""Which numeric precision training (and sampling on a GPU) uses on this device, and why.

``train.precision`` in ``params.yaml`` is ``auto``, ``fp32``, ``bf16`` or ``fp16``.
``auto`` means:

- bf16 on a CUDA device that supports it (``torch.cuda.is_bf16_supported()``);
- bf16 on a CPU only where torch has native bf16 kernels: AMX or AVX512-BF16
  (``torch.cpu._is_amx_tile_supported()``, ``torch.cpu._is_avx512_bf16_supported()``),
  and oneDNN is allowed to use them (``ONEDNN_MAX_CPU_ISA`` not capped below
  ``AVX512_CORE_BF16``);
- fp32 everywhere else.

Why it matters: TRL 1.16 turns ``bf16`` on by default (``bf16 = not fp16``). On a
CPU without native bf16 (AVX2 only, as most AMD and pre-2023 Intel CPUs are) torch
then falls back to reference bf16 kernels, and a training step takes 9 to 17 times
longer than in fp32 (``benchmarks/precision.py``; the MiniLM-L6 reward step 17x). So every trainer
of the project gets its precision from here, explicitly.

Mixed precision keeps master weights and optimizer state in fp32: the models are
loaded in fp32 for training (``tasks/policy.py::load_policy``), whatever dtype their checkpoint
was stored in, and bf16/fp16 apply only inside autocast. A bf16 checkpoint trained
in bf16 would lose every update smaller than its 8-bit mantissa can hold.

The decision is a pure function of the setting and the hardware (:func:`decide`);
:func:`hardware` reads the hardware from torch; :func:`resolve` does both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass

from tasks.errors import ConfigError

CHOICES = ("auto", "fp32", "bf16", "fp16")
KEY = "train.precision"
ISA_ENV = "ONEDNN_MAX_CPU_ISA"

# oneDNN's CPU ISA names in increasing order (the ones ONEDNN_MAX_CPU_ISA takes); native bf16 matrix kernels start
# at AVX512_CORE_BF16. AVX10_1_512 is the newer name of AVX512_CORE_FP16 and the AMX names follow it.
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
               "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "DEFAULT", "ALL")
FIRST_BF16_ISA = "AVX512_CORE_BF16"

# What asking for bf16 costs on a CPU without native kernels: one optimizer step of each trainer, bf16 autocast
# against fp32, measured by benchmarks/precision.py under the AVX2 emulation (docs/performance.md).
SLOWDOWN_NOTE = "torch falls back to reference bf16 kernels, 9 to 17x slower than fp32 (docs/performance.md)"


@dataclass(frozen=True)
class Hardware:
    """What the precision depends on, read from torch by :func:`hardware` (or written by hand in tests)."""
    device: str                    # "cpu" or "cuda"
    cuda_bf16: bool = False        # torch.cuda.is_bf16_supported()
    cuda_name: str = ""            # the CUDA device's name, for the reason
    cpu_amx: bool = False          # torch.cpu._is_amx_tile_supported()
    cpu_avx512_bf16: bool = False  # torch.cpu._is_avx512_bf16_supported()
    isa_cap: str | None = None     # ONEDNN_MAX_CPU_ISA, when set


@dataclass(frozen=True)
class Precision:
    """The precision in force: ``dtype`` is ``fp32``, ``bf16`` or ``fp16``; ``reason`` says why (logged to each
    stage's MLflow run as ``rft.precision_reason``); ``warning``, when set, is printed once."""
    setting: str
    dtype: str
    reason: str
    device: str
    warning: str | None = None

    @property
    def mixed(self) -> bool:
        return self.dtype != "fp32"

    def trl_kwargs(self) -> dict:
        """The arguments every TRL / transformers training config gets: both flags explicit, because TRL's default
        is ``bf16 = not fp16`` (bf16 on, even on a CPU without native bf16)."""
        return {"bf16": self.dtype == "bf16", "fp16": self.dtype == "fp16"}

    def accelerate_flag(self) -> str:
        """``accelerate launch --mixed_precision`` for this precision (it overrides the launch config's)."""
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[self.dtype]

    def tags(self) -> dict:
        return {"rft.precision": self.dtype, "rft.precision_setting": self.setting,
                "rft.precision_reason": self.reason}

    def line(self) -> str:
        """One line for ``rft check-params`` and the logs: ``train.precision: fp32 (auto: ...)``."""
        return f"{KEY}: {self.dtype} ({self.reason})"


def cpu_native_bf16(hw: Hardware) -> tuple[bool, str]:
    """(whether this CPU runs bf16 matrix work natively, the words that say why)."""
    found = [name for name, has in (("AMX", hw.cpu_amx), ("AVX512-BF16", hw.cpu_avx512_bf16)) if has]
    if not found:
        return False, "no native bf16 on this CPU (neither AMX nor AVX512-BF16)"
    cap = (hw.isa_cap or "").strip().upper()
    if cap and cap in ONEDNN_ISAS and ONEDNN_ISAS.index(cap) < ONEDNN_ISAS.index(FIRST_BF16_ISA):
        return False, f"no native bf16 in use: {ISA_ENV}={cap} caps oneDNN below {FIRST_BF16_ISA}"
    return True, f"native bf16 on this CPU ({', '.join(found)})"


def decide(setting: str, hw: Hardware) -> Precision:
    """The precision that ``setting`` (a value of ``train.precision``) means on ``hw``. Pure: no torch.

    Raises :class:`ConfigError` naming the key where the device cannot run it at all (fp16 on a CPU, bf16 on a
    CUDA device without it); warns, and runs, where it can but slowly (bf16 on a CPU without native bf16)."""
    if setting not in CHOICES:
        raise ConfigError(f"{KEY}: must be one of {', '.join(CHOICES)}, got {setting!r}")
    if hw.device == "cuda":
        gpu = f"CUDA device {hw.cuda_name}".strip() if hw.cuda_name else "this CUDA device"
        if setting == "auto":
            if hw.cuda_bf16:
                return Precision(setting, "bf16", f"auto: {gpu} supports bf16", "cuda")
            return Precision(setting, "fp32", f"auto: {gpu} has no bf16 (set fp16 for mixed precision)", "cuda")
        if setting == "bf16" and not hw.cuda_bf16:
            raise ConfigError(f"{KEY}: bf16, but {gpu} does not support it; use fp16 or fp32")
        return Precision(setting, setting, "set in params.yaml", "cuda")
    native, why = cpu_native_bf16(hw)
    if setting == "auto":
        return Precision(setting, "bf16" if native else "fp32", f"auto: {why}", "cpu")
    if setting == "fp16":
        raise ConfigError(f"{KEY}: fp16 needs a CUDA GPU (it trains with a loss scaler); on a CPU use fp32, or bf16 "
                          "where the CPU has native bf16")
    if setting == "bf16" and not native:
        return Precision(setting, "bf16", f"set in params.yaml; {why}", "cpu",
                         warning=f"warning: {KEY}: bf16 on a CPU without native bf16 ({why}): {SLOWDOWN_NOTE}")
    return Precision(setting, setting, "set in params.yaml", "cpu")


def hardware(device: str | None = None) -> Hardware:
    """The hardware this process trains on: CUDA when it is available (or ``device`` says so), else the CPU."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = device.split(":")[0]
    if device == "cuda":
        return Hardware("cuda", cuda_bf16=bool(torch.cuda.is_bf16_supported()),
                        cuda_name=torch.cuda.get_device_name())
    cpu = torch.cpu
    amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    avx512_bf16 = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    # ONEDNN_MAX_CPU_ISA: oneDNN's own setting, which caps the instruction set it uses (the AVX2 emulation).
    return Hardware("cpu", cpu_amx=amx, cpu_avx512_bf16=avx512_bf16, isa_cap=os.environ.get(ISA_ENV))


_warned: set = set()


def resolve(setting: str, device: str | None = None) -> Precision:
    """``decide`` on this machine's hardware; prints the warning (once per process) when there is one."""
    p = decide(setting, hardware(device))
    if p.warning and p.warning not in _warned:
        _warned.add(p.warning)
        print(p.warning, flush=True)
    return p


def of(params) -> Precision:
    """The precision in force for a stage's params (``train.precision``)."""
    return resolve(params.train.precision)


def torch_dtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def fp32(device: str = "cpu") -> Precision:
    """Plain fp32 on ``device``: what a loop given no precision runs in."""
    return decide("fp32", Hardware(device))


def sampling_dtype(p: Precision, device: str) -> str:
    """The dtype of a policy's weights for sampling (generate, evaluate) on ``device``: the training precision on a
    GPU; fp32 on a CPU, where a bf16 checkpoint is upcast (the tiny default's steps gain nothing from bf16 even with
    native kernels, docs/performance.md, and every model loses 9-17x without them)."""
    return p.dtype if device.split(":")[0] == "cuda" else "fp32"


def for_sampling(p: Precision, device: str) -> Precision:
    """The precision a sampling stage runs in on ``device`` (:func:`sampling_dtype`), with the reason."""
    dtype = sampling_dtype(p, device)
    if dtype == p.dtype:
        return p
    return dataclasses.replace(p, dtype=dtype, reason=f"{p.reason}; sampling on a CPU runs fp32")


def autocast(p: Precision, device: str):
    """The autocast context of the project's own training loops (bootstrap, PPO): off in fp32."""
    if not p.mixed:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.split(":")[0], dtype=torch_dtype(p.dtype))


class Scaler:
    """The loss scaler of the own loops: a ``torch.amp.GradScaler`` in fp16 (whose small gradients would underflow
    unscaled), a pass-through in fp32 and bf16 (bf16 has fp32's exponent range).

    ``backward(loss)`` once per micro-batch, then ``step(optimizer, parameters, clip)``: unscale, clip the gradient
    norm to ``clip``, step (skipped by the scaler when a gradient is inf or nan)."""

    def __init__(self, p: Precision, device: str):
        import torch

        self.scaler = torch.amp.GradScaler(device.split(":")[0]) if p.dtype == "fp16" else None

    def backward(self, loss) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer, parameters, clip: float | None) -> None:
        import torch

        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip:
            torch.nn.utils.clip_grad_norm_(list(parameters), clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

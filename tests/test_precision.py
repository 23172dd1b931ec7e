"""train.precision: the decision per device (tasks/precision.py), and that every trainer gets it explicitly.

TRL 1.16 turns bf16 on by default (``bf16 = not fp16``); on a CPU without native bf16 that made a training step 9
to 17 times slower (benchmarks/precision.py). These tests guard the rule that replaced the default, and the
plumbing that carries it."""

import dataclasses

import pytest

from tasks.errors import ConfigError
from tasks.precision import Hardware, Precision, cpu_native_bf16, decide

AVX2_ONLY = Hardware("cpu")                                            # AMD Zen 2/3, Intel before Sapphire Rapids
ZEN4 = Hardware("cpu", cpu_avx512_bf16=True)                           # AVX512-BF16, no AMX
SAPPHIRE = Hardware("cpu", cpu_amx=True, cpu_avx512_bf16=True)         # AMX
A100 = Hardware("cuda", cuda_bf16=True, cuda_name="A100")
T4 = Hardware("cuda", cuda_bf16=False, cuda_name="T4")


@pytest.mark.parametrize("hw,dtype,why", [
    (AVX2_ONLY, "fp32", "auto: no native bf16 on this CPU (neither AMX nor AVX512-BF16)"),
    (ZEN4, "bf16", "auto: native bf16 on this CPU (AVX512-BF16)"),
    (SAPPHIRE, "bf16", "auto: native bf16 on this CPU (AMX, AVX512-BF16)"),
    (A100, "bf16", "auto: CUDA device A100 supports bf16"),
    (T4, "fp32", "auto: CUDA device T4 has no bf16 (set fp16 for mixed precision)"),
])
def test_auto_picks_bf16_only_where_the_device_runs_it_natively(hw, dtype, why):
    p = decide("auto", hw)
    assert (p.dtype, p.reason, p.warning) == (dtype, why, None)


@pytest.mark.parametrize("cap,native", [("AVX2", False), ("avx2", False), ("AVX512_CORE", False),
                                        ("AVX512_CORE_VNNI", False), ("AVX512_CORE_BF16", True),
                                        ("AVX512_CORE_AMX", True), ("ALL", True), (None, True)])
def test_a_capped_onednn_isa_counts_as_no_native_bf16(cap, native):
    # ONEDNN_MAX_CPU_ISA=AVX2 is how a CPU without bf16 is emulated (docs/performance.md): torch still reports
    # avx512_bf16 from cpuid, but oneDNN then runs its reference kernels (~80x slower bf16 matmul, measured).
    ok, why = cpu_native_bf16(dataclasses.replace(ZEN4, isa_cap=cap))
    assert ok is native
    if not native:
        assert f"ONEDNN_MAX_CPU_ISA={cap.upper()}" in why
    assert decide("auto", dataclasses.replace(ZEN4, isa_cap=cap)).dtype == ("bf16" if native else "fp32")


def test_bf16_asked_on_a_cpu_without_it_runs_with_a_one_line_warning():
    p = decide("bf16", AVX2_ONLY)
    assert p.dtype == "bf16"
    assert p.warning.startswith("warning: train.precision: bf16 on a CPU without native bf16")
    assert "9 to 17x slower than fp32" in p.warning and "\n" not in p.warning
    assert decide("bf16", ZEN4).warning is None


def test_explicit_settings_are_kept_where_the_device_can_run_them():
    assert decide("fp32", ZEN4).dtype == "fp32"
    assert decide("fp32", A100).dtype == "fp32"
    assert decide("fp16", T4).dtype == "fp16"
    assert decide("bf16", A100).reason == "set in params.yaml"


@pytest.mark.parametrize("setting,hw,words", [
    ("fp16", AVX2_ONLY, "fp16 needs a CUDA GPU"),
    ("bf16", T4, "bf16, but CUDA device T4 does not support it"),
    ("half", ZEN4, "must be one of auto, fp32, bf16, fp16"),
])
def test_what_a_device_cannot_run_is_a_config_error_naming_the_key(setting, hw, words):
    with pytest.raises(ConfigError, match=words) as exc:
        decide(setting, hw)
    assert str(exc.value).startswith("train.precision: ")


def test_trainer_flags_are_always_explicit():
    # Both flags set, False included: TRL's own default would turn bf16 on whenever fp16 is off.
    assert decide("auto", AVX2_ONLY).trl_kwargs() == {"bf16": False, "fp16": False}
    assert decide("auto", ZEN4).trl_kwargs() == {"bf16": True, "fp16": False}
    assert decide("fp16", T4).trl_kwargs() == {"bf16": False, "fp16": True}
    assert [decide(s, A100).accelerate_flag() for s in ("fp32", "bf16", "fp16")] == ["no", "bf16", "fp16"]


def test_precision_round_trips_through_a_launch_spec():
    # tasks/launch.py hands the stage's decision to its `accelerate launch` workers as JSON.
    import json

    p = decide("bf16", AVX2_ONLY)
    assert Precision(**json.loads(json.dumps(dataclasses.asdict(p)))) == p


def test_sampling_runs_fp32_on_a_cpu_and_the_training_precision_on_a_gpu():
    from tasks.precision import for_sampling, sampling_dtype

    assert sampling_dtype(decide("auto", ZEN4), "cpu") == "fp32"
    assert sampling_dtype(decide("auto", A100), "cuda:0") == "bf16"
    # What a sampling stage records: the dtype it samples in, and why.
    p = for_sampling(decide("auto", ZEN4), "cpu")
    assert (p.dtype, p.reason) == ("fp32", "auto: native bf16 on this CPU (AVX512-BF16); sampling on a CPU runs fp32")
    assert for_sampling(decide("auto", AVX2_ONLY), "cpu") == decide("auto", AVX2_ONLY)


@pytest.mark.parametrize("setting", ["fp32", "bf16"])
def test_every_trl_config_gets_the_precision_not_trls_default(tmp_path, setting):
    from types import SimpleNamespace

    from trl import DPOConfig, GRPOConfig, KTOConfig, RLOOConfig, SFTConfig

    from tasks.algorithms.base import trl_args

    p = decide(setting, ZEN4)
    run = SimpleNamespace(cfg=SimpleNamespace(lr=1e-5), common=SimpleNamespace(checkpoint_every=0, seed=0),
                          checkpoint_dir=tmp_path, precision=p)
    for cls in (DPOConfig, GRPOConfig, KTOConfig, RLOOConfig, SFTConfig):
        args = trl_args(cls, run)
        assert (args.bf16, args.fp16) == (setting == "bf16", False), cls.__name__
    # No precision given (a Run built by hand): fp32, never TRL's bf16.
    assert trl_args(SFTConfig, SimpleNamespace(**{**vars(run), "precision": None})).bf16 is False


def test_a_bf16_checkpoint_loads_in_fp32_for_training(tmp_path):
    # transformers 5 loads dtype="auto": a bf16 checkpoint would train in bf16 and lose small updates.
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    from tasks.policy import load_policy, train_tokenizer

    tok = train_tokenizer(["a tiny corpus of words", "more words here"] * 20, 300)
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=16,
                                                        n_positions=32))
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, _ = load_policy(tmp_path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert {p.dtype for p in load_policy(tmp_path, dtype="bf16")[0].parameters()} == {torch.bfloat16}


def test_bootstrap_loop_learns_in_bf16_autocast_with_fp32_master_weights():
    # The own loops (bootstrap, PPO) keep the parameters fp32 and compute the forward pass in autocast.
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    from tasks.bootstrap import _train_loop

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=50, n_layer=1, n_head=2, n_embd=16,
                                                        n_positions=16))
    x = torch.randint(0, 50, (4, 16))
    cfg = type("C", (), {"lr": 1e-2, "warmup_steps": 1, "log_every": 10})()
    losses = _train_loop(model, lambda step: (x, torch.ones_like(x), x), 20, cfg, "t", lambda *a: None,
                         decide("bf16", ZEN4))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert losses[-1] < losses[0]

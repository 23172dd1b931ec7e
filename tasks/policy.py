"""Loading, saving and prompting a policy (a causal LM in Hugging Face format).

A policy folder holds a Hugging Face model and tokenizer plus ``rft_policy.json``
(its registry version and lineage). When ``policy.base_model`` names an
existing model, the folder holds only ``rft_policy.json`` with a ``pointer``
to it, and ``load_policy`` follows the pointer.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks import precision
from tasks.errors import ConfigError, DataError
from tasks.io import atomic_path, read_registry, write_meta_files
from tasks.precision import torch_dtype

META = "rft_policy.json"
EOS = "<|endoftext|>"


def read_meta(model_dir: str | Path) -> dict:
    """The folder's ``rft_policy.json`` merged with its registry record (``tasks.io.REGISTRY_FILE``)."""

    path = Path(model_dir) / META
    return {**(json.loads(path.read_text()) if path.exists() else {}), **read_registry(model_dir)}


def write_meta(model_dir: str | Path, meta: dict) -> None:
    write_meta_files(model_dir, META, meta)


def resolve(model_dir: str | Path) -> str:
    """The path or hub name that ``from_pretrained`` should read for this policy folder."""
    meta = read_meta(model_dir)
    return meta.get("pointer") or str(model_dir)


def pick_device(name: str = "auto", key: str = "generate.device") -> str:
    """The device for ``name`` (auto: cuda when there is one); 'cuda' without one is a ConfigError naming
    ``key``."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}: 'cuda' was asked for but no CUDA device is available (use auto or cpu)")
    return name


def check_devices(params):
    """Every ``device: cuda`` of ``params`` (generate, evaluate, the judges) and ``train.precision`` on this
    machine's device, checked before any stage runs; returns the precision in force (``tasks/precision.py``)."""

    keys = [("generate.device", params.generate.device), ("evaluate.device", params.evaluate.device)]
    keys += [(f"judges.{name}.device", getattr(cfg, "device", "auto")) for name, cfg in params.judges.items()]
    for key, name in keys:
        if name == "cuda":
            pick_device(name, key)
    return precision.resolve(params.train.precision)


WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
RULE = "a readable model folder (config.json with a model_type, weights that open)"


def check_model_folder(model_dir: str | Path) -> None:
    """Stop with a DataError naming the path when ``model_dir`` (or the local folder its pointer names) is not
    a model transformers can load: no folder, no or unreadable ``config.json``, no weights, an empty or
    damaged weights file. Reads the config and the safetensors headers only, never the weights."""
    import json
    import struct

    folder = Path(model_dir)
    if not folder.is_dir():
        raise DataError(folder, RULE, detail="no such folder" if not folder.exists() else "not a folder")
    try:
        src = Path(resolve(folder))
    except ValueError as exc:
        raise DataError(folder / META, RULE, detail=f"{META} cannot be read: {exc}") from None
    if not src.is_dir():
        return                                  # a hub name in rft_policy.json: transformers resolves it
    config = src / "config.json"
    try:
        if "model_type" not in json.loads(config.read_text()):
            raise DataError(config, RULE, detail="config.json has no model_type")
    except (OSError, ValueError) as exc:
        raise DataError(config, RULE, detail=f"config.json cannot be read: {exc}") from None
    found = [src / w for w in WEIGHTS if (src / w).exists()]
    if not found:
        raise DataError(src, RULE, detail=f"no weights file ({', '.join(WEIGHTS)})")
    files = found[:1]
    if found[0].name.endswith(".index.json"):
        try:
            files = [src / f for f in sorted(set(json.loads(found[0].read_text())["weight_map"].values()))]
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise DataError(found[0], RULE, detail=f"the shard index cannot be read: {exc}") from None
    for f in files:
        if not f.is_file() or f.stat().st_size == 0:
            raise DataError(f, RULE, detail="the weights file is missing" if not f.is_file() else
                            "the weights file is empty (0 bytes)")
        if f.suffix == ".safetensors":
            # safetensors: an 8-byte little-endian header length, then that many bytes of JSON.
            size = f.stat().st_size
            with f.open("rb") as fh:
                head = fh.read(8)
                n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
                ok = 0 < n <= size - 8
                try:
                    ok = ok and isinstance(json.loads(fh.read(n)), dict)
                except ValueError:
                    ok = False
            if not ok:
                raise DataError(f, RULE, detail="the safetensors header is damaged (a truncated or overwritten file)")


def load_policy(model_dir: str | Path, device: str = "cpu", dtype: str = "fp32"):
    """(model, tokenizer) in eval mode, tokenizer padded on the left for batched generation. A damaged folder
    stops with a DataError naming it (``check_model_folder``).

    The weights are loaded in ``dtype`` (``fp32``, ``bf16`` or ``fp16``), whatever the checkpoint holds:
    transformers 5 would otherwise keep a bf16 checkpoint in bf16, which a training stage must not (its
    master weights stay fp32; ``tasks/precision.py``) and a CPU without native bf16 runs 9-17x slower."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_folder(model_dir)
    src = resolve(model_dir)
    tok = AutoTokenizer.from_pretrained(src)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch_dtype(dtype)).to(device)
    model.eval()
    return model, tok


def install_policy(src: str | Path, dst: str | Path, meta: dict) -> None:
    """Replace the policy folder ``dst`` with a copy of ``src`` whose ``rft_policy.json`` is ``meta``.

    The copy is built beside ``dst`` and renamed into place, so a crash leaves the old folder whole.
    """
    import shutil

    with atomic_path(dst, is_dir=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        write_meta(tmp, meta)


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained with the ``tokenizers`` library, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS,
                                   unk_token=EOS, padding_side="left")
    return fast


def tiny_gpt(vocab_size: int, n_layer: int, n_head: int, n_embd: int, n_positions: int, eos_id: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                        n_positions=n_positions, bos_token_id=eos_id, eos_token_id=eos_id,
                        pad_token_id=eos_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)

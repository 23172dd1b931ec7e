"""Batched generation: one generate call per batch, left padding that changes nothing, seeding."""

import pytest

from tasks.config import GenerateConfig
from tasks.generate import sample_responses
from tasks.policy import load_policy

pytestmark = pytest.mark.filterwarnings("ignore")

PROMPTS = ["Write a review of the ramen at Blue Door.", "How was the pie?",
           "Tell me about the chowder at Quiet Harbor Market, please, in detail.", "Review the tea at Old Mill.",
           "Review the stew at Red Fork.", "How was the cake at Maple Leaf?", "Review the fish at Lucky Oven."]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """A tiny GPT-2 with a BPE tokenizer, made here in a second: generation mechanics need no trained policy."""
    import torch

    from tasks.policy import tiny_gpt, train_tokenizer

    path = tmp_path_factory.mktemp("policy")
    torch.manual_seed(0)
    tok = train_tokenizer(PROMPTS * 20 + ["The soup was great. I would come back again."] * 20, 300)
    tiny_gpt(len(tok), 2, 2, 32, 128, tok.eos_token_id).save_pretrained(path)
    tok.save_pretrained(path)
    return load_policy(path)


def test_one_generate_call_per_batch(policy, monkeypatch):
    model, tok = policy
    calls = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape) or real(**kw))
    out, n_tokens, _ = sample_responses(model, tok, PROMPTS, GenerateConfig(k=2, batch_size=3, max_new_tokens=8),
                                        "cpu", progress=False)
    # 7 prompts in batches of 3 -> 3 calls (3, 3, 1 prompts), never one per prompt
    assert [s[0] for s in calls] == [3, 3, 1]
    assert len(out) == 7 and all(len(r) == 2 for r in out)
    assert 0 < n_tokens <= 7 * 2 * 8


def test_left_padding_does_not_change_greedy_output(policy):
    # A short prompt decoded alone and inside a batch with a much longer one must give the
    # same greedy continuation: pads sit on the left and are masked, positions skip them.
    import torch

    model, tok = policy
    assert tok.padding_side == "left"
    from tasks.prompting import format_prompt

    def greedy(prompts):
        enc = tok([format_prompt(p) for p in prompts], return_tensors="pt", padding=True)
        with torch.no_grad():
            seq = model.generate(**enc, do_sample=False, max_new_tokens=10, pad_token_id=tok.pad_token_id)
        return tok.batch_decode(seq[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    alone = greedy([PROMPTS[1]])[0]
    batched = greedy([PROMPTS[2], PROMPTS[1]])[1]
    assert alone == batched


def test_seeded(policy):
    model, tok = policy
    cfg = GenerateConfig(k=2, batch_size=4, max_new_tokens=10, seed=5)
    a = sample_responses(model, tok, PROMPTS, cfg, "cpu", progress=False)[0]
    b = sample_responses(model, tok, PROMPTS, cfg, "cpu", progress=False)[0]
    c = sample_responses(model, tok, PROMPTS, GenerateConfig(k=2, batch_size=4, max_new_tokens=10, seed=6),
                         "cpu", progress=False)[0]
    assert a == b and a != c


def test_token_logprobs_match_unpadded_scoring(policy):
    # Log-probs of sampled tokens computed on the left-padded batch must equal those computed
    # for each sequence alone, without padding: pads are masked and positions skip them.
    import torch

    from tasks.rollout import sample, token_logprobs

    model, tok = policy
    r = sample(model, tok, [PROMPTS[1], PROMPTS[2]], 1, temperature=1.0, max_new_tokens=6, seed=0)
    batched = token_logprobs(model, r)
    for i in range(2):
        keep = r.attention_mask[i].bool()
        ids = r.input_ids[i][keep].unsqueeze(0)
        n_resp = int(r.response_mask[i].sum())
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        lp = torch.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(batched[i][:n_resp], lp[-n_resp:], atol=1e-4)


def test_a_prompt_longer_than_the_context_is_cut_from_the_left_and_counted(policy):
    # The tiny policy has 128 positions. With max_new_tokens 48 a prompt keeps at most 128 - 48 = 80 tokens;
    # a 500-character prompt is far longer in this 300-token vocabulary. Without the cut, generate indexes
    # position 128 and fails with "IndexError: index out of range in self".
    from tasks.prompting import format_prompt
    from tasks.rollout import encode_prompts, room_for, sample

    model, tok = policy
    long = ("Tell me about the chowder at Quiet Harbor Market, please, in detail. " * 8)[:500]
    prompts = [long, PROMPTS[1]]
    assert len(tok(format_prompt(long, tok), add_special_tokens=False)["input_ids"]) > 80
    assert room_for(128, 48) == 80 and room_for(None, 48) is None and room_for(40, 48) == 1
    r = sample(model, tok, prompts, 2, temperature=1.0, max_new_tokens=48, seed=0)
    assert r.truncated == 1 and r.prompt_len == 80 and r.input_ids.shape[1] <= 128 and len(r.texts) == 4
    # The cut keeps the end of the prompt, where the request is.
    enc, cut = encode_prompts(tok, [format_prompt(long, tok)], 80)
    full = tok(format_prompt(long, tok), add_special_tokens=False)["input_ids"]
    assert cut == 1 and enc["input_ids"][0].tolist() == full[-80:]
    # A batch that fits is encoded exactly as without a limit.
    fits = [format_prompt(p, tok) for p in PROMPTS]
    plain = tok(fits, return_tensors="pt", padding=True, add_special_tokens=False)
    enc, cut = encode_prompts(tok, fits, 80)
    assert cut == 0 and enc["input_ids"].tolist() == plain["input_ids"].tolist()
    out, _, _ = sample_responses(model, tok, prompts, GenerateConfig(k=2, max_new_tokens=48), "cpu", progress=False)
    assert len(out) == 2 and all(len(x) == 2 for x in out)


def test_a_damaged_model_folder_is_named_before_anything_loads(tmp_path):
    import json
    import shutil

    from tasks.errors import DataError
    from tasks.policy import RULE, check_model_folder, tiny_gpt, train_tokenizer

    good = tmp_path / "good"
    tok = train_tokenizer(PROMPTS * 5, 280)
    tiny_gpt(len(tok), 1, 1, 8, 32, tok.eos_token_id).save_pretrained(good)
    tok.save_pretrained(good)
    check_model_folder(good)                                     # a healthy folder passes

    def damaged(name, harm):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        harm(folder)
        with pytest.raises(DataError) as exc:
            check_model_folder(folder)
        assert exc.value.rule == RULE
        return exc.value

    err = damaged("no-config", lambda f: (f / "config.json").unlink())
    assert err.path.endswith("no-config/config.json") and "cannot be read" in err.detail
    err = damaged("no-type", lambda f: (f / "config.json").write_text(json.dumps({"n_layer": 1})))
    assert "no model_type" in err.detail
    err = damaged("empty-weights", lambda f: (f / "model.safetensors").write_bytes(b""))
    assert err.path.endswith("empty-weights/model.safetensors") and "empty (0 bytes)" in err.detail
    # The first bytes overwritten: the 8-byte header length now claims more than the file holds.
    err = damaged("garbled", lambda f: (f / "model.safetensors").write_bytes(
        b"\xff" * 8 + (f / "model.safetensors").read_bytes()[8:]))
    assert "header is damaged" in err.detail
    err = damaged("no-weights", lambda f: (f / "model.safetensors").unlink())
    assert err.path.endswith("no-weights") and "no weights file" in err.detail
    with pytest.raises(DataError, match="no such folder"):
        check_model_folder(tmp_path / "missing")
    # load_policy checks first: the user sees the rule and the path, not a transformers traceback.
    from tasks.policy import load_policy

    with pytest.raises(DataError, match="empty-weights/model.safetensors"):
        load_policy(tmp_path / "empty-weights")


def test_generate_responses_keeps_the_prompts_order_sorted_or_not_and_counts_cut_prompts(tmp_path):
    import dataclasses

    from tasks.config import parse_params
    from tasks.genbackend import generate_responses
    from tasks.policy import tiny_gpt, train_tokenizer

    tok = train_tokenizer(PROMPTS * 20, 300)
    tiny_gpt(len(tok), 1, 1, 16, 64, tok.eos_token_id).save_pretrained(tmp_path)     # 64 positions
    tok.save_pretrained(tmp_path)
    long = " ".join(PROMPTS) * 3                                  # far over 64 - 8 = 56 tokens
    prompts = [long, PROMPTS[1], PROMPTS[2], PROMPTS[0]]
    params = parse_params({"generate": {"k": 2, "batch_size": 2, "max_new_tokens": 8}})
    plain = generate_responses(str(tmp_path), prompts, params.generate, "cpu", params.scale)
    cfg = dataclasses.replace(params.generate, sort_by_length=True)
    by_length = generate_responses(str(tmp_path), prompts, cfg, "cpu", params.scale)
    for responses, _, _, cut in (plain, by_length):
        assert len(responses) == 4 and all(len(r) == 2 for r in responses) and cut == 1
    # Near-greedy sampling (temperature 1e-4) gives each prompt the same texts in any batch, at any seed (left
    # padding is masked): so the sorted run must return exactly the plain run's rows, in the prompts' order.
    cold = dataclasses.replace(params.generate, temperature=1e-4, max_new_tokens=6)
    a = generate_responses(str(tmp_path), prompts, cold, "cpu", params.scale)[0]
    b = generate_responses(str(tmp_path), prompts, dataclasses.replace(cold, sort_by_length=True), "cpu",
                           params.scale)[0]
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert sorted(range(4), key=lengths.__getitem__) != [0, 1, 2, 3]       # the sort does reorder them
    assert len({tuple(r) for r in a}) > 1                                  # rows that a mix-up would show
    assert a == b

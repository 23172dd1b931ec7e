"""Training rows read what generation wrote: the separator between a prompt and its response follows the prompt
format, and a prompt too long for the context is cut from the left so the response and its EOS stay whole."""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import pytest

from tasks.prompting import completion_separator, completion_text, format_prompt, join_completion, with_response

TEXTS = ["How do I bake bread? Mix flour, water and yeast, then bake it.",
         "Tell me a joke. Why did the chicken cross the road?", "Which fruit is red? An apple is red.",
         "apple apple red red red bread bread"] * 30
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tok(chat: bool = False):
    from tasks.policy import train_tokenizer

    tok = train_tokenizer(TEXTS, 300)
    if chat:
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tok.chat_template = CHATML
    return tok


def _generated_text(tok, ids: list[int]) -> str:
    """What generation keeps of sampled ids ``ids`` followed by EOS (tasks/rollout.py: decode, skip specials,
    strip)."""
    return tok.batch_decode([ids + [tok.eos_token_id]], skip_special_tokens=True)[0].strip()


def test_separator_follows_the_prompts_end():
    assert completion_separator("Q: Hi\nA:") == " "
    assert completion_separator("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") == ""
    assert completion_separator("[INST] Hi [/INST]") == " "
    assert join_completion("Q: Hi\nA:", "Hello") == "Q: Hi\nA: Hello"
    assert join_completion("<|im_start|>assistant\n", "Hello") == "<|im_start|>assistant\nHello"


@pytest.mark.parametrize("chat, written", [(True, "An apple is red."),      # after `assistant\n`: no space
                                           (False, " An apple is red.")])   # after `A:`: a space-led word
def test_training_row_holds_the_tokens_generation_wrote(chat, written):
    # The model writes `written` after the prompt; generation keeps its stripped text; the training row built
    # from that text, tokenized as TRL tokenizes it (prompt + completion + EOS), must hold the same ids.
    tok = _tok(chat)
    prompt = format_prompt("Which fruit is red?", tok)
    assert prompt.endswith("<|im_start|>assistant\n" if chat else "\nA:")
    gen = tok(written, add_special_tokens=False)["input_ids"]
    row = tok(prompt + completion_text(prompt, _generated_text(tok, gen)) + tok.eos_token)["input_ids"]
    prompt_ids = tok(prompt)["input_ids"]
    assert row == prompt_ids + gen + [tok.eos_token_id]
    first = tok.convert_ids_to_tokens(row[len(prompt_ids)])
    assert first.startswith("Ġ") != chat, first       # no leading-space token after `assistant\n`; Q:/A: keeps it


def test_reward_text_uses_the_same_separator():
    tok = _tok(chat=True)
    assert with_response("Hi", "Hello", tok) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello"
    assert with_response("Hi", "Hello") == "Q: Hi\nA: Hello"


# --- truncation: a 96-token prompt, a 48-token response and EOS in a 128-token context --------------------------

N_POS, PROMPT_LEN, COMPLETION_LEN = 128, 96, 48
KEPT = N_POS - COMPLETION_LEN - 1          # 79 prompt tokens stay beside the 48 response tokens and EOS


@pytest.fixture(scope="module")
def long_row():
    """(tokenizer, prompt text of exactly 96 tokens, completion text of exactly 48 tokens)."""
    tok = _tok()
    words = 1
    while len(tok(format_prompt(" ".join(["apple"] * words)))["input_ids"]) < PROMPT_LEN:
        words += 1
    prompt = format_prompt(" ".join(["apple"] * words))
    completion = completion_text(prompt, " ".join(["red"] * COMPLETION_LEN))
    assert len(tok(prompt)["input_ids"]) == PROMPT_LEN
    assert len(tok(completion)["input_ids"]) == COMPLETION_LEN
    return tok, prompt, completion


def test_fit_prompt_cuts_the_prompt_from_the_left(long_row):
    from tasks.rollout import fit_prompt, fit_rows

    tok, prompt, completion = long_row
    ids = tok(prompt)["input_ids"]
    cut = fit_prompt(tok, prompt, [completion], N_POS)
    assert tok(cut)["input_ids"] == ids[-KEPT:]                     # 96 - 79 = 17 tokens dropped at the start
    assert cut.endswith("\nA:")
    assert fit_prompt(tok, prompt, [completion], None) == prompt
    assert fit_prompt(tok, prompt, [completion], PROMPT_LEN + COMPLETION_LEN + 1) == prompt   # fits: unchanged
    # A pair is cut for its longer completion; a completion that leaves room for one prompt token keeps one.
    row = fit_rows(tok, [{"prompt": prompt, "chosen": completion, "rejected": " red"}], N_POS)[0]
    assert tok(row["prompt"])["input_ids"] == ids[-KEPT:] and row["chosen"] == completion
    longest = completion_text(prompt, " ".join(["red"] * (N_POS - 2)))        # 126 tokens + EOS + 1 prompt token
    assert tok(fit_prompt(tok, prompt, [longest], N_POS))["input_ids"] == ids[-1:]
    # One that cannot fit even so keeps its whole prompt: cutting the context would not save its tail.
    assert fit_prompt(tok, prompt, [completion * 3], N_POS) == prompt
    no_eos = copy.deepcopy(tok)
    no_eos.eos_token = None
    assert fit_prompt(no_eos, prompt, [completion], N_POS).endswith("\nA:")       # no EOS token: no TypeError


def _run(tmp_path, tok, cfg, data, **extra):
    from tasks.policy import tiny_gpt

    model = tiny_gpt(len(tok), 1, 1, 8, N_POS, tok.eos_token_id)
    common = SimpleNamespace(checkpoint_every=0, seed=0, algorithm="test", log_every=1)
    return SimpleNamespace(cfg=cfg, common=common, policy=model, reference=tiny_gpt(len(tok), 1, 1, 8, N_POS,
                                                                                   tok.eos_token_id),
                           tok=tok, data=data, callbacks=[], checkpoint_dir=tmp_path, precision=None,
                           table=lambda rows, name: None, **extra)


def _trainer_of(monkeypatch, train, run):
    """The TRL trainer ``train(run)`` builds, caught before it trains."""
    import tasks.algorithms.base as base

    class Built(Exception):
        pass

    def catch(trainer, run, phase=""):
        raise Built(trainer)

    monkeypatch.setattr(base, "fit", catch)
    with pytest.raises(Built) as built:
        train(run)
    return built.value.args[0]


def test_bootstrap_sft_keeps_the_response_and_eos_whole(long_row):
    from tasks.bootstrap import _sft_examples

    tok, prompt, completion = long_row
    response = completion.strip()                      # a demonstration's response, as the corpus holds it
    p_ids = tok(prompt)["input_ids"]
    r_ids = tok(completion)["input_ids"] + [tok.eos_token_id]
    demo = {"prompt": " ".join(["apple"] * (prompt.count("apple"))), "response": response}
    (ids, plen), = _sft_examples(tok, [demo], N_POS)
    # 96 + 48 + 1 = 145 > 128: the first 17 prompt tokens go, the response and EOS stay, the loss starts after 79.
    assert ids == p_ids[-KEPT:] + r_ids and plen == KEPT and len(ids) == N_POS
    # A row that fits is whole; a response too long for any prompt token keeps the prompt's last token and loses
    # its own tail: 1 prompt token + the first 47 of the 49 response tokens (with EOS) in 48.
    assert _sft_examples(tok, [demo], 200) == [(p_ids + r_ids, PROMPT_LEN)]
    (ids, plen), = _sft_examples(tok, [demo], COMPLETION_LEN)
    assert ids == p_ids[-1:] + r_ids[:COMPLETION_LEN - 1] and plen == 1


def test_best_of_n_keeps_the_response_and_eos_whole(long_row, tmp_path, monkeypatch):
    import tasks.rollout
    from tasks.algorithms import best_of_n

    tok, prompt, completion = long_row
    response = completion.strip()
    monkeypatch.setattr(tasks.rollout, "sample_batches",
                        lambda model, tok, part, n, **kw: iter([(SimpleNamespace(texts=[response] * n * len(part)),
                                                                0.0)]))
    raw = prompt.removeprefix("Q: ").removesuffix("\nA:")
    run = _run(tmp_path, tok, best_of_n.Config(n=2, batch_size=1), [raw],
               reward=lambda prompts, responses: [1.0] * len(responses))
    row = _trainer_of(monkeypatch, best_of_n.train, run).train_dataset[0]
    ids, completion_ids = tok(prompt)["input_ids"], tok(completion)["input_ids"]
    assert row["input_ids"] == ids[-KEPT:] + completion_ids + [tok.eos_token_id]      # 128 tokens, EOS last
    assert row["labels"] == [-100] * KEPT + completion_ids + [tok.eos_token_id]


def test_kto_keeps_the_response_and_eos_whole(long_row, tmp_path, monkeypatch):
    from tasks.algorithms import kto

    tok, prompt, completion = long_row
    data = [{"prompt": prompt, "completion": completion, "label": True},
            {"prompt": prompt, "completion": completion, "label": False}]
    trainer = _trainer_of(monkeypatch, kto.train, _run(tmp_path, tok, kto.Config(batch_size=2), data))
    row = trainer.train_dataset[0]
    assert row["prompt_ids"] == tok(prompt)["input_ids"][-KEPT:]
    assert row["completion_ids"] == tok(completion)["input_ids"] + [tok.eos_token_id]
    # What the model reads: the collator's 128-token cut keeps every response token and EOS.
    batch = trainer.data_collator([{k: row[k] for k in ("prompt_ids", "completion_ids", "label")}])
    assert batch["input_ids"][0].tolist() == row["prompt_ids"] + row["completion_ids"]


def test_dpo_cuts_the_prompt_not_the_responses_without_keep_end(long_row, tmp_path, monkeypatch):
    from tasks.algorithms import dpo

    tok, prompt, completion = long_row
    data = [{"prompt": prompt, "chosen": completion, "rejected": completion_text(prompt, "bread")}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _trainer_of(monkeypatch, dpo.train, _run(tmp_path, tok, dpo.Config(batch_size=1), data))
    assert not [w for w in caught if "keep_end" in str(w.message)]
    assert trainer.args.truncation_mode == "keep_start"
    row = trainer.train_dataset[0]
    assert row["prompt_ids"] == tok(prompt)["input_ids"][-KEPT:]
    assert row["chosen_ids"] == tok(completion)["input_ids"] + [tok.eos_token_id]
    batch = trainer.data_collator([{k: row[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}])
    assert batch["input_ids"][0].tolist() == row["prompt_ids"] + row["chosen_ids"]     # 128 tokens, EOS last

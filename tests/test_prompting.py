"""Prompts as text or chat: one formatting function, conversation rules, and the HH-RLHF importer."""

import json

import pytest

from conftest import SHARED_HH
from tasks.importers.hh import dialogue_text, parse_dialogue, split_pair
from tasks.prompting import (conversation_problems, format_prompt, last_user_turn, prompt_key, prompt_of,
                             with_response)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a fruit."}]


def test_simple_template_for_text_and_chat():
    assert format_prompt("Review the pie.") == "Q: Review the pie.\nA:"
    assert format_prompt(CHAT) == "Be brief.\nQ: Hi there\nA: Hello!\nQ: Name a fruit.\nA:"
    assert with_response("Review the pie.", "It was great.") == "Q: Review the pie.\nA: It was great."


class TemplateTokenizer:
    """A stand-in for an instruct model's tokenizer with a chat template."""
    chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


def test_chat_template_is_used_when_the_tokenizer_has_one():
    assert format_prompt("Hi", TemplateTokenizer()) == "<|user|>Hi<|assistant|>"
    assert format_prompt(CHAT, TemplateTokenizer()).startswith("<|system|>Be brief.<|user|>Hi there")


def test_real_chat_template_round_trip():
    # A transformers tokenizer with a real Jinja chat template: the rendered text holds every turn in
    # order and ends with the generation prompt.
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>"
                         "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    text = format_prompt(CHAT, tok)
    assert text == ("<system>Be brief.</system><user>Hi there</user><assistant>Hello!</assistant>"
                    "<user>Name a fruit.</user><assistant>")


def test_prompt_of_and_keys():
    assert prompt_of({"id": 1, "prompt": "x"}) == "x"
    assert prompt_of({"id": 1, "messages": CHAT}) == CHAT
    assert last_user_turn(CHAT) == "Name a fruit."
    assert prompt_key("  Review THE pie. ") == prompt_key("review the pie.")
    assert prompt_key(CHAT) != prompt_key(CHAT[:2])


@pytest.mark.parametrize("messages, problem", [
    ([], "non-empty list"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "end with the user"),
    ([{"role": "assistant", "content": "b"}, {"role": "user", "content": "a"}], "alternate"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
    ([{"role": "user", "content": "  "}], "empty content"),
    ([{"role": "robot", "content": "a"}], "role 'robot'"),
    ([{"role": "user", "content": "a", "name": "x"}], "exactly 'role' and 'content'"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "user", "content": "b"}],
     "system message may only come first"),
])
def test_conversation_rules(messages, problem):
    assert any(problem in p for p in conversation_problems(messages)), conversation_problems(messages)


def test_valid_conversation_has_no_problems():
    assert conversation_problems(CHAT) == [] and conversation_problems(CHAT[1:]) == []


def test_hh_dialogue_parse_and_back():
    text = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6."
    msgs = parse_dialogue(text)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[2]["content"] == "And 3+3?" and dialogue_text(msgs) == text


def test_hh_pair_split_and_drops():
    shared = "\n\nHuman: Tell me a joke.\n\nAssistant: Why?\n\nHuman: Just do it."
    pair, why = split_pair(shared + "\n\nAssistant: Knock knock.", shared + "\n\nAssistant: No.")
    assert why == "" and pair.chosen == "Knock knock." and pair.rejected == "No."
    assert pair.messages[-1] == {"role": "user", "content": "Just do it."} and len(pair.messages) == 3
    other = "\n\nHuman: Something else.\n\nAssistant: Sure."
    assert split_pair(shared + "\n\nAssistant: A.", other)[1] == "chosen and rejected differ before the final reply"
    assert split_pair("no dialogue", "no dialogue")[0] is None
    assert split_pair(shared + "\n\nAssistant: Same.", shared + "\n\nAssistant: Same.")[1].endswith("equal")


def test_hh_importer_on_the_shared_file():
    if not SHARED_HH.exists():
        pytest.skip(f"{SHARED_HH} not found: the HH-RLHF sample lives in ../shared, outside the repository")
    rows = [json.loads(line) for line in SHARED_HH.read_text().splitlines()]
    results = [split_pair(r["chosen"], r["rejected"]) for r in rows]
    kept = [p for p, _ in results if p is not None]
    # Nearly every real pair shares its prefix; the few that do not are reported, never mangled.
    assert len(rows) == 1200 and len(kept) >= 1100
    for p in kept:
        assert conversation_problems(p.messages) == [] and p.chosen != p.rejected
    # The split is lossless: prefix + reply gives back the original dialogue (up to whitespace).
    r, p = rows[0], kept[0]
    assert " ".join(dialogue_text(p.messages + [{"role": "assistant", "content": p.chosen}]).split()) == \
        " ".join(r["chosen"].split())


@pytest.mark.parametrize("ids, rule, rows", [
    # 7 and "7" become the same id once written as strings: one canonical form, so one of them must go.
    ([7, "7"], "unique ids, ignoring case", [2]),
    # P1 and p1 name two files on Linux and one on macOS, and one task in a case-folding search.
    (["P1", "p1", "p2"], "unique ids, ignoring case", [2]),
    # " p1" would be a different id from "p1" to the pipeline and the same one to a person reading it.
    (["p1", " p2", "p3 "], "id is a non-empty string without surrounding whitespace, or an integer", [2, 3]),
    # Floats, booleans, nulls and lists have no canonical string form an id can rely on.
    ([1.5, True, None, ["a"], ""], "id is a non-empty string without surrounding whitespace, or an integer",
     [1, 2, 3, 4, 5]),
])
def test_ids_have_one_canonical_form(ids, rule, rows):
    from tasks.errors import DataError
    from tasks.prepare import check_ids

    raw = [{"id": i, "prompt": f"Review the soup number {n}."} for n, i in enumerate(ids)]
    with pytest.raises(DataError) as exc:
        check_ids(raw, "data/corpus/prompts.jsonl")
    assert exc.value.rule.startswith(rule) and [r for r, _ in exc.value.rows] == rows
    assert exc.value.column == "id" and "data/corpus/prompts.jsonl" in str(exc.value)


def test_integer_ids_are_canonical_strings_and_a_repeated_text_lands_on_one_side():
    from tasks.prepare import check_ids, split_prompts

    rows = [{"id": 7, "prompt": "Review the soup."}, {"id": "p8", "prompt": "review the SOUP."}]
    rows += [{"id": f"q{i}", "prompt": f"Review dish {i}."} for i in range(20)]
    check_ids(rows, "x")                                  # an integer id and string ids side by side are fine
    out = split_prompts(rows, 0.5, 0)
    assert out[0]["id"] == "7" and out[1]["id"] == "p8"
    assert out[0]["split"] == out[1]["split"]             # the same text under two ids: one side of the split

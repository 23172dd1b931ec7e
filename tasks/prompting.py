"""Prompts as text or as chat, and the one function that turns a prompt into what a model reads.

A prompt is either a string or a conversation: a list of ``{"role", "content"}``
messages (the OpenAI / TRL conversational format), multi-turn allowed, ending
with the user's turn. A prompts row carries one of the two as ``prompt`` or
``messages``.

``format_prompt`` is the only place that renders a prompt for a model. With a
tokenizer that has a chat template it calls
``tokenizer.apply_chat_template(messages, add_generation_prompt=True)``; without
one (the tiny default policy, and the MiniLM reward model's input text) it uses
the project's simple template::

    Q: <user turn>
    A: <assistant turn>
    Q: <user turn>
    A:

so a single-turn prompt is ``Q: <prompt>\\nA:`` and the response follows after
one space. Generate, optimize, evaluate, the judges and the reward model all
go through it.

``join_completion`` is the only place that puts a response after its rendered
prompt (a training row's completion, a reward model's text): one space after a
prompt that ends without whitespace (``A:``), none after one that ends with it
(a chat template's ``<|im_start|>assistant\\n``), so training reads the tokens
generation wrote (see ``completion_separator``).
"""

from __future__ import annotations

import json
from typing import Any, Union

from tasks.text import normalize, text_problem

Prompt = Union[str, list]
ROLES = ("system", "user", "assistant")


def prompt_of(row: dict) -> Prompt:
    """The prompt of a prompts row: its ``messages`` if it has them, else its ``prompt`` text."""
    messages = row.get("messages")
    if messages is not None:
        return messages
    return row["prompt"]


def label_prompt(row: dict, prompts: dict) -> Prompt:
    """The prompt of a label or rating row: its own ``prompt`` or ``messages`` (a preference file people wrote),
    else the prompt of the cycle its ``prompt_id`` names (``prompts``: id -> prompt; KeyError if it names none)."""
    return prompt_of(row) if ("prompt" in row or "messages" in row) else prompts[str(row["prompt_id"])]


def as_messages(prompt: Prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def simple_template(messages: list[dict]) -> str:
    """``Q: ...\\nA: ...`` turns; a system message becomes a leading line of its own."""
    lines = []
    for m in messages:
        if m["role"] == "system":
            lines.append(m["content"])
        elif m["role"] == "user":
            lines.append(f"Q: {m['content']}")
        else:
            lines.append(f"A: {m['content']}")
    return "\n".join(lines) + "\nA:"


def has_chat_template(tok) -> bool:
    return bool(getattr(tok, "chat_template", None))


def format_prompt(prompt: Prompt, tok=None) -> str:
    """The text a model reads before its response (see the module docstring)."""
    messages = as_messages(prompt)
    if tok is not None and has_chat_template(tok):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return simple_template(messages)


def completion_separator(prompt_text: str) -> str:
    """What goes between a rendered prompt and its response: ``" "`` or ``""``.

    Generation decodes the new tokens and strips the text (``tasks/rollout.py``), so the whitespace the
    model wrote first is gone from a response; this puts it back from the prompt's end. After ``A:`` (the
    simple template; also ``[/INST]``-style templates) a model writes a space-led word (`` Hello``): one
    space. After whitespace (a chat template's ``<|im_start|>assistant\\n``) it writes the word itself
    (``Hello``): nothing, or training would put a space token there that generation never writes."""
    return "" if not prompt_text or prompt_text[-1].isspace() else " "


def completion_text(prompt_text: str, response: str) -> str:
    """A training row's ``completion`` for ``response`` (a stripped, generated or labelled text) after the
    rendered ``prompt_text``: the separator, then the response."""
    return completion_separator(prompt_text) + response


def join_completion(prompt_text: str, response: str) -> str:
    """The rendered prompt and its response as one text (``completion_separator`` between them)."""
    return prompt_text + completion_text(prompt_text, response)


def with_response(prompt: Prompt, response: str, tok=None) -> str:
    """Prompt and response as one text: what a reward model or a scoring judge reads."""
    return join_completion(format_prompt(prompt, tok), response)


def last_user_turn(prompt: Prompt) -> str:
    """The request a response answers: the text itself, or the conversation's final user message."""
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")


def prompt_key(prompt: Prompt) -> str:
    """A normalised, hashable form of a prompt: equal keys mean 'the same prompt' for splits and lookups."""
    if isinstance(prompt, str):
        return normalize(prompt)
    return json.dumps([[m["role"], normalize(m["content"])] for m in prompt])


def rows_by_prompt(rows: list[dict]):
    """``rows_of(prompts)``: the prompts file's row of each prompt (its reference fields), found by
    ``prompt_key``; None for a prompt no row has. Rows that share a prompt carry the same reference fields (the
    prompts' validation checks it where a grader reads them), so the first one stands for them."""
    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(prompt_key(prompt_of(r)), r)

    def rows_of(prompts: list) -> list[dict | None]:
        return [by.get(prompt_key(p)) for p in prompts]
    return rows_of


def conversation_problems(messages: Any) -> list[str]:
    """Why a ``messages`` value is not a valid prompt conversation (empty list: it is valid).

    Rules: a non-empty list of ``{role, content}`` objects; roles in
    system/user/assistant; an optional system message first; then user and
    assistant alternate, starting and ending with the user; no empty content.
    """
    if not isinstance(messages, list) or not messages:
        return ["messages must be a non-empty list of {role, content} objects"]
    problems = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            return [f"message {i} must be an object with exactly 'role' and 'content'"]
        if m["role"] not in ROLES:
            problems.append(f"message {i} has role {m['role']!r} (allowed: {', '.join(ROLES)})")
        if not isinstance(m["content"], str) or not m["content"].strip():
            problems.append(f"message {i} has empty content")
        elif text_problem(m["content"]):
            problems.append(f"message {i} content is {text_problem(m['content'])}")
    if problems:
        return problems
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if any(m["role"] == "system" for m in turns):
        problems.append("a system message may only come first")
    expected = "user"
    for i, m in enumerate(turns):
        if m["role"] != "system" and m["role"] != expected:
            problems.append(f"roles must alternate user/assistant starting with user; turn {i} is {m['role']!r}")
            break
        expected = "assistant" if expected == "user" else "user"
    if turns and turns[-1]["role"] != "user":
        problems.append("the conversation must end with the user's turn")
    if not turns:
        problems.append("the conversation has no user turn")
    return problems

"""HH-RLHF dialogues (``\\n\\nHuman: ... \\n\\nAssistant: ...``) into chat messages, prompts and preference pairs.

The HH-RLHF format (Anthropic's public hh-rlhf data, and many sets built like
it) stores each preference as two full dialogues, ``chosen`` and ``rejected``,
that share every turn but the last assistant reply. ``split_pair`` cuts off the
shared prefix: the conversation up to the final user turn becomes the prompt
(in the messages form), and the two final replies become chosen and rejected.
A pair whose prefixes differ, whose final turn is not the assistant's, whose
shared conversation breaks the prompt rules (turns that do not alternate, an
empty turn), or whose replies are empty or equal, is not a clean preference over
one prompt: it is reported with the reason and left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
ROLE = {"Human": "user", "Assistant": "assistant"}


class FormatError(ValueError):
    """The text is not an HH-RLHF dialogue."""


def parse_dialogue(text: str) -> list[dict]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` -> ``[{user: hi}, {assistant: hello}]`` (contents stripped)."""
    if not isinstance(text, str):
        raise FormatError("dialogue is not a string")
    parts = _TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise FormatError("dialogue does not start with '\\n\\nHuman:'")
    return [{"role": ROLE[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


@dataclass(frozen=True)
class Pair:
    messages: list          # the shared conversation, ending with the user's turn
    chosen: str
    rejected: str


def split_pair(chosen: str, rejected: str) -> tuple[Pair | None, str]:
    """(pair, "") or (None, reason it was dropped)."""
    try:
        c, r = parse_dialogue(chosen), parse_dialogue(rejected)
    except FormatError as exc:
        return None, f"not an HH-RLHF dialogue: {exc}"
    if c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant":
        return None, "the final turn is not the assistant's"
    if c[:-1] != r[:-1]:
        return None, "chosen and rejected differ before the final reply"
    prompt = c[:-1]
    from tasks.prompting import conversation_problems

    problems = conversation_problems(prompt)
    if problems:
        return None, f"the shared conversation is not a valid prompt: {problems[0].split(';')[0]}"
    if not c[-1]["content"] or not r[-1]["content"]:
        return None, "an empty final reply"
    if c[-1]["content"] == r[-1]["content"]:
        return None, "chosen and rejected replies are equal"
    return Pair(prompt, c[-1]["content"], r[-1]["content"]), ""


def dialogue_text(messages: list[dict]) -> str:
    """Messages back into the HH-RLHF text form (the inverse of ``parse_dialogue`` on stripped turns)."""
    back = {v: k for k, v in ROLE.items()}
    return "".join(f"\n\n{back[m['role']]}: {m['content']}" for m in messages)

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

from tasks.io import read_jsonl, write_jsonl
from tasks.prompting import conversation_problems, simple_template

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


SPLITS = {"pairs": 0.35, "gold_pairs": 0.3, "heldout_pairs": 0.1, "prompts": 0.25}


def import_file(src, out_dir, *, seed: int = 0, max_prompt_chars: int = 400, limit: int | None = None) -> dict:
    """Split an HH-RLHF file into the inputs of a cycle on a user task (``examples/hh-rlhf``).

    The rows are shuffled with ``seed`` and cut into four disjoint shares
    (``SPLITS``): ``pairs.jsonl`` (human labels for the cycle's reward model,
    kept in the HH format for ``label.source: file``), ``gold_pairs.jsonl`` (for
    a gold reward model, the independent judge), ``heldout_pairs.jsonl``
    (``evaluate.human_pairs``) and ``prompts.jsonl`` (the policy's prompts, in
    the messages form, only conversations of at most ``max_prompt_chars``
    characters). From the ``pairs`` share it also writes a corpus for a tiny
    policy: ``texts.jsonl`` (whole chosen dialogues in the Q:/A: template) and
    ``demos.jsonl`` (conversation and chosen reply). Malformed pairs are
    counted per reason and left out.
    """
    import json
    import random
    from collections import Counter
    from pathlib import Path

    rows = read_jsonl(src)
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    cuts, start = {}, 0
    for i, (name, share) in enumerate(SPLITS.items()):
        end = len(rows) if i == len(SPLITS) - 1 else start + round(share * len(rows))
        cuts[name] = rows[start:end]
        start = end
    out = Path(out_dir)
    dropped = Counter()
    parsed = {}
    for name, part in cuts.items():
        kept = []
        for r in part:
            pair, why = split_pair(r["chosen"], r["rejected"])
            if pair is None:
                dropped[why] += 1
            else:
                kept.append((r, pair))
        parsed[name] = kept
    for name in ("pairs", "gold_pairs", "heldout_pairs"):
        write_jsonl(out / f"{name}.jsonl", [{"chosen": r["chosen"], "rejected": r["rejected"]} for r, _ in parsed[name]])
    prompts = [p.messages for _, p in parsed["prompts"] if len(simple_template(p.messages)) <= max_prompt_chars]
    write_jsonl(out / "prompts.jsonl", [{"id": f"hh{i:05d}", "messages": m, "source": "hh-rlhf"}
                                        for i, m in enumerate(prompts)])
    train = [p for _, p in parsed["pairs"]]
    write_jsonl(out / "texts.jsonl", [{"text": f"{simple_template(p.messages)} {p.chosen}"} for p in train])
    write_jsonl(out / "demos.jsonl", [{"messages": p.messages, "response": p.chosen} for p in train])
    counts = {name: len(v) for name, v in parsed.items()}
    counts.update(prompts=len(prompts), source_rows=len(rows), dropped=sum(dropped.values()))
    (out / "import.json").write_text(json.dumps({**counts, "dropped_reasons": dict(dropped), "seed": seed},
                                                indent=2) + "\n")
    return counts

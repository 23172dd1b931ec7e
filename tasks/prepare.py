"""The work of stage ``prepare`` (its adapter: ``tasks/stages/prepare.py``): split raw prompts into ``train`` and
``heldout`` with no prompt in both.

A raw row has an ``id`` and either ``prompt`` (text) or ``messages`` (a chat
conversation: a list of ``{role, content}``, ending with the user's turn). A
prompt's side is a salted hash of its normalised text (``tasks/heldout.py``,
``tasks/prompting.py::prompt_key``), not of its row or its place in the file, so
two rows with the same prompt (after case and whitespace folding) always land on
the same side, and a prompt keeps its side as others are added or removed.
Held-out prompts are also never the prompt of a bootstrap demonstration, and,
before anything is written, never a prompt an earlier ``optimize`` run trained on
(``tasks/provenance.py``), so evaluation runs on prompts the policy has not been
trained on. The checks of the conversation's shape are the validate stage's.

Any other field of a raw row (``reference``, ``tests``, whatever a grader's config names) travels through to
the prepared row unchanged.

Ids take one canonical form (``check_ids``): strings, or integers written as decimal strings. The same
prompt text under two ids is accepted, lands on one side of the split, and is counted (``repeated_texts``).
"""

from __future__ import annotations

from tasks.errors import DataError
from tasks.heldout import is_heldout, prompt_digest
from tasks.prompting import prompt_key, prompt_of


def check_ids(rows: list[dict], path) -> None:
    """One canonical form for ids: a non-empty string without surrounding whitespace, or an integer (written
    as its decimal string). Two ids that are one id ignoring case (``P1`` and ``p1``, ``7`` and ``"7"``) are
    refused: files, URLs and Label Studio tasks would mix them up. A DataError names the rows."""
    bad = [(i, repr(r["id"])[:60]) for i, r in enumerate(rows, start=1)
           if not ((isinstance(r["id"], int) and not isinstance(r["id"], bool))
                   or (isinstance(r["id"], str) and r["id"].strip() and r["id"] == r["id"].strip()))]
    if bad:
        raise DataError(path, "id is a non-empty string without surrounding whitespace, or an integer",
                        column="id", rows=bad, detail=f"{len(bad)} of {len(rows)} rows")
    first: dict[str, int] = {}
    clashes = []
    for i, r in enumerate(rows, start=1):
        key = str(r["id"]).casefold()
        if key in first:
            clashes.append((i, f"{r['id']!r} is row {first[key]}'s id"))
        first.setdefault(key, i)
    if clashes:
        raise DataError(path, "unique ids, ignoring case (7 and \"7\" are one id)", column="id", rows=clashes,
                        detail=f"{len(clashes)} rows repeat an id")


# The fields prepare writes itself; every other field of a raw row travels through as it is.
OWN_FIELDS = ("id", "prompt", "messages", "split", "source")


def split_prompts(rows: list[dict], heldout_fraction: float, salt: str,
                  train_only: set[str] = frozenset(), keep: set[str] = frozenset()) -> list[dict]:
    """Assign ``split`` to each row from the salted hash of its prompt's canonical text
    (``tasks/heldout.py``), so a prompt keeps its side whatever other prompts come and go. Prompts whose key
    is in ``train_only``, or whose digest is in ``keep`` (``data/incoming/keep_in_train.json``), never go to
    heldout."""
    heldout = {t for t in {prompt_key(prompt_of(r)) for r in rows}
               if t not in train_only and is_heldout(t, salt, heldout_fraction) and prompt_digest(t) not in keep}
    out = []
    for r in rows:
        p = prompt_of(r)
        out.append({"id": str(r["id"]), ("messages" if isinstance(p, list) else "prompt"): p,
                    "split": "heldout" if prompt_key(p) in heldout else "train",
                    "source": r.get("source", "unknown"),
                    # the row's other fields (reference answers, tests): what graders read
                    **{k: v for k, v in r.items() if k not in OWN_FIELDS}})
    return out



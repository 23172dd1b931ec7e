"""The arithmetic example's python grader (``judges.checked`` in ``examples/arithmetic/params.yaml``).

``checked`` recomputes the answer from the question itself and compares it with the response's ``Answer: <n>``,
so it checks the prompts' ``answer`` fields as well as the policy: the ``correct`` grader (string_check against
the field) and this one agree on every response exactly when the fields are right. It runs in the python
grader's worker processes (``tasks/judges/python_grader.py``), which import nothing of the project.
"""

import re

QUESTION = re.compile(r"(\d+)\s*([-+*])\s*(\d+)")
ANSWER = re.compile(r"Answer:\s*(-?\d+)")


def checked(prompt_row: dict, response: str) -> float:
    """1.0 when the response's ``Answer: <n>`` is the result of the question's ``a op b``, else 0.0."""
    q = QUESTION.search(prompt_row["prompt"])
    if q is None:
        raise ValueError(f"no 'a op b' in the question {prompt_row['prompt']!r}")
    a, op, b = int(q.group(1)), q.group(2), int(q.group(3))
    right = a + b if op == "+" else a - b if op == "-" else a * b
    got = ANSWER.search(response)
    return float(got is not None and int(got.group(1)) == right)

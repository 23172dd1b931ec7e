"""Data expectations (Great Expectations suites) on good and bad fixtures.

Each bad fixture is commented with the failure it guards against. A failure
must name the file, the column, the rule and example rows.
"""

from pathlib import Path

import pytest

from tasks.config import ValidateConfig
from tasks.errors import DataError, DataValidationError
from tasks.validate import validate_labels_file, validate_prompts_file

FIX = Path(__file__).parent / "fixtures"
CFG = ValidateConfig()
RULE_BLANK = ("prompt is not blank (once whitespace, control and invisible format characters such as zero-width "
              "spaces are removed) and holds no control characters but tab and newline")
RULE_RESPONSE = "no empty responses (chosen and rejected are non-blank text; a chat reply is given as its text)"
RULE_CHAT = ("messages: roles alternate user/assistant (optional system first), end with the user's turn, "
             "no empty content, each at most 512 characters")


def _prompts(name, tmp_path):
    return validate_prompts_file(CFG, FIX / name, demos=None, docs_dir=tmp_path / "docs", tokenizer_dir=None)


def _labels(name, tmp_path):
    return validate_labels_file(CFG, FIX / name, prompts=FIX / "prompts_good.jsonl", docs_dir=tmp_path / "docs")


def test_good_prompts_pass_and_write_data_docs(tmp_path):
    summary = _prompts("prompts_good.jsonl", tmp_path)
    # columns, 3 not-null, one prompt form, text length, not blank, unique ids, split, leakage
    assert summary == {"rows": 4, "train": 2, "heldout": 2, "rules": 10, "chat_prompts": 0}
    from tasks.validate import docs_page

    page = docs_page(tmp_path / "docs")
    assert "validations" in page.parts and "Succeeded" in page.read_text()


def test_chat_prompts_pass(tmp_path):
    assert _prompts("prompts_chat_good.jsonl", tmp_path)["chat_prompts"] == 2


def test_token_bound_uses_the_policys_tokenizer(tmp_path):
    # The bound is in tokens of the formatted prompt, so it holds whatever the policy's vocabulary.
    import dataclasses

    from tasks.policy import train_tokenizer

    tok = train_tokenizer(["Write a review of the ramen at Blue Door."] * 20, 300)
    tok.save_pretrained(tmp_path / "tok")
    n = len(tok("Q: How do I boil an egg?\nA:")["input_ids"])
    ok = validate_prompts_file(dataclasses.replace(CFG, prompt_max_tokens=200), FIX / "prompts_chat_good.jsonl",
                               demos=None, docs_dir=tmp_path / "d1", tokenizer_dir=tmp_path / "tok")
    assert ok["rows"] == 3
    with pytest.raises(DataValidationError) as exc:
        validate_prompts_file(dataclasses.replace(CFG, prompt_max_tokens=n - 1), FIX / "prompts_chat_good.jsonl",
                              demos=None, docs_dir=tmp_path / "d2", tokenizer_dir=tmp_path / "tok")
    (f,) = [f for f in exc.value.failures if "tokens" in f.rule]
    assert f.rule == f"formatted prompt at most {n - 1} tokens of the policy's tokenizer" and f.rows[0][0] == 1


def test_good_labels_pass(tmp_path):
    assert _labels("labels_good.jsonl", tmp_path)["rows"] == 2


@pytest.mark.parametrize("fixture, column, rule, row", [
    # A producer dropped a column: every downstream join on `split` would break.
    ("prompts_missing_column.jsonl", "split", "columns are exactly the prompts contract (plus reference fields)", None),
    # An empty prompt gives the policy nothing to answer and the judge nothing to judge.
    ("prompts_empty_text.jsonl", "prompt", "prompt length between 8 and 512 characters", 2),
    # Zero-width spaces, a word joiner and a BOM: 12 characters pass the length rule, yet the policy sees nothing.
    ("prompts_zero_width.jsonl", "prompt", RULE_BLANK, 2),
    # No-break, ideographic, em and thin spaces, a tab and a newline: whitespace in every Unicode form.
    ("prompts_whitespace_only.jsonl", "prompt", RULE_BLANK, 3),
    # A NUL and a terminal escape sequence: bytes no reviewer sees, that a tokenizer or a terminal acts on.
    ("prompts_control_chars.jsonl", "prompt", RULE_BLANK, 4),
    # A chat turn of zero-width characters is an empty turn.
    ("prompts_chat_zero_width.jsonl", "messages", RULE_CHAT, 1),
    # Duplicate ids make generations and labels ambiguous (which prompt did they answer?).
    ("prompts_duplicate_ids.jsonl", "id", "unique ids", 1),
    # A held-out prompt that is also a training prompt (after case/space folding) inflates evaluation.
    ("prompts_leakage.jsonl", "prompt", "no held-out prompt inside training data", 4),
    # A split the pipeline does not know would silently drop rows from both sides.
    ("prompts_bad_split.jsonl", "split", "split is train or heldout", 1),
    # A prompt longer than the bound would be truncated away by the tokenizer.
    ("prompts_too_long.jsonl", "prompt", "prompt length between 8 and 512 characters", 1),
    # A chat prompt that ends with the assistant's turn asks the policy to continue its own reply.
    ("prompts_chat_ends_with_assistant.jsonl", "messages", RULE_CHAT, 2),
    # An empty user turn gives the policy nothing to answer.
    ("prompts_chat_empty_content.jsonl", "messages", RULE_CHAT, 1),
    # Text and chat in one row: which one did the policy see?
    ("prompts_both_forms.jsonl", "prompt,messages", "each row has exactly one of prompt (text) or messages (chat)", 1),
    # The same conversation (after case folding) on both sides of the split.
    ("prompts_chat_leakage.jsonl", "prompt", "no held-out prompt inside training data", 2),
])
def test_bad_prompts(fixture, column, rule, row, tmp_path):
    from html import escape as html_escape

    with pytest.raises(DataValidationError) as exc:
        _prompts(fixture, tmp_path)
    failures = {(f.column, f.rule): f for f in exc.value.failures}
    assert (column, rule) in failures, list(failures)
    f = failures[(column, rule)]
    assert fixture in f.path
    if row is not None:
        assert row in [r for r, _ in f.rows]
    msg = str(exc.value)
    assert fixture in msg and rule in msg and "Report: " in msg
    # The report page: the failed rule's row says FAILED, and the page needs no network.
    html = (tmp_path / "docs" / "summary.html").read_text()
    failed = [row for row in html.split("<tr")[2:] if "FAILED" in row]
    assert any(html_escape(rule) in row for row in failed), failed
    assert "<script" not in html and "http" not in html


def test_the_summary_page_shows_each_rule():
    from tasks.validate import summary_html

    rows = [{"rule": "ids are unique", "expectation": "expect_column_values_to_be_unique", "column": "id",
             "passed": False, "outcome": "2 of 4 rows violate it", "examples": ["'p1'", "'p1'"]},
            {"rule": "a <b> rule", "expectation": "expect_x", "column": "", "passed": True, "outcome": "",
             "examples": []}]
    html = summary_html("prompts suite on data/prompts.jsonl", "cycle-3-prompts", rows)
    assert "cycle-3-prompts" in html and "1 of 2 rules failed" in html
    assert '<tr class="bad"><td>FAILED</td><td>ids are unique</td><td>id</td>' in html
    assert "&#x27;p1&#x27;, &#x27;p1&#x27;" in html and "a &lt;b&gt; rule" in html       # escaped
    assert "all rules passed" in summary_html("t", "r", rows[1:])


@pytest.mark.parametrize("fixture, column, rule, row", [
    # A pair of identical responses teaches the reward model nothing and breaks DPO's margin.
    ("labels_chosen_equals_rejected.jsonl", "chosen,rejected", "chosen != rejected", 2),
    # A confidence outside [0, 1] is not a probability; weighting by it would be wrong.
    ("labels_bad_confidence.jsonl", "confidence", "confidence is a probability in [0, 1]", 1),
    # An unattributed label cannot be audited or filtered by labeler.
    ("labels_bad_labeler.jsonl", "labeler", "labeler is KIND:ID with KIND in ['human', 'ai']", 2),
    # A blank response as chosen would reward saying nothing.
    ("labels_empty_response.jsonl", "chosen", RULE_RESPONSE, 1),
    # Zero-width characters only: a response nobody can read is an empty one.
    ("labels_zero_width_response.jsonl", "chosen", RULE_RESPONSE, 2),
    # A chat structure where the reply's text belongs: the reward model would train on its repr.
    ("labels_chat_response.jsonl", "chosen", RULE_RESPONSE, 1),
    # The same reply twice, once with extra spaces and a newline: no preference at all.
    ("labels_equal_up_to_whitespace.jsonl", "chosen,rejected", "chosen != rejected", 2),
    # NaN (JSON parsers accept it), a number in quotes and 1.5 are no probabilities: rows 1, 2 and 3.
    ("labels_confidence_nan_string_above_one.jsonl", "confidence", "confidence is a probability in [0, 1]", 2),
    # A label for a prompt we do not have cannot be traced back to its prompt and split.
    ("labels_unknown_prompt.jsonl", "prompt_id", "prompt ids exist in the prompts", 2),
    # Without the labeler column nothing says who produced the label.
    ("labels_missing_column.jsonl", "labeler", "columns include the labels contract", None),
])
def test_bad_labels(fixture, column, rule, row, tmp_path):
    with pytest.raises(DataValidationError) as exc:
        _labels(fixture, tmp_path)
    failures = {(f.column, f.rule): f for f in exc.value.failures}
    assert (column, rule) in failures, list(failures)
    if row is not None:
        assert row in [r for r, _ in failures[(column, rule)].rows]


@pytest.mark.parametrize("fixture, rule", [
    # An empty file means the producer failed; validating zero rows would pass vacuously.
    ("prompts_empty_file.jsonl", "non-empty file"),
    ("labels_empty_file.jsonl", "non-empty file"),
    # A truncated line (a crashed writer) must be reported with its line number, not parsed around.
    ("prompts_invalid_json.jsonl", "valid JSON line"),
])
def test_unreadable_files(fixture, rule, tmp_path):
    check = _labels if fixture.startswith("labels") else _prompts
    with pytest.raises(DataError) as exc:
        check(fixture, tmp_path)
    assert exc.value.rule == rule and fixture in str(exc.value)
    if rule == "valid JSON line":
        assert exc.value.rows[0][0] == 2


def test_invisible_and_control_character_prompts_say_why(tmp_path):
    from tasks.text import text_problem, visible

    # Zero-width space U+200B and word joiner U+2060 are format characters (Cf), U+3000 a space separator (Zs).
    assert visible("\u200ba\u2060 b\u3000") == "ab" and text_problem("\u200b\u2060\ufeff").startswith("blank")
    assert text_problem("line one\r\n\tline two") == ""             # tab, CR and LF are ordinary text
    assert text_problem("caf\u00e9 \u65e5\u672c") == ""               # accents and CJK are visible text
    with pytest.raises(DataValidationError) as exc:
        _prompts("prompts_control_chars.jsonl", tmp_path)
    (f,) = [f for f in exc.value.failures if f.rule == RULE_BLANK]
    assert f.rows == [(4, "'holds control characters U+0000, U+001B'")]


def test_every_bad_confidence_row_is_named(tmp_path):
    with pytest.raises(DataValidationError) as exc:
        _labels("labels_confidence_nan_string_above_one.jsonl", tmp_path)
    (f,) = [f for f in exc.value.failures if f.rule == "confidence is a probability in [0, 1]"]
    assert [r for r, _ in f.rows] == [1, 2, 3] and f.rows[1][1] == "'0.9'"


def test_label_prompt_ids_take_the_prompts_canonical_form(tmp_path):
    """prepare writes an integer id 7 as "7"; a labels file may name it 7 or "7". " 7", "P1" (for "p1") and
    "7.0" are other ids, refused as unknown and named by row."""
    import json

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "7", "prompt": "Write a review of the ramen at Blue Door.", "split": "train", "source": "t"},
        {"id": "p1", "prompt": "Review the pasta at Old Mill.", "split": "train", "source": "t"}]))
    good = dict(chosen="The ramen was great.", rejected="The ramen was cold.", chosen_id="a", rejected_id="b",
                labeler="ai:judge", confidence=0.9)

    def labels(*ids):
        path = tmp_path / "labels.jsonl"
        path.write_text("".join(json.dumps({"prompt_id": i, **good}) + "\n" for i in ids))
        return validate_labels_file(CFG, path, prompts=prompts, docs_dir=tmp_path / "docs")

    assert labels(7, "7", "p1")["rows"] == 3
    with pytest.raises(DataValidationError) as exc:
        labels(7, " 7", "P1", 7.0)
    (f,) = [f for f in exc.value.failures if f.rule == "prompt ids exist in the prompts"]
    assert [r for r, _ in f.rows] == [2, 3, 4]


def test_the_reference_fields_the_graders_read_are_checked_on_every_row(tmp_path):
    import json

    fields = {"answer": {"text": True, "judges": ["correct", "checked"]}, "tests": {"text": False,
                                                                              "judges": ["code"]}}
    good = [{"id": "a", "prompt": "What is 2 + 3?", "split": "train", "source": "t", "answer": "5",
             "tests": [{"in": 1}]},
            {"id": "b", "prompt": "What is 4 - 6?", "split": "heldout", "source": "t", "answer": ["-2", "minus 2"],
             "tests": {"x": 1}, "skill": "arithmetic"}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good))
    ok = validate_prompts_file(CFG, path, demos=None, docs_dir=tmp_path / "d0", tokenizer_dir=None, fields=fields)
    # the 10 rules of the contract, one per field, and one that rows with one prompt carry one reference
    assert ok["rows"] == 2 and ok["rules"] == 13
    bad = good + [
        {"id": "c", "prompt": "What is 1 + 1?", "split": "train", "source": "t", "answer": " ", "tests": [1]},
        {"id": "d", "prompt": "What is 3 + 3?", "split": "train", "source": "t", "tests": []},
        {"id": "e", "prompt": "what is 2 +  3?", "split": "train", "source": "t", "answer": "6", "tests": [1]},
        {"id": "f", "prompt": "What is 5 + 5?", "split": "train", "source": "t", "answer": [], "tests": [1]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(DataValidationError) as exc:
        validate_prompts_file(CFG, path, demos=None, docs_dir=tmp_path / "d1", tokenizer_dir=None, fields=fields)
    by_rule = {f.rule: f for f in exc.value.failures}
    answer = by_rule["answer is a non-blank text or a list of them (read by correct, checked)"]
    # row 3 blank, row 4 missing, row 6 an empty list; the file's column is named, with the reason per row
    assert answer.column == "answer" and [r for r, _ in answer.rows] == [3, 4, 6]
    assert answer.rows[1][1] == "'missing'"
    tests = by_rule["tests is present and not empty (read by code)"]
    assert tests.column == "tests" and [r for r, _ in tests.rows] == [4]
    # "what is 2 +  3?" is row 1's prompt once case and spaces are folded, with another answer and other tests
    conflict = by_rule["rows with the same prompt carry the same answer, tests"]
    assert conflict.rows == [(5, "'row 1 has the same prompt with another answer, tests'")]
    # a field no row has is named once, as a missing column
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "tests"}) + "\n" for r in good))
    with pytest.raises(DataValidationError) as exc:
        validate_prompts_file(CFG, path, demos=None, docs_dir=tmp_path / "d2", tokenizer_dir=None, fields=fields)
    (missing,) = exc.value.failures
    assert missing.column == "tests" and "missing ['tests']" in str(missing)

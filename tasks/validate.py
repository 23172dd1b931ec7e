"""The work of stages ``validate_prompts`` and ``validate_labels`` (their adapters: ``tasks/stages/``): Great
Expectations suites on the data contracts.

Each suite runs through a GX 1.x checkpoint on a pandas dataframe, writes
Data Docs HTML (``reports/data_docs/<suite>/``, also logged to MLflow; the
validation page under ``validations/`` reads offline)
and, only when every expectation holds, a JSON summary that downstream stages
depend on. A failure raises :class:`DataValidationError` naming the file, the
column, the rule and example rows, so the cycle stops before any training.

Cross-row rules that GX has no built-in expectation for (a held-out prompt that
also occurs in training data) are computed as a boolean column first and then
checked by a GX expectation, so they show in Data Docs like every other rule.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import DataError, DataValidationError
from tasks.io import read_jsonl
from tasks.paths import BASE, DEMOS, LABELS, LABELS_DOCS, PROMPTS, PROMPTS_DOCS
from tasks.policy import resolve
from tasks.prompting import conversation_problems, format_prompt, prompt_key, prompt_of
from tasks.text import normalize, text_problem, visible

PROMPT_COLUMNS = ["id", "split", "source"]       # plus one prompt form per row: prompt (text) or messages (chat)
PROMPT_FORMS = ["prompt", "messages"]
# Derived rule columns, and the file's column that a failure of each is reported against.
DERIVED = {"heldout_in_training_data": "prompt", "chosen_equals_rejected": "chosen,rejected",
           "prompt_form": "prompt,messages", "conversation_problem": "messages", "prompt_tokens": "prompt,messages",
           "prompt_known": "prompt_id", "prompt_text_problem": "prompt", "chosen_problem": "chosen",
           "rejected_problem": "rejected", "confidence_ok": "confidence", "reference_conflict": "prompt,messages"}
# A derived column ``<field>__problem`` holds why a row's reference field is unusable ("" when it is usable).
FIELD_SUFFIX = "__problem"
LABEL_COLUMNS = ["prompt_id", "chosen", "rejected", "chosen_id", "rejected_id", "labeler", "confidence"]


@dataclass(frozen=True)
class Rule:
    """One expectation with the plain-language rule a failure message names."""
    name: str
    expectation: object


def _text(v) -> str:
    return v if isinstance(v, str) else ""


def prompt_rules(cfg, df, fields: dict | None = None) -> list[Rule]:
    """The prompts suite. ``fields``: the reference fields the cycle's graders read (``judges.reference_fields``),
    each checked on every row."""
    import great_expectations as gx

    E = gx.expectations
    fields = fields or {}
    # Columns besides the contract's are reference fields (prepare carries them through), so the set is the
    # contract plus whatever else the file holds; the rule names the contract's columns a file lacks.
    extra = [c for c in df.columns if c not in PROMPT_COLUMNS + PROMPT_FORMS and c not in DERIVED
             and not c.endswith(FIELD_SUFFIX)]
    columns = (PROMPT_COLUMNS + [c for c in PROMPT_FORMS if c in df.columns] + [c for c in DERIVED if c in df.columns]
               + extra + [c for c in df.columns if c.endswith(FIELD_SUFFIX)]
               + [f for f in fields if f not in extra])       # a field the graders read that no row has
    rules = [Rule("columns are exactly the prompts contract (plus reference fields)",
                  E.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True))]
    for name, need in fields.items():
        what = "a non-blank text or a list of them" if need["text"] else "present and not empty"
        rules.append(Rule(f"{name} is {what} (read by {', '.join(need['judges'])})",
                          E.ExpectColumnValuesToBeInSet(column=name + FIELD_SUFFIX, value_set=[""])))
    if fields:
        rules.append(Rule(f"rows with the same prompt carry the same {', '.join(fields)}",
                          E.ExpectColumnValuesToBeInSet(column="reference_conflict", value_set=[""])))
    for col in PROMPT_COLUMNS:
        rules.append(Rule("not null", E.ExpectColumnValuesToNotBeNull(column=col)))
    rules.append(Rule("each row has exactly one of prompt (text) or messages (chat)",
                      E.ExpectColumnValuesToBeInSet(column="prompt_form", value_set=["prompt", "messages"])))
    if "prompt" in df.columns:
        rules += [
            Rule(f"prompt length between {cfg.prompt_min_chars} and {cfg.prompt_max_chars} characters",
                 E.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=cfg.prompt_min_chars,
                                                       max_value=cfg.prompt_max_chars)),
            Rule("prompt is not blank (once whitespace, control and invisible format characters such as "
                 "zero-width spaces are removed) and holds no control characters but tab and newline",
                 E.ExpectColumnValuesToBeInSet(column="prompt_text_problem", value_set=[""])),
        ]
    if "messages" in df.columns:
        rules.append(Rule("messages: roles alternate user/assistant (optional system first), end with the user's "
                          f"turn, no empty content, each at most {cfg.prompt_max_chars} characters",
                          E.ExpectColumnValuesToBeInSet(column="conversation_problem", value_set=[""])))
    if "prompt_tokens" in df.columns:
        rules.append(Rule(f"formatted prompt at most {cfg.prompt_max_tokens} tokens of the policy's tokenizer",
                          E.ExpectColumnValuesToBeBetween(column="prompt_tokens", min_value=1,
                                                          max_value=cfg.prompt_max_tokens)))
    rules += [
        Rule("unique ids", E.ExpectColumnValuesToBeUnique(column="id")),
        Rule("split is train or heldout", E.ExpectColumnValuesToBeInSet(column="split",
                                                                         value_set=["train", "heldout"])),
        Rule("no held-out prompt inside training data",
             E.ExpectColumnValuesToBeInSet(column="heldout_in_training_data", value_set=[False])),
    ]
    return rules


RULE_RESPONSE = "no empty responses (chosen and rejected are non-blank text; a chat reply is given as its text)"


def _response_problem(value) -> str:
    """Why a chosen or rejected value is not a usable response ("" when it is; null is the not-null rule's)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        kind = "a chat structure" if isinstance(value, (list, dict)) else f"a {type(value).__name__}"
        return f"not text but {kind}"
    return "" if visible(value) else "blank"


def _probability(value) -> bool:
    """A number in [0, 1]: not a string, a boolean, NaN or infinity."""
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0 <= value <= 1


def label_rules(cfg) -> list[Rule]:
    import great_expectations as gx

    E = gx.expectations
    rules = [Rule("columns include the labels contract",
                  E.ExpectTableColumnsToMatchSet(column_set=LABEL_COLUMNS, exact_match=False))]
    for col in LABEL_COLUMNS:
        rules.append(Rule("not null", E.ExpectColumnValuesToNotBeNull(column=col)))
    kinds = "|".join(map(str, cfg.label_sources))
    rules += [
        Rule(RULE_RESPONSE, E.ExpectColumnValuesToBeInSet(column="chosen_problem", value_set=[""])),
        Rule(RULE_RESPONSE, E.ExpectColumnValuesToBeInSet(column="rejected_problem", value_set=[""])),
        Rule("chosen != rejected", E.ExpectColumnValuesToBeInSet(column="chosen_equals_rejected",
                                                                 value_set=[False])),
        Rule("confidence is a probability in [0, 1]",
             E.ExpectColumnValuesToBeInSet(column="confidence_ok", value_set=[True])),
        Rule(f"labeler is KIND:ID with KIND in {cfg.label_sources}",
             E.ExpectColumnValuesToMatchRegex(column="labeler", regex=rf"^(?:{kinds}):\S+$")),
        Rule("prompt ids exist in the prompts",   # or the row carries its own prompt (human preference files)
             E.ExpectColumnValuesToBeInSet(column="prompt_known", value_set=[True])),
    ]
    return rules


def run_suite(name: str, df, rules: list[Rule], path: Path, docs_dir: Path,
              contract: list[str] = (), run_label: str | None = None) -> list[DataError]:
    """Run ``rules`` on ``df`` as one GX checkpoint; write Data Docs; return one DataError per failed rule.
    ``run_label`` names the run in Data Docs ("cycle 3 / prompts"; ``name`` by default).

    Columns of ``contract`` missing from the file are reported once, by name,
    instead of once per rule that needed them.
    """
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False}
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    ctx.add_data_docs_site(site_name="local", site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
    asset = ctx.data_sources.add_pandas(name).add_dataframe_asset(path.name)
    batch = asset.add_batch_definition_whole_dataframe("all rows")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    by_id = {}
    for rule in rules:
        by_id[suite.add_expectation(rule.expectation).id] = rule
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    cp = ctx.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[vd],
                                           actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")],
                                           result_format={"result_format": "COMPLETE"}))
    from great_expectations.core.run_identifier import RunIdentifier

    # Named by the cycle in Data Docs ("cycle-3-prompts"; "prompts" under `dvc repro`), not "__none__".
    result = cp.run(batch_parameters={"dataframe": df},
                    run_id=RunIdentifier(run_name=(run_label or name).replace(" / ", "-").replace(" ", "-")))
    (validation,) = result.run_results.values()
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / SUMMARY).write_text(summary_html(
        f"{name} suite on {path}", run_label or name, [result_row(by_id[r.expectation_config.id].name, r, len(df))
                                                    for r in validation.results]))
    failures = []
    file_columns = [c for c in df.columns if c not in DERIVED and not c.endswith(FIELD_SUFFIX)]
    contract = list(contract) + [c for c in file_columns if c in PROMPT_FORMS and name == "prompts"]
    missing = [c for c in contract if c not in file_columns]
    for res in validation.results:
        if res.success:
            continue
        rule = by_id[res.expectation_config.id]
        kw = res.expectation_config.kwargs
        if "column_set" in kw:
            extra = [c for c in file_columns if c not in contract]
            detail = (f"missing {missing}" if missing else "") + \
                (f"{'; ' if missing else ''}unexpected {extra}" if extra and kw.get("exact_match") else "")
            failures.append(DataError(path, rule.name, column=",".join(missing) or None,
                                      detail=f"{detail} (found: {', '.join(map(str, file_columns))})"))
            continue
        if kw.get("column") in missing:
            continue
        column = DERIVED.get(kw.get("column"), kw.get("column"))
        if str(column).endswith(FIELD_SUFFIX):
            column = column[:-len(FIELD_SUFFIX)]
            if column in missing:
                continue
        idx = res.result.get("unexpected_index_list") or []
        rows = []
        # A derived column that holds the reason (or the count) is the clearest thing to show.
        show_col = kw.get("column") if kw.get("column") in ("conversation_problem", "prompt_tokens", "prompt_form",
                                                            "prompt_text_problem", "chosen_problem",
                                                            "rejected_problem", "reference_conflict") \
            or str(kw.get("column")).endswith(FIELD_SUFFIX) else (column.split(",")[0] if column else None)
        for i in idx[:20]:
            i = i if isinstance(i, int) else i.get("index", 0) if isinstance(i, dict) else 0
            value = df.iloc[i][show_col] if show_col in df.columns else ""
            value = value.item() if hasattr(value, "item") else value      # numpy scalar -> plain Python
            rows.append((i + 1, repr(value)[:80]))
        detail = ""
        if "observed_value" in res.result and not idx:
            detail = f"observed {res.result['observed_value']}"
        elif res.result.get("unexpected_count") is not None:
            detail = f"{res.result['unexpected_count']} of {len(df)} rows violate it"
        if res.exception_info and res.exception_info.get("raised_exception"):
            detail = res.exception_info.get("exception_message", "")[:200]
        failures.append(DataError(path, rule.name, column=column, rows=rows, detail=detail))
    return failures


SUMMARY = "summary.html"     # beside the Data Docs: the validation on one self-contained page


def result_row(rule: str, res, n_rows: int) -> dict:
    """One rule's outcome for the summary page: what was checked, whether it held, and the first offenders."""
    kw = res.expectation_config.kwargs
    r = res.result or {}
    if r.get("unexpected_count") is not None:
        outcome = f"{r['unexpected_count']} of {r.get('element_count', n_rows)} rows violate it"
    elif "observed_value" in r:
        outcome = f"observed {r['observed_value']}"
    else:
        outcome = ""
    if res.exception_info and res.exception_info.get("raised_exception"):
        outcome = res.exception_info.get("exception_message", "")[:200]
    examples = [repr(v)[:80] for v in (r.get("partial_unexpected_list") or [])[:5]]
    return {"rule": rule, "expectation": res.expectation_config.type, "column": kw.get("column", ""),
            "passed": bool(res.success), "outcome": outcome, "examples": examples}


def summary_html(title: str, run: str, rows: list[dict]) -> str:
    """A validation as one HTML page that needs nothing else (no scripts, no stylesheets from a CDN): the
    suite, the run, and a row per rule with its outcome. GX's own index page draws its table with scripts
    fetched from CDNs, so offline it is empty; this page is what MLflow links (the stage run's artifacts)."""
    from html import escape

    passed = sum(r["passed"] for r in rows)
    body = "".join(
        f'<tr class="{"ok" if r["passed"] else "bad"}"><td>{"passed" if r["passed"] else "FAILED"}</td>'
        f'<td>{escape(r["rule"])}</td><td>{escape(str(r["column"]))}</td><td><code>{escape(r["expectation"])}'
        f'</code></td><td>{escape(r["outcome"])}</td><td>{escape(", ".join(r["examples"]))}</td></tr>'
        for r in rows)
    verdict = "all rules passed" if passed == len(rows) else f"{len(rows) - passed} of {len(rows)} rules failed"
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title><style>'
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
            "tr.ok td:first-child{color:#176317}tr.bad td:first-child{color:#a00;font-weight:bold}"
            f"</style></head><body><h1>{escape(title)}</h1><p>run <b>{escape(run)}</b>: {verdict}. "
            'The full Great Expectations report: <a href="latest.html">Data Docs</a>.</p>'
            "<table><tr><th>result</th><th>rule</th><th>column</th><th>expectation</th><th>outcome</th>"
            f"<th>first offending values</th></tr>{body}</table></body></html>\n")


def docs_page(docs_dir: Path) -> Path:
    """The suite's validation-result page: plain HTML that reads offline, unlike GX's index,
    whose table is drawn by scripts fetched from CDNs."""
    pages = sorted((docs_dir / "validations").rglob("*.html")) if docs_dir.exists() else []
    return pages[-1] if pages else docs_dir / "index.html"


LATEST = "latest.html"


def write_latest(docs_dir: Path) -> Path:
    """``<docs_dir>/latest.html``: a page that forwards to the newest validation page. The report names this
    fixed path rather than the page's timestamped one, so the report's bytes (a dependency of later stages)
    do not change when a fresh clone rebuilds the Data Docs."""
    page = docs_page(docs_dir).relative_to(docs_dir).as_posix()
    latest = docs_dir / LATEST
    latest.write_text(f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={page}">'
                      f'<title>Data Docs</title><a href="{page}">the latest validation</a>\n')
    return latest


def _load_df(path: Path):
    import pandas as pd

    rows = read_jsonl(path)
    return pd.DataFrame(rows), rows


def _form(r: dict) -> str:
    has_text, has_chat = isinstance(r.get("prompt"), str), r.get("messages") is not None
    return "prompt" if has_text and not has_chat else "messages" if has_chat and "prompt" not in r else "invalid"


def _key(r: dict) -> str:
    form = _form(r)
    return prompt_key(r[form]) if form == "prompt" or (form == "messages" and not conversation_problems(
        r["messages"])) else f"invalid:{r.get('id')}"


def field_problem(value, text: bool) -> str:
    """Why ``value`` is not a usable reference field ("" when it is). ``text``: a grader compares it as text, so
    it is a non-blank string (a number counts), or a non-empty list of them; else anything but null, "", [] or
    {}."""
    if value is None:
        return "missing"
    if not text:
        return "empty" if value in ("", [], {}) else ""

    def is_text(v) -> bool:
        return (isinstance(v, str) and bool(v.strip())) or (isinstance(v, (int, float)) and not isinstance(v, bool))
    if isinstance(value, list):
        return "" if value and all(is_text(v) for v in value) else "a list that is empty or holds a blank or non-text item"
    return "" if is_text(value) else ("blank" if isinstance(value, str) else f"a {type(value).__name__}, not text")


def reference_conflicts(rows: list[dict], fields) -> list[str]:
    """Per row, "" or which earlier row has the same prompt (``_key``) with other values of ``fields``: a grader
    finds a prompt's reference by its prompt, so one prompt must carry one reference."""
    first: dict[str, int] = {}
    out = []
    for i, r in enumerate(rows):
        key = _key(r)
        j = first.setdefault(key, i)
        differ = [f for f in fields if j != i and rows[j].get(f) != r.get(f)]
        out.append(f"row {j + 1} has the same prompt with another {', '.join(differ)}" if differ else "")
    return out


def _conversation_problem(r: dict, max_chars: int) -> str:
    if r.get("messages") is None:
        return ""
    problems = conversation_problems(r["messages"])
    if not problems and any(len(m["content"]) > max_chars for m in r["messages"]):
        problems = [f"a message is longer than {max_chars} characters"]
    return "; ".join(problems)


def _token_counts(rows: list[dict], tokenizer_dir: Path | None) -> list[int] | None:
    """Tokens of each formatted prompt under the policy's tokenizer (None when there is no policy yet)."""
    if tokenizer_dir is None or not tokenizer_dir.exists():
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(tokenizer_dir))
    out = []
    for r in rows:
        form = _form(r)
        ok = form == "prompt" or (form == "messages" and not conversation_problems(r["messages"]))
        out.append(len(tok(format_prompt(r[form], tok), add_special_tokens=False)["input_ids"]) if ok else 0)
    return out


def validate_prompts_file(cfg, path: Path = PROMPTS, demos: Path | None = DEMOS,
                          docs_dir: Path = PROMPTS_DOCS, tokenizer_dir: Path | None = BASE,
                          run_label: str | None = None, fields: dict | None = None) -> dict:
    """``fields``: the reference fields the cycle's graders read, ``{name: {"text": bool, "judges": [...]}}``
    (``tasks/judges/__init__.py::reference_fields``)."""
    fields = fields or {}
    df, rows = _load_df(path)
    for name, need in fields.items():
        df[name + FIELD_SUFFIX] = [field_problem(r.get(name), need["text"]) for r in rows]
    if fields:
        df["reference_conflict"] = reference_conflicts(rows, list(fields))
    training = {_key(r) for r in rows if r.get("split") == "train"}
    if demos is not None and demos.exists():
        training |= {prompt_key(prompt_of(d)) for d in read_jsonl(demos)}
    df["prompt_form"] = [_form(r) for r in rows]
    df["conversation_problem"] = [_conversation_problem(r, cfg.prompt_max_chars) for r in rows]
    if "prompt" in df.columns:
        df["prompt_text_problem"] = [text_problem(r["prompt"]) if isinstance(r.get("prompt"), str) else ""
                                     for r in rows]
    counts = _token_counts(rows, tokenizer_dir)
    if counts is not None:
        df["prompt_tokens"] = counts
    df["heldout_in_training_data"] = [r.get("split") == "heldout" and _key(r) in training for r in rows]
    rules = prompt_rules(cfg, df, fields)
    failures = run_suite("prompts", df, rules, path, docs_dir, PROMPT_COLUMNS + list(fields), run_label)
    if failures:
        raise DataValidationError(failures, docs=str(docs_dir / SUMMARY))
    return {"rows": len(df), "train": int((df["split"] == "train").sum()),
            "heldout": int((df["split"] == "heldout").sum()), "rules": len(rules),
            "chat_prompts": int((df["prompt_form"] == "messages").sum())}


def validate_labels_file(cfg, path: Path = LABELS, prompts: Path = PROMPTS,
                         docs_dir: Path = LABELS_DOCS, run_label: str | None = None) -> dict:
    df, rows = _load_df(path)
    prompt_ids = {str(r["id"]) for r in read_jsonl(prompts)}
    df["chosen_equals_rejected"] = [
        normalize(_text(r.get("chosen"))) == normalize(_text(r.get("rejected"))) for r in rows]
    df["chosen_problem"] = [_response_problem(r.get("chosen")) for r in rows]
    df["rejected_problem"] = [_response_problem(r.get("rejected")) for r in rows]
    df["confidence_ok"] = [_probability(r.get("confidence")) for r in rows]
    df["prompt_known"] = [str(r.get("prompt_id")) in prompt_ids or (
        isinstance(r.get("prompt"), str) and bool(r["prompt"].strip())) or (
        r.get("messages") is not None and not conversation_problems(r["messages"])) for r in rows]
    rules = label_rules(cfg)
    failures = run_suite("labels", df, rules, path, docs_dir, LABEL_COLUMNS, run_label)
    if failures:
        raise DataValidationError(failures, docs=str(docs_dir / SUMMARY))
    return {"rows": len(df), "rules": len(rules)}



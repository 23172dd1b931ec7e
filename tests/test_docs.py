"""The docs as a newcomer reads them: the README in order, what each way to run records, links that resolve."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def sections(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, re.M)


def test_the_readme_leads_a_newcomer_from_set_up_to_configuration():
    readme = (ROOT / "README.md").read_text()
    heads = sections(readme)
    assert heads.index("Quick start") < heads.index("What one cycle does") < \
        heads.index("Three ways to run the same stages") < heads.index("Configuration")
    # The measurements and the test inventory live in docs/: before Configuration the README has no table
    # longer than the stages' own and no long bullet list.
    before = readme.split("\n## Configuration\n", 1)[0]
    tables = re.findall(r"(?:^\|.*\|\n)+", before, re.M)
    assert max(len(t.splitlines()) for t in tables) <= 15, "a long table before the configuration section"
    assert "| what | result | re-measure with |" not in readme
    assert "docs/measurements.md" in readme and "docs/testing.md" in readme
    assert "| what | result | re-measure with |" in (ROOT / "docs/measurements.md").read_text()


def test_the_readme_says_what_each_way_to_run_records():
    readme = (ROOT / "README.md").read_text()
    ways = readme.split("## Three ways to run the same stages", 1)[1].split("\n## ", 1)[0]
    table = ways.split("```", 1)[0]                        # said first, before the commands
    rows = {row.split("|")[1].strip(): row for row in table.splitlines() if row.startswith("| `")}
    assert {"`rft cycle` (and `rft retrain`, `python -m flows.cycle`)", "`dvc repro`", "`rft stage NAME`"} <= set(rows)
    assert "never promotes" in rows["`dvc repro`"] and "none" in rows["`dvc repro`"].lower()
    assert "dvc repro && rft cycle" in ways


def test_every_relative_link_and_image_in_the_docs_resolves():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_screenshots_the_docs_show_are_in_docs_img():
    shown = {m for doc in DOCS for m in re.findall(r"\((?:docs/)?img/([\w-]+\.png)\)", doc.read_text())}
    assert {"mlflow-models-tab.png", "mlflow-logged-model.png", "mlflow-run-charts.png"} <= shown
    assert all((ROOT / "docs/img" / name).is_file() for name in shown)
    # ... taken by the script in docs/, which names each of them.
    script = (ROOT / "docs/screenshots.py").read_text()
    assert all(f'"{name}"' in script for name in ("mlflow-models-tab", "mlflow-logged-model", "mlflow-run-charts"))

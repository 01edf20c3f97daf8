"""The docs cannot drift: generated pages are current, examples run, links resolve."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_reference", DOCS / "gen_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reference"] = module
    spec.loader.exec_module(module)
    return module


def test_every_concurrency_parameter_and_event_is_documented() -> None:
    assert _generator().undocumented() == []


def test_the_reference_page_is_generated_from_the_current_code() -> None:
    generator = _generator()
    expected = generator.render() + "\n"
    assert (DOCS / "reference" / "concurrency.md").read_text() == expected, (
        "docs/reference/concurrency.md is stale; run python docs/gen_reference.py"
    )


def test_the_events_table_is_generated_from_the_current_code() -> None:
    generator = _generator()
    assert (DOCS / "control-flow.md").read_text() == generator.control_flow_page(), (
        "docs/control-flow.md is stale; run python docs/gen_reference.py"
    )


def test_every_example_of_the_concurrency_guide_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = (DOCS / "concurrency.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "docs_concurrency"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/concurrency.md[{index}]", "exec"), namespace)
    assert "max_concurrent_runs 0/0 in flight" in capsys.readouterr().out


MARKDOWN = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """The ``#fragment`` of each heading of ``page``, as GitHub renders them."""
    anchors: set[str] = set()
    for heading in re.findall(
        r"(?m)^#{1,6} +(.+?) *#*$", FENCE.sub("", page.read_text())
    ):
        text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.replace("*", "").lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def test_the_readme_and_every_docs_page_are_link_checked() -> None:
    names = {str(page.relative_to(ROOT)) for page in MARKDOWN}
    assert {"README.md", "docs/concurrency.md", "docs/control-flow.md"} <= names
    assert {"docs/storage.md", "docs/reference/concurrency.md"} <= names


def test_the_concurrency_guide_ends_with_its_three_links() -> None:
    end = (DOCS / "concurrency.md").read_text().split("## Where to go next", 1)[1]
    links = re.findall(r"^- \[([^]]+)\]\(([^)]+)\)", end, re.M)
    assert links == [
        ("Concurrency & Queue API reference", "reference/concurrency.md"),
        ("Concurrency Control Flow", "control-flow.md"),
        ("Storage → Pool methods", "storage.md"),
    ]


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = FENCE.sub("", page.read_text())
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if "://" in link or link.startswith("mailto:"):
            continue
        path, _, fragment = link.partition("#")
        target = (page.parent / path) if path else page
        assert target.exists(), f"{page.name} links to missing {path}"
        if fragment and target.suffix == ".md":
            assert fragment in _anchors(target), (
                f"{page.name} links to #{fragment}, which {target.name} has no heading for"
            )

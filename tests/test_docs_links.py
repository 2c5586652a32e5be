"""The documents' cross-references lead somewhere: README.md and
benchmarks/README.md split the performance notes between them, and the
code's comments cite their sections by name."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "benchmarks/README.md")


def _outside_code_blocks(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped,
    spaces made hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _prose(path):
    return _outside_code_blocks((ROOT / path).read_text())


def _headings(text):
    return re.findall(r"^#{1,6} (.+)$", text, flags=re.M)


def _section_names(path):
    """Headings and the bold leads that open a paragraph (`**Name.**`)."""
    text = _prose(path)
    bold_leads = re.findall(r"^\*\*([^*]+?)\.?\*\*", text, flags=re.M)
    return _headings(text) + bold_leads


def test_slug_matches_github_anchors():
    assert _slug("How FRN + TLU are computed") == "how-frn--tlu-are-computed"
    assert _slug("Padded sequences (masks)") == "padded-sequences-masks"
    assert _slug("Serving (TF Serving, TFLite, ONNX)") == (
        "serving-tf-serving-tflite-onnx")


def _links():
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(document)):
            if "://" not in target:
                yield document, target


@pytest.mark.parametrize("document, target", sorted(set(_links())))
def test_markdown_links_resolve(document, target):
    path, _, anchor = target.partition("#")
    linked = (ROOT / document).parent / path if path else ROOT / document
    assert linked.exists(), f"{document}: no file {path}"
    if anchor:
        relative = linked.resolve().relative_to(ROOT).as_posix()
        anchors = {_slug(h) for h in _headings(_prose(relative))}
        assert anchor in anchors, f"{document}: no heading #{anchor} in {relative}"


def _cited_sections():
    """`(README, "Name")`-style citations in the code and the documents."""
    citation = re.compile(
        r"(benchmarks/\s*README\.md|README(?:\.md)?)(?:'s)?,?\s*\(?\"([^\"]+)\"")
    sources = [*ROOT.glob("frn_keras/**/*.py"), *ROOT.glob("examples/*.py"),
               *ROOT.glob("benchmarks/*.py"),
               *(ROOT / document for document in DOCUMENTS)]
    for source in sources:
        text = re.sub(r"\s+", " ", source.read_text())
        for document, name in citation.findall(text):
            document = re.sub(r"\s+", "", document)
            if document == "README":
                document = "README.md"
            yield source.relative_to(ROOT).as_posix(), document, name


@pytest.mark.parametrize("source, document, name",
                         sorted(set(_cited_sections())))
def test_cited_sections_exist(source, document, name):
    names = _section_names(document)
    assert any(n.startswith(name) for n in names), (
        f"{source} cites section {name!r} of {document}, which has none")

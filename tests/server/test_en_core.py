"""The bundled default, en-core: one distilled model gives UPOS, XPOS and entities in one pass,
through the spaCy component, the gRPC service's defaults and `tagger tag`; its card tells how
it was distilled. (Its test-set scores are checked with every bundled model in test_models.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import spacy
from typer.testing import CliRunner

from server.app import build_server
from server.cli import app
from server.client import TaggerClient
from server.registry import ModelRegistry
from server.settings import ServerSettings
from tagger import Tagger

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "models" / "en-core"
TEXT = "Barack Obama visited Paris last week. Then he flew to Berlin to meet Angela Merkel."


def test_the_spacy_component_defaults_to_en_core_and_sets_pos_tags_and_entities():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("bilstm_tagger")  # no config: models/en-core, relative to the working directory
    doc = nlp(TEXT)
    expected = Tagger.load(CORE).tag(TEXT)
    tokens = [t for s in expected.sentences for t in s.tokens]
    assert [t.pos_ for t in doc] == [t.labels["upos"].value for t in tokens]
    assert [t.tag_ for t in doc] == [t.labels["xpos"].value for t in tokens]
    assert [(e.text, e.label_) for e in doc.ents] == [(e.text, e.label) for s in expected.sentences for e in s.entities]
    assert {"Barack Obama", "Paris", "Berlin", "Angela Merkel"} <= {e.text for e in doc.ents}


def test_the_service_serves_en_core_as_the_default_in_one_pass(loop_thread, tmp_path):
    served = tmp_path / "models"
    for name in ("en-core", "en-pos"):
        shutil.copytree(ROOT / "models" / name, served / name)
    registry = ModelRegistry.from_directory(served)
    assert registry.defaults == ["en-core"]
    running = loop_thread.run(build_server(ServerSettings(port=0, models=served), registry))
    try:
        with TaggerClient(f"127.0.0.1:{running.port}") as client:
            response = client.tag(TEXT)  # no model named
            assert [m.name for m in response.models] == ["en-core"]
            token = response.sentences[0].tokens[0]
            assert set(token.labels) == {"upos", "xpos", "ner"} and token.labels["upos"].value == "PROPN"
            assert "Berlin" in [e.text for s in response.sentences for e in s.entities]
        # the client command line, naming no model, gets the same from en-core
        result = CliRunner().invoke(app, ["client", "tag", "--server", f"127.0.0.1:{running.port}", "--text", TEXT])
        assert result.exit_code == 0, result.output
        printed = json.loads(result.stdout)
        assert [m["name"] for m in printed["models"]] == ["en-core"]
        assert set(printed["sentences"][0]["tokens"][0]["labels"]) == {"upos", "xpos", "ner"}
        assert [e["text"] for s in printed["sentences"] for e in s["entities"]] == \
               [e.text for s in response.sentences for e in s.entities]
    finally:
        loop_thread.run(running.stop(0))


def test_the_card_records_the_teachers_the_student_sizes_and_the_word_rows():
    config = json.loads((CORE / "config.json").read_text())
    assert config["distill"]["tasks"] == {"upos": "models/en-pos", "xpos": "models/en-pos", "ner": "models/en-ner"}
    metrics = json.loads((CORE / "metrics.json").read_text())
    assert len(metrics["students"]) >= 2 and sum(row["chosen"] for row in metrics["students"]) == 1
    card = (CORE / "README.md").read_text()
    assert "## Distillation" in card and "Student size" in card
    # The word table was pruned to the chosen row count, which the card's table marks.
    rows = metrics["word_rows"]
    chosen = [row for row in rows if row.get("chosen")]
    assert len(rows) >= 2 and len(chosen) == 1
    assert len(json.loads((CORE / "vocab.json").read_text())["words"]) == chosen[0]["rows"]
    assert "Word rows kept" in card and f"| {chosen[0]['rows']:,} |" in card


def test_the_card_says_how_far_each_target_is_and_what_else_was_tried():
    metrics = json.loads((CORE / "metrics.json").read_text())
    card = (CORE / "README.md").read_text()
    assert "### Targets" in card
    for task, target in metrics["targets"].items():
        score = metrics["test"][task]["f1" if task == "ner" else "accuracy"]
        gap = "met" if score >= target else f"{100 * (target - score):.2f} short"
        assert f"| {task} | {100 * target:.2f} | {100 * score:.2f} | {gap} |" in card
    # every other recipe measured is listed with its dev scores (the choice) and test scores where measured
    assert len(metrics["tried"]) >= 10
    for run in metrics["tried"]:
        assert f"| {run['change']} | {run['against']} | " in card
        assert f"{100 * run['dev']['ner']:.2f}" in card

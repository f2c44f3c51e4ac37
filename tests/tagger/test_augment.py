"""Altered copies of real EWT / Universal NER training sentences (tagger.training.augment), and a
student distilled with them."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from tagger.config import DistillConfig, TaggerConfig
from tagger.data.schemes import spans
from tagger.training.augment import augment
from tagger.training.distill import distill

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mentions_are_read_from_iob2():  # as augment reads them: tagger.data.schemes.spans
    assert [(s.start, s.end, s.label) for s in spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG", "O"])] == [
        (0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 6, "ORG")]


def test_copies_carry_no_labels_and_keep_documents_together(joint_examples):
    copies = augment(joint_examples, 2, "ner", "upos", seed=3)
    assert len(copies) == 2 * len(joint_examples) and all(not c.labels and c.tokens for c in copies)
    last = max(e.document for e in joint_examples)
    assert min(c.document for c in copies) == last + 1
    for k in range(2):
        part = copies[k * len(joint_examples):(k + 1) * len(joint_examples)]
        pairs = {(e.document, c.document) for e, c in zip(joint_examples, part)}
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # one to one
    assert len({c.document for c in copies}) == 2 * len({e.document for e in joint_examples})
    assert augment(joint_examples, 2, "ner", "upos", seed=3) == copies
    assert augment(joint_examples, 2, "ner", "upos", seed=4) != copies
    assert augment(joint_examples, 1, "ner", "upos", first_document=10_000)[0].document == 10_000
    assert augment(joint_examples, 0, "ner", "upos") == [] and augment(joint_examples, 1, None, None) == []


def test_a_mention_becomes_one_of_the_same_type_the_same_one_throughout_its_document(joint_examples):
    pool = defaultdict(set)
    for e in joint_examples:
        for kind, start, end in spans(e.labels["ner"]):
            pool[kind].add(e.tokens[start:end])
    copies = augment(joint_examples, 1, "ner", "upos", mention_rate=1.0, word_rate=0.0)
    replaced, changed, checked = defaultdict(set), 0, 0
    for e, c in zip(joint_examples, copies):
        found = spans(e.labels["ner"])
        if len(found) != 1:
            continue
        (kind, start, end), = found
        tail = len(e.tokens) - end
        assert c.tokens[:start] == e.tokens[:start] and c.tokens[len(c.tokens) - tail:] == e.tokens[end:]
        new = c.tokens[start:len(c.tokens) - tail]
        assert new in pool[kind]
        replaced[(e.document, e.tokens[start:end])].add(new)
        changed += new != e.tokens[start:end]
        checked += 1
    assert checked > 50 and changed > 0.8 * checked
    assert all(len(v) == 1 for v in replaced.values())


def test_only_open_class_words_outside_mentions_are_replaced_by_words_with_their_tag(joint_examples):
    seen = defaultdict(set)
    for e in joint_examples:
        for word, tag in zip(e.tokens, e.labels["upos"]):
            seen[tag].add(word)
    copies = augment(joint_examples, 1, "ner", "upos", mention_rate=0.0, word_rate=1.0)
    replaced = total = 0
    for e, c in zip(joint_examples, copies):
        assert len(c.tokens) == len(e.tokens)
        inside = {i for _, start, end in spans(e.labels["ner"]) for i in range(start, end)}
        for i, (old, new, tag) in enumerate(zip(e.tokens, c.tokens, e.labels["upos"])):
            if i in inside or tag in {"DET", "PUNCT", "CCONJ", "AUX", "PART"}:
                assert new == old, (tag, old, new)
            elif tag in {"NOUN", "VERB", "ADJ"}:
                total += 1
                replaced += new != old
                assert new in seen[tag] or (i == 0 and new[:1].lower() + new[1:] in seen[tag]), (tag, new)
    assert total > 1000 and replaced > 0.9 * total


def test_a_student_distilled_with_altered_copies(tiny_pos_model, tiny_ner_model, joint_examples, tmp_path):
    config = TaggerConfig()
    config.model.word_dim, config.model.char.hidden, config.model.encoder.hidden = 32, 16, 32
    config.train.epochs, config.train.batch_size = 1, 16
    config.distill = DistillConfig(augment=1)
    train, dev = joint_examples[:200], joint_examples[200:260]
    distill(config, [tiny_pos_model, tiny_ner_model], train, dev, tmp_path / "student", cache=tmp_path / "cache",
            progress=False)
    meta = json.loads((tmp_path / "cache" / "teachers.json").read_text())
    assert meta["sentences"] == 2 * len(train)  # the gold sentences and one copy of each, labelled once
    saved = json.loads((tmp_path / "student" / "config.json").read_text())
    assert saved["distill"]["augment"] == 1
    assert "altered copy of each gold training sentence" in (tmp_path / "student" / "README.md").read_text()

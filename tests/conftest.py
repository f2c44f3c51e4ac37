"""Shared fixtures: slices of the real corpora and tiny models trained on them once per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagger.config import TaggerConfig, TaskConfig
from tagger.data.batching import Example
from tagger.data.readers import load_corpus, read_conllu

DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"  # ../shared/data beside the checkout
EWT = DATA_DIR / "ud-english-ewt"
UNER = DATA_DIR / "uner-english-ewt"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"the corpora are expected in {DATA_DIR.resolve()} (../shared/data beside the checkout)")
    return DATA_DIR


@pytest.fixture(scope="session")
def shared_data(data_dir) -> Path:
    """The former name of ``data_dir``, still used by the CLI and server tests."""
    return data_dir


@pytest.fixture
def write_file(tmp_path):
    """``write_file(name, content)``: write text (as UTF-8) or bytes under tmp_path; returns the path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture(scope="session")
def write_head():
    """``write_head(source, target, n)``: copy the first n blank-line-separated blocks of a corpus."""

    def write(source: Path, target: Path, sentences: int) -> Path:
        blocks = source.read_text(encoding="utf-8").split("\n\n")[:sentences]
        target.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
        return target

    return write


@pytest.fixture(scope="session")
def ewt_sentences(data_dir):
    return {split: list(read_conllu(EWT / f"en_ewt-ud-{split}.conllu")) for split in ("train", "dev")}


@pytest.fixture(scope="session")
def ewt_by_id(ewt_sentences):
    return {s.sent_id: s for split in ("train", "dev") for s in ewt_sentences[split]}


@pytest.fixture(scope="session")
def uner_sentences(data_dir):
    return {split: load_corpus(UNER / f"en_ewt-ud-{split}.iob2").sentences for split in ("train", "dev")}


@pytest.fixture(scope="session")
def joint_examples(uner_sentences, ewt_by_id):
    """Real sentences annotated in both corpora: UPOS from EWT, entities from Universal NER,
    ten sentences to a document."""
    examples = []
    for i, sentence in enumerate(uner_sentences["train"][:700]):
        pos = ewt_by_id.get(sentence.sent_id)
        if pos is not None and pos.tokens == sentence.tokens:
            examples.append(Example(sentence.tokens, {"upos": pos.labels, "ner": sentence.labels}, i // 10))
    return examples


def _train_tiny(directory: Path, task: TaskConfig, train, dev, epochs: int, seed: int = 1) -> Path:
    from tagger.training.train import train as run

    config = TaggerConfig()
    config.model.tasks = [task]
    config.model.word_dim, config.model.char.hidden, config.model.encoder.hidden = 32, 16, 32
    config.train.epochs, config.train.batch_size, config.train.lr = epochs, 16, 0.01
    config.train.seed = seed
    run(config, [Example(s.tokens, {task.name: s.labels}) for s in train],
        [Example(s.tokens, {task.name: s.labels}) for s in dev], directory, progress=False)
    return directory


@pytest.fixture(scope="session")
def tiny_pos_model(tmp_path_factory, ewt_sentences) -> Path:
    """A UPOS model trained for 2 epochs on 400 EWT sentences (a few seconds)."""
    return _train_tiny(tmp_path_factory.mktemp("models") / "pos", TaskConfig(name="upos", kind="tag"),
                       ewt_sentences["train"][:400], ewt_sentences["dev"][:100], epochs=2)


@pytest.fixture(scope="session")
def tiny_ner_model(tmp_path_factory, uner_sentences) -> Path:
    """An NER model (PER/LOC/ORG) trained for 3 epochs on 600 Universal NER sentences."""
    return _train_tiny(tmp_path_factory.mktemp("models") / "ner", TaskConfig(name="ner", kind="span"),
                       uner_sentences["train"][:600], uner_sentences["dev"][:100], epochs=3)


@pytest.fixture(scope="session")
def tiny_ner_model_seed2(tmp_path_factory, uner_sentences) -> Path:
    """``tiny_ner_model``'s recipe with another seed: a second member for ensembles."""
    return _train_tiny(tmp_path_factory.mktemp("models") / "ner2", TaskConfig(name="ner", kind="span"),
                       uner_sentences["train"][:600], uner_sentences["dev"][:100], epochs=3, seed=2)

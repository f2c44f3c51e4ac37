"""Raw text -> sentences of tokens with character offsets, by spaCy's rule-based tokenizer.

``spacy.blank(lang)`` plus the sentencizer: no model download. Offsets are Python string
indices (Unicode code points), so ``text[start:end] == token`` always holds. Long texts are
cut at paragraph, line or space boundaries into chunks spaCy handles comfortably (no
``max_length`` error for documents of many MB); blank lines also end sentences, and very
long sentences are cut into pieces of at most ``max_tokens``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator

import spacy

CHUNK_CHARS = 100_000
MAX_SENTENCE_TOKENS = 300
# spaCy keeps every string it has seen in its vocabulary, for the life of the pipeline; past
# this many new ones the pipeline is rebuilt, so a long-running process stays bounded.
MAX_NEW_STRINGS = 100_000
_BREAKS = (re.compile(r"\n[ \t\r\f\v]*\n"), re.compile(r"\n"), re.compile(r"\s"))

Token = tuple[str, int, int]  # text, start, end


class Tokenizer:
    """Sentence splitting and tokenization for one language. Threads may share one: a call
    holds its lock while spaCy runs (a pipeline is not made for concurrent calls)."""

    def __init__(self, lang: str = "en", max_tokens: int = MAX_SENTENCE_TOKENS, max_new_strings: int = MAX_NEW_STRINGS):
        self.lang, self.max_tokens, self.max_new_strings = lang, max_tokens, max_new_strings
        self.nlp = self._pipeline()
        self._base_strings = len(self.nlp.vocab.strings)
        self._lock = threading.Lock()

    def _pipeline(self) -> spacy.language.Language:
        try:
            nlp = spacy.blank(self.lang)
        except (ImportError, KeyError) as error:  # spaCy raises ImportError for unknown codes
            raise ValueError(f"spaCy has no language {self.lang!r}") from error
        nlp.add_pipe("sentencizer")
        nlp.max_length = CHUNK_CHARS * 2
        return nlp

    def __call__(self, text: str) -> list[list[Token]]:
        return next(iter(self.pipe([text])))

    def pipe(self, texts: Iterable[str], batch_size: int = 64) -> Iterator[list[list[Token]]]:
        """Tokenize many texts in bulk (``nlp.pipe``); one list of sentences per text."""
        texts = list(texts)
        chunks = [(i, start, chunk) for i, text in enumerate(texts) for start, chunk in split_text(text)]
        result: list[list[list[Token]]] = [[] for _ in texts]
        with self._lock:
            docs = self.nlp.pipe((chunk for _, _, chunk in chunks), batch_size=batch_size)
            for (i, offset, _), doc in zip(chunks, docs):
                result[i].extend(self._sentences(doc, offset))
            if len(self.nlp.vocab.strings) - self._base_strings > self.max_new_strings:
                self.nlp = self._pipeline()  # the old vocabulary goes with the old pipeline
        yield from result

    def _sentences(self, doc, offset: int) -> Iterator[list[Token]]:
        for sent in doc.sents:
            current: list[Token] = []
            for token in sent:
                if token.is_space:
                    if current and token.text.count("\n") >= 2:
                        yield current
                        current = []
                    continue
                current.append((token.text, offset + token.idx, offset + token.idx + len(token.text)))
                if len(current) >= self.max_tokens:
                    yield current
                    current = []
            if current:
                yield current


def split_text(text: str, size: int = CHUNK_CHARS) -> Iterator[tuple[int, str]]:
    """Cut ``text`` into ``(offset, chunk)`` pieces of at most about ``size`` characters,
    preferring blank lines, then newlines, then any whitespace; hard cuts only for a run of
    ``size`` characters without whitespace."""
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = -1
        for pattern in _BREAKS:
            window = text[start + size // 2 : end]
            found = [m.end() for m in pattern.finditer(window)]
            if found:
                cut = start + size // 2 + found[-1]
                break
        if cut <= start:
            cut = end
        yield start, text[start:cut]
        start = cut
    if start < len(text) or not text:
        yield start, text[start:]

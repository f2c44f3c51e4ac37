"""The spaCy tokenizer front end: offsets into the input, and a vocabulary that stays bounded."""

from __future__ import annotations

from tagger.data.tokenize import Tokenizer


def test_offsets_slice_back_to_every_token(ewt_sentences):
    texts = [s.text for s in ewt_sentences["dev"][:300] if s.text]
    document = "\n\n".join(texts)
    tokenizer = Tokenizer("en")
    sentences = tokenizer(document)
    tokens = [t for sentence in sentences for t in sentence]
    assert all(document[start:end] == token for token, start, end in tokens)
    assert [start for _, start, _ in tokens] == sorted(start for _, start, _ in tokens)
    assert len(sentences) >= len(texts)  # blank lines end sentences
    assert sum(len(s.tokens) for s in ewt_sentences["dev"][:300] if s.text) * 0.9 < len(tokens)


def test_the_vocabulary_of_a_long_running_tokenizer_stays_bounded():
    """spaCy remembers every string it meets; a service sees endless new ones (ids, names,
    numbers). Past ``max_new_strings`` the pipeline is rebuilt, and the output is unchanged."""
    bounded = Tokenizer("en", max_new_strings=500)
    base = len(bounded.nlp.vocab.strings)
    reference = Tokenizer("en", max_new_strings=10**9)
    rebuilt = 0
    for batch in range(40):
        texts = [f"Ticket T-{batch}{i}9 closed by agent{batch}x{i} at 10:{i:02d} ." for i in range(64)]
        before = bounded.nlp
        assert list(bounded.pipe(texts)) == list(reference.pipe(texts))
        rebuilt += bounded.nlp is not before
        assert len(bounded.nlp.vocab.strings) - base <= 500 + 64 * 8  # one batch's new strings at most past the bound
    assert rebuilt >= 5
    assert len(reference.nlp.vocab.strings) - base > 40 * 64 * 2  # what grows without the bound

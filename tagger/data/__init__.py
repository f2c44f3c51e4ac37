"""Data: corpora in, one internal form out.

Readers (plain generators, :mod:`tagger.data.readers`) turn CoNLL-U, column and JSONL files into
:class:`tagger.data.corpus.Sentence` records; ``schemes`` converts tagging schemes; ``align``
joins corpora by sentence id; ``datasets`` makes training examples; ``tokenize`` is spaCy
tokenization with character offsets; ``vocab``, ``vectors`` and ``batching`` turn tokens into
ids and batches; ``writers`` writes corpora and files atomically. Nothing here knows torch
models: this room imports only :mod:`tagger.config`.
"""

"""Engines: the tagger inside other systems: Ray Data batch jobs (``ray_engine``) and a spaCy
pipeline component (``spacy_component``, registered as the ``bilstm_tagger`` factory)."""

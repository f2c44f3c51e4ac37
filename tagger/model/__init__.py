"""Model: the network and its directory on disk.

``network`` computes scores (embeddings, character CNN/BiLSTM, encoder, one head per task);
``crf`` holds the decoders (linear-chain CRF: likelihood, Viterbi, marginals; softmax);
``artifact`` saves and loads one model's directory; ``ensemble`` averages several;
``directory`` loads either kind. Imports :mod:`tagger.data` and :mod:`tagger.config` only.
"""

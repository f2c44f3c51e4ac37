"""BiLSTM-CRF sequence tagger: readers, model, training, evaluation and the Tagger facade."""

"""Inference: tagging with a trained model.

``predict`` is batched prediction and the :class:`~tagger.inference.predict.Tagger` facade the
service uses; ``context`` is document context at decoding; ``runtime`` the ONNX Runtime
backend (and ``onnx-int8``); ``quantize`` the ``int8`` backend; ``output`` and ``tagfiles`` write tagged documents and run ``tagger tag``'s file job.
"""

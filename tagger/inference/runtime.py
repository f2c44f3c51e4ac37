"""ONNX Runtime backend: the network's features, recurrent encoder and output layers as one
ONNX graph.

The graph is built when a model loads, from the weights already in memory: no extra file in
the model directory and nothing unpickled. It takes the batch's ids (words, characters of
each distinct form, which form each token is, casing) and gives each task's emissions: the
word and casing lookups, the character CNN with its max-pooling, the BiLSTM (ONNX Runtime's
fused kernel has less overhead per step than ``nn.LSTM``: en-pos's encoder on one sentence
2.3-2.6 -> 1.45 ms, on full batches 1.0-1.3x faster) and the heads, in one call. A model
with a character BiLSTM keeps its features in torch (``features`` is False then). CRF
decoding stays in NumPy. The price is
memory: each session keeps an arena sized by the largest batch it ran (a server on this
backend held ~150 MB more under load), so torch stays the default. Same numbers to float
rounding (tested against the torch path).

Optional: ``pip install 'tagger[onnx]'``, then ``Tagger.load(path, backend="onnx")`` or
``tagger tag --backend onnx``.

``backend="onnx-int8"``: the same graph through ONNX Runtime's dynamic quantization (the LSTM
and the matrix products with int8 weights). On en-core (2026-12-04, EWT test): 1.25x the
tokens/s of the float graph, one sentence 1.05 ms against 1.5; 99.9% of labels the same.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

OPSET = 17
IR_VERSION = 8  # ONNX 1.13+; onnxruntime reads up to the IR version of its own onnx release
# Gate order: torch packs LSTM gates as (input, forget, cell, output), ONNX as (input,
# output, forget, cell); GRU as (reset, update, new) against ONNX's (update, reset, hidden).
_GATES = {"LSTM": (4, [0, 3, 1, 2]), "GRU": (3, [1, 0, 2]), "RNN": (1, [0])}


def onnx_available() -> bool:
    """Whether the onnx backend can run here (``tagger[onnx]`` installed)."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


class OnnxEncoder:
    """Runs ``network.encoder`` and ``network.heads`` in ONNX Runtime.

    Args:
        network: a :class:`tagger.model.network.SequenceTagger` (read once; later changes to its
            weights are not seen).
        threads: intra-op threads; 0 uses torch's current setting.
        features: compute the features in the graph too (:meth:`emissions`) where the model's
            character encoder allows it (a CNN, or none); else the graph starts from them
            (:meth:`__call__`).
        int8: quantize the graph (:func:`quantize_graph`).
    """

    def __init__(self, network: nn.Module, threads: int = 0, features: bool = True, int8: bool = False):
        if not onnx_available():
            raise ImportError("the onnx backend needs onnxruntime and onnx: pip install 'tagger[onnx]'")
        import onnxruntime

        self.tasks = list(network.heads)
        self.features = features and features_in_graph(network)
        self.casing = network.casing is not None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle pool threads that spin steal the cores torch needs between runs (measured with 2
        # threads: p50 7.4 ms spinning, 4.2 ms not, on one sentence of en-pos).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        graph = build_graph(network, self.features)
        self.session = onnxruntime.InferenceSession(quantize_graph(graph) if int8 else graph.SerializeToString(),
                                                    options, providers=["CPUExecutionProvider"])

    def __call__(self, features: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """(B, T, D) input features and (B,) lengths -> task -> (B, T, L) emissions (a graph
        built without the features)."""
        if self.features:
            raise ValueError("this graph computes its own features: call emissions() with the batch's ids")
        return self._run({"in.features": features.detach().contiguous().numpy(),
                          "in.lengths": lengths.numpy().astype(np.int32)})

    def emissions(self, words: Tensor, chars: Tensor, char_index: Tensor, mask: Tensor,
                  casing: Tensor | None = None) -> dict[str, Tensor]:
        """A batch's ids (as :meth:`SequenceTagger.forward` takes them) -> task -> (B, T, L)
        emissions, features included (a graph built with them)."""
        if not self.features:
            raise ValueError("this graph starts from the features: call it with them")
        inputs = {"in.words": words.numpy(), "in.chars": chars.numpy(), "in.char_index": char_index.numpy(),
                  "in.lengths": mask.sum(1).numpy().astype(np.int32)}
        if self.casing:
            if casing is None:
                raise ValueError("this model has a casing feature: pass the batch's casing classes")
            inputs["in.casing"] = casing.numpy()
        return self._run(inputs)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, Tensor]:
        outputs = self.session.run(self.tasks, inputs)
        return {task: torch.from_numpy(output) for task, output in zip(self.tasks, outputs)}


def quantize_graph(graph) -> bytes:
    """``graph`` (an ONNX ModelProto) with int8 weights in its LSTM and matrix products
    (ONNX Runtime's dynamic quantization), serialized. The quantizer works on files: a
    scratch directory holds them for the call."""
    import logging
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def not_the_quantizers(record: logging.LogRecord) -> bool:  # it logs advice on the root logger
        return "onnxruntime" not in record.pathname

    root = logging.getLogger()
    # logging.warning() on a root logger without handlers would install a stderr handler for good
    placeholder = logging.NullHandler() if not root.handlers else None
    with tempfile.TemporaryDirectory(prefix="tagger-onnx-") as scratch:
        source, target = Path(scratch) / "float.onnx", Path(scratch) / "int8.onnx"
        onnx.save(graph, source)
        root.addFilter(not_the_quantizers)
        if placeholder is not None:
            root.addHandler(placeholder)
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM", "MatMul"])
        finally:
            root.removeFilter(not_the_quantizers)
            if placeholder is not None:
                root.removeHandler(placeholder)
        return target.read_bytes()


def features_in_graph(network: nn.Module) -> bool:
    """Whether :func:`build_graph` can compute ``network``'s features (a character CNN or none)."""
    return network.chars is None or network.chars.kind == "cnn"


def build_graph(network: nn.Module, features: bool = False):
    """The ONNX model for ``network``'s encoder and heads: inputs ``in.features`` (B, T, D)
    float32 and ``in.lengths`` (B,) int32; one (B, T, L) output per task, named by the task.
    With ``features``, the graph computes them from the ids instead (inputs ``in.words``
    (B, T), ``in.chars`` (U, C), ``in.char_index`` (B, T), and ``in.casing`` (U,) for a model
    with a casing feature, all int64), as :meth:`SequenceTagger.features` does in eval mode.
    Every other tensor's name has a dot, which task names cannot have."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rnn: nn.RNNBase = network.encoder.rnn
    op = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN"}.get(rnn.mode)
    if op is None:
        raise ValueError(f"the onnx backend has no {rnn.mode} cell")
    if not rnn.bias:
        raise ValueError("the onnx backend needs an encoder with biases")
    gates, order = _GATES[op]
    hidden = rnn.hidden_size
    nodes, weights = [], []

    def constant(name: str, value: np.ndarray) -> str:
        weights.append(numpy_helper.from_array(np.ascontiguousarray(value), f"w.{name}"))
        return f"w.{name}"

    def reorder(matrix: np.ndarray) -> np.ndarray:  # torch gate blocks -> ONNX gate blocks
        blocks = np.split(matrix, gates, axis=0)
        return np.concatenate([blocks[i] for i in order], axis=0)

    def param(name: str) -> np.ndarray:
        return getattr(rnn, name).detach().float().numpy()

    if features:
        graph_inputs = _feature_nodes(network, nodes, constant)
        source = "h.features"
    else:
        graph_inputs = [helper.make_tensor_value_info("in.features", TensorProto.FLOAT, ["batch", "steps", rnn.input_size])]
        source = "in.features"
    graph_inputs.append(helper.make_tensor_value_info("in.lengths", TensorProto.INT32, ["batch"]))
    nodes.append(helper.make_node("Transpose", [source], ["h.x0"], perm=[1, 0, 2]))  # (T, B, D)
    x = "h.x0"
    for layer in range(rnn.num_layers):
        w, r, b = [], [], []
        for suffix in ("", "_reverse"):
            w.append(reorder(param(f"weight_ih_l{layer}{suffix}")))
            r.append(reorder(param(f"weight_hh_l{layer}{suffix}")))
            b.append(np.concatenate([reorder(param(f"bias_ih_l{layer}{suffix}")),
                                     reorder(param(f"bias_hh_l{layer}{suffix}"))]))
        inputs = [x, constant(f"W{layer}", np.stack(w)), constant(f"R{layer}", np.stack(r)),
                  constant(f"B{layer}", np.stack(b)), "in.lengths"]
        extra = {"linear_before_reset": 1} if op == "GRU" else {}
        nodes.append(helper.make_node(op, inputs, [f"h.y{layer}"], direction="bidirectional",
                                      hidden_size=hidden, **extra))  # (T, 2, B, H)
        last = layer == rnn.num_layers - 1
        if last and network.encoder.merge == "average":
            nodes.append(helper.make_node("ReduceMean", [f"h.y{layer}"], [f"h.x{layer + 1}"], axes=[1],
                                          keepdims=0))  # (T, B, H)
        else:
            nodes.append(helper.make_node("Transpose", [f"h.y{layer}"], [f"h.t{layer}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"h.t{layer}", constant(f"shape{layer}", np.array([0, 0, -1], dtype=np.int64))],
                                          [f"h.x{layer + 1}"]))  # (T, B, 2H)
        x = f"h.x{layer + 1}"
    nodes.append(helper.make_node("Transpose", [x], ["h.encoded"], perm=[1, 0, 2]))  # (B, T, H')
    outputs = []
    for task, head in network.heads.items():
        weight = constant(f"{task}.weight", head.weight.detach().float().numpy().T)
        bias = constant(f"{task}.bias", head.bias.detach().float().numpy())
        nodes.append(helper.make_node("MatMul", ["h.encoded", weight], [f"h.{task}"]))
        nodes.append(helper.make_node("Add", [f"h.{task}", bias], [task]))
        outputs.append(helper.make_tensor_value_info(task, TensorProto.FLOAT, ["batch", "steps", head.out_features]))
    graph = helper.make_graph(nodes, "tagger-encoder", graph_inputs, outputs, initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tagger",
                              ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def _feature_nodes(network: nn.Module, nodes: list, constant: Callable[[str, np.ndarray], str]) -> list:
    """Append the nodes that make ``h.features`` (B, T, D) from the ids; return the inputs."""
    from onnx import TensorProto, helper

    def ids(name: str, shape: list[str]):
        return helper.make_tensor_value_info(name, TensorProto.INT64, shape)

    def table(module: nn.Embedding) -> np.ndarray:
        return module.weight.detach().float().numpy()

    inputs = [ids("in.words", ["batch", "steps"]), ids("in.chars", ["forms", "letters"]),
              ids("in.char_index", ["batch", "steps"])]
    parts = ["h.words"]
    nodes.append(helper.make_node("Gather", [constant("words", table(network.word_embed)), "in.words"], ["h.words"]))
    chars = network.chars
    if chars is not None:  # the CNN of CharEncoder.forward in eval mode, max-pooled over real characters
        kernel = chars.conv.kernel_size[0]
        nodes += [
            helper.make_node("Gather", [constant("chars", table(chars.embed)), "in.chars"], ["h.letters"]),  # (U, C, Dc)
            helper.make_node("Transpose", ["h.letters"], ["h.letters_t"], perm=[0, 2, 1]),  # (U, Dc, C)
            helper.make_node("Conv", ["h.letters_t", constant("conv.weight", chars.conv.weight.detach().float().numpy()),
                                      constant("conv.bias", chars.conv.bias.detach().float().numpy())], ["h.conv"],
                             pads=[kernel // 2, kernel - 1 - kernel // 2]),  # (U, H, C)
            helper.make_node("Transpose", ["h.conv"], ["h.windows"], perm=[0, 2, 1]),  # (U, C, H)
            helper.make_node("Equal", ["in.chars", constant("zero", np.array(0, dtype=np.int64))], ["h.padding"]),
            helper.make_node("Unsqueeze", ["h.padding", constant("axis2", np.array([2], dtype=np.int64))], ["h.padding3"]),
            helper.make_node("Where", ["h.padding3", constant("floor", np.array(-1e4, dtype=np.float32)), "h.windows"],
                             ["h.masked"]),
            helper.make_node("ReduceMax", ["h.masked"], ["h.forms"], axes=[1], keepdims=0),  # (U, H)
            helper.make_node("Gather", ["h.forms", "in.char_index"], ["h.form_features"]),  # (B, T, H)
        ]
        parts.append("h.form_features")
    if network.casing is not None:
        inputs.append(ids("in.casing", ["forms"]))
        nodes += [helper.make_node("Gather", [constant("casing", table(network.casing)), "in.casing"], ["h.casings"]),
                  helper.make_node("Gather", ["h.casings", "in.char_index"], ["h.casing_features"])]
        parts.append("h.casing_features")
    nodes.append(helper.make_node("Concat", parts, ["h.features"], axis=2))
    return inputs

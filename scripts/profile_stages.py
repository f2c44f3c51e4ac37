"""Where tagging time goes: per-stage timings for one model on the raw EWT test texts.

Usage: python scripts/profile_stages.py [--model en-pos] [--backend torch|onnx] [--threads N]
                                        [--hidden N] [--runs 3]

Two views, each the median of --runs:
- batch: the whole test set at once (as ``Tagger.tag_texts`` does it), seconds per stage
  and tokens/s;
- single: one sentence per call (as a one-sentence request), median ms per stage.

Stages: tokenize (spaCy), featurize (ids and tensors), features (word embeddings and the
character CNN), encoder (BiLSTM and output layers; in ONNX Runtime with --backend onnx),
decode (Viterbi), other (building the output objects: the whole call minus the stages).

--hidden N swaps in an encoder of N units a direction with random weights, to measure what
a smaller (or larger) model would cost; speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from tagger import Tagger
from tagger.config import EncoderConfig
from tagger.data.batching import Example, bucketed
from tagger.data.readers import read_conllu
from tagger.inference.predict import DEFAULT_BATCH_TOKENS
from tagger.inference.runtime import OnnxEncoder
from tagger.model.network import SequenceEncoder

ROOT = Path(__file__).resolve().parents[1]
EWT_TEST = ROOT.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-test.conllu"
STAGES = ("tokenize", "featurize", "features", "encoder", "decode")


def resize(tagger: Tagger, hidden: int) -> None:
    """Replace the encoder (and heads) by random ones of ``hidden`` units a direction."""
    network = tagger.model.network
    old = network.encoder.rnn
    config = EncoderConfig(cell={"LSTM": "lstm", "GRU": "gru"}.get(old.mode, "rnn"), layers=old.num_layers,
                           hidden=hidden, merge=network.encoder.merge)
    network.encoder = SequenceEncoder(config, old.input_size).eval()
    for task, head in network.heads.items():
        network.heads[task] = torch.nn.Linear(network.encoder.output_dim, head.out_features)


def timed_pass(tagger: Tagger, texts: list[str], encoder: OnnxEncoder | None) -> dict[str, float]:
    """One pass over ``texts`` with a timer around each stage; seconds per stage."""
    network, featurizer = tagger.model.network, tagger.model.featurizer
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.perf_counter
    started = clock()
    sentences = [[t[0] for t in s] for d in tagger.tokenizer.pipe(texts) for s in d]
    spent["tokenize"] = clock() - started
    lengths = [len(s) for s in sentences]
    with torch.inference_mode():
        for indices in bucketed(lengths, 256, max_tokens=DEFAULT_BATCH_TOKENS):
            t0 = clock()
            batch = featurizer.batch([Example(tuple(sentences[i])) for i in indices], with_labels=False)
            t1 = clock()
            features = network.features(batch.words, batch.chars, batch.char_index, batch.casing)
            t2 = clock()
            if encoder is None:
                encoded = network.encoder(features, batch.mask)
                emissions = {task: head(encoded) for task, head in network.heads.items()}
            else:
                emissions = encoder(features, batch.mask.sum(1))
            t3 = clock()
            network.decode(emissions, batch.mask, scores=False)
            t4 = clock()
            for stage, seconds in zip(STAGES[1:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                spent[stage] += seconds
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="en-pos")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--threads", type=int, default=0, help="torch (and ONNX Runtime) threads; 0: torch's default")
    parser.add_argument("--hidden", type=int, default=0, help="random encoder of this many units a direction")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=500, help="sentences for the single-sentence view")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = [s.text or " ".join(s.tokens) for s in read_conllu(EWT_TEST, None)]
    tagger = Tagger.load(ROOT / "models" / args.model)
    if len(tagger.model.members) > 1:
        parser.error(f"{args.model} is an ensemble; profile one member (--model {args.model}/member-1): "
                     "an ensemble runs every stage but decoding once per member")
    if args.hidden:
        resize(tagger, args.hidden)
    tagger = Tagger(tagger.model, backend=args.backend)  # the whole-call timings use the same backend
    # the encoder alone in ONNX, so that the features keep a timer of their own
    encoder = OnnxEncoder(tagger.model.network, features=False) if args.backend == "onnx" else None
    tokens = sum(len(s.tokens) for d in tagger.tag_texts(texts, scores=False) for s in d.sentences)  # warm-up
    size = f"{args.hidden} units a direction (random weights)" if args.hidden else "as trained"
    print(f"# {args.model}, encoder {size}, backend {args.backend}, {torch.get_num_threads()} thread(s); "
          f"{len(texts)} EWT test texts, {tokens:,} tokens; median of {args.runs} runs")

    batch_runs, whole = [], []
    for _ in range(args.runs):
        batch_runs.append(timed_pass(tagger, texts, encoder))
        started = time.perf_counter()
        tagger.tag_texts(texts, scores=False)
        whole.append(time.perf_counter() - started)
    stages = {s: statistics.median(r[s] for r in batch_runs) for s in STAGES}
    total = statistics.median(whole)
    stages["other"] = max(total - sum(stages.values()), 0.0)
    print(f"batch: {tokens / total:,.0f} tokens/s, {total:.2f} s: " +
          ", ".join(f"{s} {v:.2f} s ({100 * v / total:.0f}%)" for s, v in stages.items()))

    sample = texts[: args.sentences]
    per_stage: dict[str, list[float]] = {s: [] for s in (*STAGES, "other", "whole")}
    for _ in range(args.runs):
        for text in sample:
            spent = timed_pass(tagger, [text], encoder)
            started = time.perf_counter()
            tagger.tag(text, scores=False)
            call = time.perf_counter() - started
            for stage in STAGES:
                per_stage[stage].append(1000 * spent[stage])
            per_stage["whole"].append(1000 * call)
            per_stage["other"].append(max(1000 * call - 1000 * sum(spent.values()), 0.0))
    print("single sentence, median ms: " +
          ", ".join(f"{s} {statistics.median(v):.2f}" for s, v in per_stage.items()))


if __name__ == "__main__":
    main()

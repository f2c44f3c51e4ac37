"""Tagging speed, side by side with spaCy, on the raw texts of the EWT test set.

Usage: python scripts/bench.py [--runs 5] [--threads N] [--rounds 3] [--no-files | --files-only]

One table from one run: tokens/s tagging the EWT test texts (tokenization included) for
models/en-core, en-pos, en-ner and en-joint (torch; NAME/onnx: the encoder in ONNX Runtime, when
tagger[onnx] is installed; NAME/int8 and NAME/onnx-int8: int8 weights, their test scores measured in the run;
NAME/member-1: an ensemble's first member alone) and for spaCy's efficiency tagger and tagger+NER (built
by scripts/spacy_baseline.py), median of --runs; single-sentence latency in-process (p50,
p99); peak RSS; the test accuracy of each of our models. Each system runs in its own
process, so RSS is its own.

Then the job users run, like for like: a JSONL file of raw texts in (every EWT sentence's
text, train, dev and test: 16,622 distinct texts; copies of one text would bucket unrealistically
well), a JSONL file out, as whole processes: `tagger tag` (without and with scores) against
spaCy's pipelines doing the same job (scripts/spacy_tag_file.py: read, `nlp.pipe`, write
the same records less the scores; spacy-X/N: on N processes, `nlp.pipe(n_process=N)`, N
being the worker processes `tagger tag` runs by default). Start-up (a one-document file, fastest of three) is
reported apart and subtracted. Its in-process peer is
the same system's in-process call on the same texts, all of them in one call (which batches
better than any job that streams a file can), timed like the job: one pass after loading and
one document. The in-process call, the job and (ours) the job with scores take turns, in
--rounds rounds (one fewer for spaCy, at least two); each ratio (job against in-process,
scores against none) is taken within a round, where the machine's speed is one, and the
table gives its median over rounds with the lowest and highest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EWT_TEST = ROOT.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-test.conllu"
EWT_ALL = [EWT_TEST.with_name(f"en_ewt-ud-{split}.conllu") for split in ("train", "dev", "test")]
OURS = ["en-core", "en-pos", "en-ner", "en-joint"]
SPACY = {"spacy-tagger": ["tagger"], "spacy-tagger-ner": ["tagger", "ner"]}
COMPARE = {"en-core": "spacy-tagger-ner", "en-pos": "spacy-tagger", "en-joint": "spacy-tagger-ner", "en-ner": "spacy-tagger-ner"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(name: str, runs: int, threads: int, every: bool = False) -> dict:
    """Time one system in this process (on the test texts; ``every``: on every EWT text,
    throughput only); returns its row."""
    import torch

    from tagger.data.readers import read_conllu

    if threads:
        torch.set_num_threads(threads)
    texts = [s.text or " ".join(s.tokens) for path in (EWT_ALL if every else [EWT_TEST]) for s in read_conllu(path, None)]
    if name in SPACY:
        import spacy

        sys.path.insert(0, str(ROOT / "scripts"))
        from spacy_baseline import build

        nlp = spacy.load(build(name.removeprefix("spacy-"), SPACY[name]))
        nlp.add_pipe("sentencizer", first=True) if "parser" not in nlp.pipe_names else None

        def tag_all() -> int:
            return sum(len(doc) for doc in nlp.pipe(texts, batch_size=256))

        def tag_one(text: str) -> None:
            nlp(text)

        accuracy = None
    else:
        from tagger import Tagger

        model, _, backend = name.partition("/")
        if backend not in ("onnx", "int8", "onnx-int8"):  # NAME/member-1 is a directory
            model, backend = name, "torch"
        tagger = Tagger.load(ROOT / "models" / model, backend)  # type: ignore[arg-type]

        def tag_all() -> int:
            return sum(len(s.tokens) for d in tagger.tag_texts(texts, scores=False) for s in d.sentences)

        def tag_one(text: str) -> None:
            tagger.tag(text, scores=False)

        if backend.endswith("int8"):  # its labels may differ from the card's: scored here, after the timing
            accuracy = lambda: test_scores(tagger)  # noqa: E731
        else:
            card = json.loads((ROOT / "models" / model / "metrics.json").read_text())
            accuracy = {t: round(100 * (r["f1"] if "f1" in r else r["accuracy"]), 2) for t, r in card.get("test", {}).items()}
    if every:  # the file job's in-process peer: one cold pass after one document, as the job does
        tag_one(texts[0])
        started = time.perf_counter()
        tokens = tag_all()
        return {"name": name, "tokens": tokens, "tokens_per_s": tokens / (time.perf_counter() - started)}
    tokens = tag_all()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        tag_all()
        times.append(time.perf_counter() - started)
    latencies = []
    for text in texts[:500]:
        started = time.perf_counter()
        tag_one(text)
        latencies.append(1000 * (time.perf_counter() - started))
    latencies.sort()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"name": name, "tokens": tokens, "tokens_per_s": tokens / statistics.median(times),
            "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "rss_mb": rss_mb, "accuracy": accuracy() if callable(accuracy) else accuracy}


def test_scores(tagger) -> dict[str, float]:
    """Each task's test score (F1 for spans, token accuracy for tags) as the cards score it:
    the gold tokens, the test set's documents for document context."""
    from tagger.config import CorpusFormat
    from tagger.data.corpus import document_ids
    from tagger.data.readers import load_corpus
    from tagger.training.metrics import evaluate_labels, main_score

    data = ROOT.parent / "shared" / "data"
    sets = {"upos": (EWT_TEST, "upos"), "xpos": (EWT_TEST, "xpos"),
            "ner": (data / "uner-english-ewt" / "en_ewt-ud-test.iob2", None)}
    scores = {}
    for task, kind in tagger.tasks.items():
        path, column = sets[task]
        corpus = load_corpus(path, CorpusFormat(label_column=column), kind=kind)
        predictions = tagger.predict_sentences([s.tokens for s in corpus.sentences], document_ids(corpus.sentences))
        predicted = [p[task].labels for p in predictions]
        report = evaluate_labels([list(s.labels) for s in corpus.sentences], predicted, kind)
        scores[task] = round(100 * main_score(report, kind), 2)
    return scores


def run_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def in_process(name: str) -> float:
    """Tokens/s of ``name``'s in-process call on every EWT text, in a process of its own."""
    output = subprocess.run([sys.executable, __file__, "--one", name, "--runs", "1", "--every"],
                            capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])["tokens_per_s"]


def file_job(name: str, source: Path, one: Path, work: Path, tokens: int, rounds: int, scores: bool = False) -> dict:
    """``name``'s file job on ``source`` (``tokens`` gold tokens) less its start-up (``one``: one
    document, fastest of three), against its in-process peer, in ``rounds`` rounds in which the
    in-process call, the job and (for our models) the job with scores take turns, the job with
    scores first in every other round. Each ratio is taken inside a round, so that the machine's
    drift between rounds cancels; the row has the median over rounds and the lowest and
    highest."""
    spacy = name.partition("/")[0] in SPACY
    if spacy:  # spacy-X, or spacy-X/N: on N processes (nlp.pipe's n_process)
        sys.path.insert(0, str(ROOT / "scripts"))
        from spacy_baseline import build

        pipeline, _, processes = name.partition("/")

        def command(path: Path, scored: bool = False) -> list[str]:
            return [sys.executable, str(ROOT / "scripts" / "spacy_tag_file.py"),
                    str(build(pipeline.removeprefix("spacy-"), SPACY[pipeline])), str(path), str(work / "out.jsonl"),
                    processes or "1"]
    else:
        tagger = Path(sys.executable).with_name("tagger")

        model, _, backend = name.partition("/")

        def command(path: Path, scored: bool = False) -> list[str]:
            return [str(tagger), "tag", "--model", str(ROOT / "models" / model), "--input", str(path),
                    "--output", str(work / "out.jsonl"), *([] if scored else ["--no-scores"]),
                    *(["--backend", backend] if backend else [])]
    startup = min(run_seconds(command(one)) for _ in range(3))

    def job(scored: bool) -> float:
        return max(run_seconds(command(source, scored)) - startup, 1e-9)

    speed, of, cost = [], [], []
    for turn in range(rounds):
        # every other round the job with scores goes first: a machine drifting within a round
        # then favours neither
        first = job(True) if scores and turn % 2 else None
        same = in_process(name.partition("/")[0] if spacy else name)
        plain = job(False)
        speed.append(tokens / plain)
        of.append(tokens / plain / same)
        if scores:
            cost.append((first or job(True)) / plain - 1)
    return {"startup_s": startup, "tokens_per_s": speed, "of_in_process": of, "scores_cost": cost}


def _spread(values: list[float], form: str) -> str:
    """The median, and the lowest and highest when there are several: ``"98% (91-104%)"``."""
    middle = format(statistics.median(values), form)
    return middle if len(values) < 2 else f"{middle} ({format(min(values), form)} to {format(max(values), form)})"


def file_jobs(names: list[str], rounds: int = 3) -> None:
    """Print the file-job table (see the module docstring): each system's job, and its
    in-process call (``Tagger.tag_texts``, ``nlp.pipe``) on the same texts in one process."""
    import tempfile

    from tagger.data.readers import read_conllu
    from tagger.inference.tagfiles import default_workers

    sentences = [s for path in EWT_ALL for s in read_conllu(path, None)]
    texts = [s.text or " ".join(s.tokens) for s in sentences]
    tokens = sum(len(s.tokens) for s in sentences)  # gold tokens: within 1% of any tokenizer's count
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        source, one = work / "texts.jsonl", work / "one.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
        one.write_text(json.dumps({"id": "0", "text": texts[0]}) + "\n")
        spacy_rounds = max(2, rounds - 1)
        for name in names:
            ours = name.partition("/")[0] not in SPACY
            rows[name] = file_job(name, source, one, work, tokens, rounds if ours else spacy_rounds, scores=ours)
    print()
    print(f"# the file job: JSONL of raw texts in (every EWT text: {len(texts):,} texts, {tokens:,} tokens), JSONL out; "
          f"whole processes, start-up reported apart and subtracted; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# {rounds} rounds for ours, {spacy_rounds} for spaCy: each ratio is taken within a round, "
          "median (lowest to highest)")
    print(f"# `tagger tag` on its default workers ({default_workers()} processes here); spacy-X/N: nlp.pipe(n_process=N)")
    print("| system | tokens/s | of in-process, same texts | vs spaCy, same job | vs spaCy on as many processes | "
          "scores cost | start-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        speed = statistics.median(row["tokens_per_s"])
        peer = COMPARE.get(name.partition("/")[0])
        versus = [f"{speed / statistics.median(rows[other]['tokens_per_s']):.2f}x {other}" if other in rows else ""
                  for other in (peer, f"{peer}/{default_workers()}")]
        cost = _spread(row["scores_cost"], "+.0%") if row["scores_cost"] else ""
        print(f"| {name} | {speed:,.0f} | {_spread(row['of_in_process'], '.0%')} | {' | '.join(versus)} | {cost} | "
              f"{row['startup_s']:.2f} |")


def quantized(ours: list[str]) -> list[str]:
    """The default model's int8 file jobs (its onnx-int8 one when the onnx extra is installed)."""
    from tagger.inference.runtime import onnx_available

    if "en-core" not in ours:
        return []
    return ["en-core/int8", *(["en-core/onnx-int8"] if onnx_available() else [])]


def spacy_processes() -> list[str]:
    """spaCy's file jobs on as many processes as ``tagger tag`` uses by default (none if one)."""
    from tagger.inference.tagfiles import default_workers

    workers = default_workers()
    return [f"{name}/{workers}" for name in SPACY] if workers > 1 else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-files", action="store_true", help="in-process rows only")
    parser.add_argument("--files-only", action="store_true", help="the file-job rows only")
    parser.add_argument("--rounds", type=int, default=3, help="file-job rounds for our models (spaCy's: one fewer, at least 2)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--every", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.runs, args.threads, args.every)))
        return
    from tagger.inference.runtime import onnx_available
    from tagger.model.directory import is_model_directory

    rows = {}
    ours = [n for n in OURS if is_model_directory(ROOT / "models" / n)]
    if args.files_only:
        file_jobs([*ours, *quantized(ours), *SPACY, *spacy_processes()], args.rounds)
        return
    # an ensemble's first member alone: what the ensemble costs and gains
    ours += [f"{n}/member-1" for n in ours if (ROOT / "models" / n / "ensemble.json").exists()]
    backends = ["onnx", "int8", "onnx-int8"] if onnx_available() else ["int8"]
    for name in [*ours, *[f"{n}/{b}" for b in backends for n in ours if "/" not in n], *SPACY]:
        output = subprocess.run([sys.executable, __file__, "--one", name, "--runs", str(args.runs),
                                 "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        rows[name] = json.loads(output.stdout.strip().splitlines()[-1])
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"# tagging the raw EWT test texts ({rows[next(iter(rows))]['tokens']:,} tokens, tokenization included), "
          f"median of {args.runs} runs")
    print(f"# {cpu_model()}, {os.cpu_count()} cores, torch threads {threads}, torch {torch.__version__}, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| system | tokens/s | vs spaCy | p50 ms | p99 ms | peak RSS MB | test scores |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        ratio = ""
        other = COMPARE.get(name.partition("/")[0])
        if other in rows:
            ratio = f"{row['tokens_per_s'] / rows[other]['tokens_per_s']:.2f}x {other}"
        scores = ", ".join(f"{t} {v}" for t, v in (row["accuracy"] or {}).items())
        print(f"| {name} | {row['tokens_per_s']:,.0f} | {ratio} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
              f"{row['rss_mb']:.0f} | {scores} |")
    if not args.no_files:
        file_jobs([*[n for n in ours if "/" not in n], *quantized(ours), *SPACY, *spacy_processes()], args.rounds)


if __name__ == "__main__":
    main()

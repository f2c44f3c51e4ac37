"""tagger tune: tiny searches (a few trials of one or two epochs on a slice of EWT) that find,
resume, run in parallel processes, respect a time budget and refuse bad search spaces."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagger.cli import app
from tagger.config import ConfigError
from tagger.model.directory import load_model
from tagger.training.tune import load_space

SMALL = ["--set", "model.encoder.hidden=32", "--set", "model.word_dim=32", "--set", "model.char.hidden=16",
         "--set", "train.batch_size=16", "--quiet"]
SPACE = """
["train.lr"]
low = 0.002
high = 0.02
log = true

["model.dropout"]
choices = [0.2, 0.5]
"""


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, shared_data, write_head):
    directory = tmp_path_factory.mktemp("tune")
    ewt = shared_data / "ud-english-ewt"
    return (write_head(ewt / "en_ewt-ud-train.conllu", directory / "train.conllu", 200),
            write_head(ewt / "en_ewt-ud-dev.conllu", directory / "dev.conllu", 60),
            _write(directory / "space.toml", SPACE))


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_search_finds_a_model_and_a_rerun_resumes_it(corpora, tmp_path):
    train, dev, space = corpora
    output = tmp_path / "search"
    result = run("tune", "--train", train, "--dev", dev, "--output", output, "--trials", 3, "--epochs", 2,
                 "--space", space, *SMALL)
    assert result.exit_code == 0, result.output
    assert "best of 3 trials" in result.output
    info = json.loads((output / "search.json").read_text())
    assert [t["state"] for t in info["trials"]] == ["COMPLETE"] * 3
    assert info["trials"][0]["params"] == {"train.lr": 0.002, "model.dropout": 0.5}  # trial 0: the recipe (tag-small)
    assert all(len(t["curve"]) == 2 for t in info["trials"])  # dev after every epoch
    best = info["best"]
    assert best["dev"] == max(t["dev"] for t in info["trials"])
    model = load_model(output)  # the output is the best trial's model
    assert model.config.train.lr == pytest.approx(best["params"]["train.lr"])
    assert model.config.model.dropout == best["params"]["model.dropout"]
    card = (output / "README.md").read_text()
    assert "## Search" in card and f"trial {best['number']}, dev {best['dev']:.4f}" in card
    assert (output / "search-history.png").read_bytes()[:4] == b"\x89PNG"

    result = run("tune", "--train", train, "--dev", dev, "--output", output, "--trials", 4, "--epochs", 2,
                 "--space", space, *SMALL)  # the same study, one trial more
    assert result.exit_code == 0, result.output
    info = json.loads((output / "search.json").read_text())
    assert [t["number"] for t in info["trials"]] == [0, 1, 2, 3]


def test_trials_run_in_parallel_processes(corpora, tmp_path):
    train, dev, space = corpora
    result = run("tune", "--train", train, "--dev", dev, "--output", tmp_path / "s", "--trials", 2, "--jobs", 2,
                 "--epochs", 1, "--space", space, *SMALL)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "s" / "search.json").read_text())
    assert len(info["trials"]) == 2 and {t["state"] for t in info["trials"]} == {"COMPLETE"}
    assert load_model(tmp_path / "s").tasks == ["upos"]


def test_a_search_with_an_auxiliary_corpus_keeps_only_its_own_task(corpora, tmp_path, shared_data, write_head):
    from safetensors.torch import load_file

    train, dev, space = corpora
    aux = write_head(shared_data / "uner-english-ewt" / "en_ewt-ud-train.iob2", tmp_path / "uner.iob2", 120)
    result = run("tune", "--train", train, "--dev", dev, "--output", tmp_path / "s", "--trials", 2, "--jobs", 2,
                 "--epochs", 1, "--space", space, "--aux", aux, *SMALL)
    assert result.exit_code == 0, result.output
    assert f"auxiliary: aux1 (span) from {aux}; 120 sentences besides this corpus's 200" in result.output
    info = json.loads((tmp_path / "s" / "search.json").read_text())
    assert [t["state"] for t in info["trials"]] == ["COMPLETE"] * 2  # in worker processes, the tasks carried along
    model = load_model(tmp_path / "s")
    assert model.tasks == ["upos"] and model.config.train.auxiliary == [str(aux)]
    assert not any("aux1" in name for name in load_file(tmp_path / "s" / "weights.safetensors"))
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["auxiliary_sentences"] == 120


def test_the_time_budget_stops_running_trials(corpora, tmp_path):
    train, dev, space = corpora
    result = run("tune", "--train", train, "--dev", dev, "--output", tmp_path / "s", "--trials", 5,
                 "--time-budget", "6s", "--epochs", 300, "--space", space, *SMALL)
    assert result.exit_code == 2
    assert "no trial finished" in result.output
    info = json.loads((tmp_path / "s" / "search.json").read_text())
    # the first trial starts, and stops at the first epoch's end past the budget
    assert [t.get("note") for t in info["trials"]] == ["time budget"] and 0 < info["trials"][0]["epochs"] < 300
    assert not (tmp_path / "s" / "trials" / "0").exists()


def test_the_first_trial_is_the_recipe_where_the_space_holds_it():
    from tagger.config import TaggerConfig
    from tagger.training.tune import DEFAULT_SPACE, Param, starting_point

    config = TaggerConfig()
    config.train.lr, config.model.dropout, config.model.encoder.hidden = 0.002, 0.5, 256
    config.model.char.hidden, config.train.batch_size, config.model.word_dropout = 64, 32, 0.05
    assert starting_point(config, DEFAULT_SPACE) == {
        "train.lr": 0.002, "model.dropout": 0.5, "model.word_dropout": 0.05, "model.encoder.hidden": 256,
        "model.char.hidden": 64, "train.batch_size": 32}
    config.model.encoder.hidden, config.train.lr = 300, 0.5  # outside the space: left to the sampler
    space = {**DEFAULT_SPACE, "train.epochs": Param(low=5, high=20, integer=True)}
    config.train.epochs = 12
    point = starting_point(config, space)
    assert "model.encoder.hidden" not in point and "train.lr" not in point and point["train.epochs"] == 12


def test_with_init_from_the_init_models_architecture_is_not_searched():
    from tagger.config import TaggerConfig
    from tagger.training.tune import DEFAULT_SPACE, Param, fixed_by_init

    config = TaggerConfig()
    assert fixed_by_init(config, DEFAULT_SPACE) == DEFAULT_SPACE
    config.train.init_from = "models/en-core"
    kept = fixed_by_init(config, DEFAULT_SPACE)
    assert set(DEFAULT_SPACE) - set(kept) == {"model.encoder.hidden", "model.char.hidden"}
    assert "model.dropout" in kept and "train.lr" in kept  # dropouts and training settings are this run's
    with pytest.raises(ConfigError, match="every searched setting is fixed"):
        fixed_by_init(config, {"model.encoder.hidden": Param(choices=[100, 200])})


def _state(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent id (Linux /proc); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            if (state := _state(int(p.name))) and state[1] == pid and state[0] != "Z"]


def test_killing_a_parallel_search_stops_its_workers(corpora, tmp_path):
    train, dev, space = corpora
    command = [sys.executable, "-m", "tagger.cli", "tune", "--train", str(train), "--dev", str(dev), "--output",
               str(tmp_path / "s"), "--trials", "4", "--jobs", "2", "--epochs", "300", "--space", str(space), *SMALL]
    log = (tmp_path / "log.txt").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while len(workers := _children(process.pid)) < 3 and time.time() < deadline:  # 2 workers + resource tracker
            time.sleep(0.5)
        assert len(workers) >= 2, f"the workers never started: {(tmp_path / 'log.txt').read_text()[-2000:]}"
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) != 0
        deadline = time.time() + 30
        while (alive := [w for w in workers if (_state(w) or ("Z",))[0] != "Z"]) and time.time() < deadline:
            time.sleep(0.5)
        assert alive == [], "search workers outlived the killed search"
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("text, message", [
    ('["train.lr"]\nlow = 0.1\nhigh = 0.01\n', "low <= high"),
    ('["train.lr"]\nlow = 0\nhigh = 0.01\nlog = true\n', "low > 0"),
    ('["train.nothing"]\nchoices = [1, 2]\n', "nothing"),
    ('["model.encoder.cell"]\nchoices = ["transformer"]\n', "cell"),
    ("", "empty"),
])
def test_bad_search_spaces_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_space(_write(tmp_path / "space.toml", text))


def test_bad_options_fail_before_any_training(corpora, tmp_path):
    train, dev, space = corpora
    result = run("tune", "--train", train, "--dev", dev, "--output", tmp_path / "s", "--time-budget", "soon")
    assert result.exit_code == 2 and "--time-budget" in result.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = run("tune", "--train", train, "--dev", dev, "--output", tmp_path / "taken", "--space", space)
    assert result.exit_code == 2 and "holds no search" in result.output
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_the_same_search_runs_on_ray_tune(corpora, tmp_path, monkeypatch):
    """A local Ray (the ray extra): OptunaSearch proposes, ASHA may stop trials, the best model comes out."""
    pytest.importorskip("ray.tune")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    train, dev, space = corpora
    output = tmp_path / "ray-search"
    result = run("tune", "--engine", "ray", "--train", train, "--dev", dev, "--output", output, "--trials", 2,
                 "--jobs", 2, "--epochs", 2, "--space", space, *SMALL)
    assert result.exit_code == 0, result.output
    info = json.loads((output / "search.json").read_text())
    assert info["engine"] == "ray" and len(info["trials"]) == 2
    assert all(set(t["params"]) == {"train.lr", "model.dropout"} for t in info["trials"])
    best = info["best"]
    assert best["state"] == "COMPLETE" and best["dev"] == max(t["dev"] for t in info["trials"] if t["state"] == "COMPLETE")
    assert load_model(output).config.train.lr == pytest.approx(best["params"]["train.lr"])
    assert "## Search" in (output / "README.md").read_text()


def test_the_other_workers_start_once_the_first_has_taken_the_recipe_trial(tmp_path):
    """SQLite cannot lock a row: two workers starting together could both pop trial 0 (the
    recipe) and one then fails. The others start only once no trial is waiting."""
    import threading

    import optuna

    from tagger.training.tune import _wait_for_queue

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.sqlite'}", direction="maximize")
    study.enqueue_trial({"x": 1.0})
    popped = threading.Event()

    class Worker:  # stands in for worker 0's process: alive, takes the trial after a while
        def is_alive(self):
            return True

    def take():
        time.sleep(0.3)
        study.ask()  # pops the waiting trial
        popped.set()

    threading.Thread(target=take).start()
    started = time.monotonic()
    _wait_for_queue(study, Worker())
    assert popped.is_set() and time.monotonic() - started >= 0.25
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))

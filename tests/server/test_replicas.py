"""Two server replicas behind one client address with gRPC's round_robin policy."""

from __future__ import annotations

import json

from google.protobuf.json_format import MessageToDict

from server.client import TaggerClient

from .conftest import server_process

TEXTS = ["Barack Obama visited Paris last week .", "The European Union met in Brussels on Monday .",
         "Apple hired Tim Cook in Cupertino ."]


def served_requests(log_path) -> int:
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    return sum(1 for line in lines if line.get("message") == "rpc" and line.get("method") == "Tag")


def test_round_robin_spreads_requests_over_two_replicas_with_identical_answers(models_dir, tmp_path):
    with server_process(models_dir, tmp_path, "a") as (_, address_a, log_a), \
            server_process(models_dir, tmp_path, "b") as (_, address_b, log_b):
        target = f"ipv4:{address_a},{address_b}"
        with TaggerClient(target, load_balancing="round_robin") as balanced, \
                TaggerClient(address_a) as only_a, TaggerClient(address_b) as only_b:
            direct = {text: (MessageToDict(only_a.tag(text)), MessageToDict(only_b.tag(text))) for text in TEXTS}
            before = served_requests(log_a), served_requests(log_b)
            answers = [MessageToDict(balanced.tag(text)) for _ in range(10) for text in TEXTS]
        after = served_requests(log_a), served_requests(log_b)
    for text, (from_a, from_b) in direct.items():
        assert from_a == from_b, text  # the replicas answer identically
    assert answers == [direct[text][0] for _ in range(10) for text in TEXTS]
    spread = after[0] - before[0], after[1] - before[1]
    assert sum(spread) == 30
    assert min(spread) >= 10, spread  # round_robin alternates; both replicas served

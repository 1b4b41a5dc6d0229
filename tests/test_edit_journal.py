"""The edit journal's file format on its own (no model): exact round trips, other streams, interrupted writes."""

from __future__ import annotations

import torch

from scr.evaluation.edit_journal import ValueJournal


def test_journal_round_trips_target_values_exactly_and_only_extends_its_own_stream(tmp_path):
    path = tmp_path / "memit.jsonl"
    z = [torch.randn(576) for _ in range(3)]
    journal = ValueJournal(path, key="config A")
    assert journal.covers([], ["r0", "r1"]) == 0  # nothing journalled yet
    assert journal.extend(["r0", "r1"], [(z[0], {"nll": 0.5}), (z[1], {"nll": 0.25})], 8.5)
    assert not journal.extend(["r0", "r9", "r2"], [(z[2], {})], 1.0)  # another stream: never written
    assert not journal.extend(["r0"], [(z[0], {})], 1.0)  # already there

    again = ValueJournal(path, key="config A")  # another process reads the file
    assert again.covers([], ["r0", "r1", "r2"]) == 2
    assert again.covers(["r0"], ["r1"]) == 1
    assert again.covers(["r1"], ["r0"]) == 0 and again.covers([], ["r1", "r0"]) == 0
    (z0, info0, s0), (z1, info1, s1) = again.values(0, 2)
    assert torch.equal(z0, z[0]) and torch.equal(z1, z[1])  # float32 bit for bit
    assert info0 == {"nll": 0.5} and s0 == s1 == 8.5
    assert ValueJournal(path, key="config B").covers([], ["r0"]) == 0  # another configuration's stream

    # A process killed mid-write leaves a cut-short line: it is skipped, and the next row starts a line of its own.
    with open(path, "a") as fh:
        fh.write('{"key": "')
    cut = ValueJournal(path, key="config A")
    assert cut.covers([], ["r0", "r1", "r2"]) == 2
    assert cut.extend(["r0", "r1", "r2"], [(z[2], {})], 3.0)
    assert ValueJournal(path, key="config A").covers([], ["r0", "r1", "r2"]) == 3

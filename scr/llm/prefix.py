"""Which prompts of a generation request share a prefix worth computing once.

Prefill (running the prompt through the model) is most of the in-process backend's time on CPU. The evaluator's
and SCR's prompts repeat themselves at two depths:
- every chat prompt starts with the same chat-template system prompt (the whole batch shares it), and
- the questions answered with the same fact in context share "instruction + Fact: ..." (a group of rows shares
  it: on KnowEdit WikiData_counterfact test such prefixes are a third of the prompt tokens beyond the system
  prompt).
``group_prefix_lengths`` finds the second kind: it sorts the prompts, so rows with a common prefix sit next to
each other, and splits that order into runs that save the most tokens (a short dynamic programme). The backend
then runs each run's prefix once and lets its rows share the key/value cache (scr/llm/hf.py).
"""

from __future__ import annotations

MIN_GROUP_TOKENS = 4  # a group prefix must be at least this much longer than what every prompt shares anyway
MAX_GROUP_ROWS = 64   # bounds the search; fact groups are far smaller (a KnowEdit case has about 15 probes)


def common_prefix_length(rows: list[list[int]]) -> int:
    """Length of the token prefix that every row starts with."""
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        i = 0
        while i < length and row[i] == first[i]:
            i += 1
        length = i
    return length


def sorted_order(rows: list[list[int]]) -> list[int]:
    """Row indices in lexicographic order of the rows: rows with a common prefix become neighbours."""
    return sorted(range(len(rows)), key=lambda i: rows[i])


def group_prefix_lengths(rows: list[list[int]], order: list[int] | None = None) -> list[int]:
    """Per row, the length of the prefix it shares with its group of rows (0: the row is in no group).
    ``order``: ``sorted_order(rows)`` when the caller has it already.

    Groups are disjoint, hold at least two rows, share a prefix at least ``MIN_GROUP_TOKENS`` longer than the
    prefix common to all rows, and leave every row at least one token of its own. Among such partitions of the
    sorted rows, the one that saves the most prefix tokens is chosen.
    """
    n = len(rows)
    if n < 2:
        return [0] * n
    base = common_prefix_length(rows)
    order = order if order is not None else sorted_order(rows)
    # lcp[k]: tokens shared by the k-th and (k+1)-th rows in sorted order
    lcp = [common_prefix_length([rows[order[k]], rows[order[k + 1]]]) for k in range(n - 1)]
    # Over the first j sorted rows: best[j] the most tokens saved, start[j] where the last run begins (it ends at
    # row j-1), prefix[j] the prefix that run shares (0: row j-1 alone).
    best, start, prefix = [0] * (n + 1), list(range(n + 1)), [0] * (n + 1)
    for j in range(1, n + 1):
        best[j], start[j] = best[j - 1], j - 1  # row j-1 alone
        shared = len(rows[order[j - 1]]) - 1
        for i in range(j - 2, max(-1, j - 1 - MAX_GROUP_ROWS), -1):  # the run holds sorted rows i .. j-1
            shared = min(shared, lcp[i], len(rows[order[i]]) - 1)
            if shared - base < MIN_GROUP_TOKENS:
                break  # longer runs only share less
            saved = best[i] + (j - 1 - i) * (shared - base)
            if saved > best[j]:
                best[j], start[j], prefix[j] = saved, i, shared
    lengths = [0] * n
    j = n
    while j > 0:
        for k in range(start[j], j):
            lengths[order[k]] = prefix[j]
        j = start[j]
    return lengths

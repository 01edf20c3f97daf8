"""Folding a batch's step upserts leaves every stored step row as the sequence would."""

from __future__ import annotations

import random
import sqlite3

from rivers.storage._step_rows import UPSERT_STEP, StepRow, fold_step_rows, step_row

KINDS = (
    "STEP_WAITING",
    "STEP_POOL_BLOCKED",
    "STEP_STARTED",
    "STEP_RETRY",
    "STEP_SUCCESS",
    "STEP_FAILURE",
    "STEP_CANCELED",
)
TABLE = (
    "CREATE TABLE steps (run_id TEXT NOT NULL, step_key TEXT NOT NULL, "
    "status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started_at REAL, "
    "ended_at REAL, error TEXT, worker TEXT, PRIMARY KEY (run_id, step_key)) "
    "WITHOUT ROWID"
)


def _random_rows(rng: random.Random, count: int) -> list[StepRow]:
    rows = []
    for at in range(count):
        data = {
            "attempt": rng.randrange(3),
            "error": rng.choice((None, None, f"boom {at}")),
            "worker": rng.choice((None, f"w{at}")),
        }
        row = step_row(rng.choice(KINDS), "r", rng.choice("ab"), float(at), data)
        assert row is not None
        rows.append(row)
    return rows


def _apply(seed_rows: list[StepRow], rows: list[StepRow]) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(":memory:")
    conn.execute(TABLE)
    conn.executemany(UPSERT_STEP, seed_rows)
    conn.executemany(UPSERT_STEP, rows)
    return conn.execute("SELECT * FROM steps ORDER BY step_key").fetchall()


def test_folded_upserts_leave_the_rows_the_sequence_leaves() -> None:
    rng = random.Random(20261205)
    saved = 0
    for _ in range(3000):
        seed = _random_rows(rng, rng.randrange(3))  # rows stored before the batch
        batch = _random_rows(rng, rng.randrange(1, 8))
        folded = fold_step_rows(batch)
        assert _apply(seed, folded) == _apply(seed, batch), (seed, batch, folded)
        saved += len(batch) - len(folded)
    assert saved > 3000  # it does fold


def test_a_step_that_waits_starts_and_succeeds_in_one_batch_is_one_upsert() -> None:
    batch: list[StepRow] = []
    for at, kind in enumerate(("STEP_WAITING", "STEP_STARTED", "STEP_SUCCESS")):
        row = step_row(kind, "r", "a", at, {"attempt": 1, "worker": "thread"})
        assert row is not None
        batch.append(row)
    assert fold_step_rows(batch) == [("r", "a", "SUCCESS", 1, 1.0, 2.0, None, "thread")]


def test_a_cleared_error_is_not_brought_back_by_folding() -> None:
    seed: list[StepRow] = [("r", "a", "FAILURE", 1, 0.0, 1.0, "first failure", None)]
    batch: list[StepRow] = [
        ("r", "a", "RUNNING", 2, 2.0, None, None, None),  # clears the error
        ("r", "a", "WAITING", 2, None, None, None, None),  # and sets none
    ]
    assert len(fold_step_rows(batch)) == 2
    assert _apply(seed, fold_step_rows(batch))[0][6] is None

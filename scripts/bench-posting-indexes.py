#!/usr/bin/env python3
# What migration 0006's two posting indexes cost SQLite alone (BENCHMARKS.md, "Statements from
# storage"): posting inserts in commit-sized transactions, with and without the indexes, with
# the schema and settings of the service's writer (WAL, synchronous=FULL, 64 MiB cache).
# Usage: python3 scripts/bench-posting-indexes.py
import os, random, shutil, sqlite3, time, tempfile
def run(indexed, n=150_000, batch=570, accounts=100_000):
    d = tempfile.mkdtemp()
    db = sqlite3.connect(os.path.join(d, "t.db"), isolation_level=None)
    db.execute("pragma journal_mode=wal"); db.execute("pragma synchronous=full")
    db.execute("pragma cache_size=-65536")
    db.execute("""create table posting (entry_position integer not null, idx integer not null,
      unit text not null, debit blob not null, credit blob not null, amount_minor integer not null,
      primary key (entry_position, idx)) strict, without rowid""")
    if indexed:
        db.execute("create index posting_debit on posting (debit, entry_position)")
        db.execute("create index posting_credit on posting (credit, entry_position)")
    rng = random.Random(1)
    ids = [os.urandom(16) for _ in range(accounts)]
    t = time.perf_counter(); pos = 0
    while pos < n:
        db.execute("begin")
        rows = []
        for _ in range(batch):
            pos += 1
            rows.append((pos, 0, "PGI-EUR", rng.choice(ids), rng.choice(ids), 100))
        db.executemany("insert into posting values (?,?,?,?,?,?)", rows)
        db.execute("commit")
        # The service checkpoints in the background; keep the WAL from growing unboundedly.
        if pos % 20_000 < batch:
            db.execute("pragma wal_checkpoint(passive)")
    el = time.perf_counter() - t
    db.close()
    shutil.rmtree(d)
    print(f"indexed={indexed}: {n/el:,.0f} rows/s, {el:.1f} s", flush=True)
for r in range(2):
    run(False); run(True)

"""A small generated table with every column kind, for the demo on a machine without the Adult data.

Run `python -m tabtwin.pipeline.sample_data OUT.csv [ROWS]` to write one.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def make_sample_table(n_rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Customers with an id, bimodal and skewed amounts, categories, flags, dates and some nulls."""
    rng = np.random.default_rng(seed)
    n = n_rows
    seen_at = pd.to_datetime("2024-03-01") + pd.to_timedelta(rng.integers(0, 86_400 * 30, n), unit="s")
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + n),
            "amount": np.where(rng.random(n) < 0.4, rng.normal(-5, 1, n), rng.normal(20, 3, n)),
            "count": rng.poisson(30, n),
            "score": pd.Series(rng.gamma(2.0, 10.0, n)).where(rng.random(n) >= 0.1),
            "colour": rng.choice(["red", "green", "blue"], n),
            "grade": rng.choice([1, 2, 3, 4], n),
            "city": pd.Series(rng.choice(["Zürich", "東京", "Paris"], n)).where(rng.random(n) >= 0.15),
            "active": rng.random(n) < 0.3,
            "joined": pd.to_datetime("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
            "seen_at": pd.Series(seen_at).where(rng.random(n) >= 0.2),
            "born": (pd.to_datetime("1950-01-01") + pd.to_timedelta(rng.integers(0, 20000, n), unit="D")).strftime(
                "%Y-%m-%d"
            ),
        }
    )
    return frame


if __name__ == "__main__":
    from tabtwin.pipeline.ingest import write_table

    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    print(write_table(make_sample_table(rows), sys.argv[1]))

"""Drift statistics: PSI on fixed reference bins and the two-sample Kolmogorov-Smirnov test.

PSI is computed on bins fixed by the *reference* (its quantiles), so a reference is stored as
edges + proportions (a profile) and a day needs only its own counts in those bins:

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i)

with proportions floored at `EPSILON` so an empty bin counts as a large, finite shift.
Bins are right-closed: (-inf, e_1], (e_1, e_2], ..., (e_m, +inf); a value equal to an edge falls
in the bin that edge closes, for the reference and for the day alike (discrete features with
many ties at an edge stay comparable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EPSILON = 1e-4


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner edges at the reference's 1/bins .. (bins-1)/bins quantiles, de-duplicated
    (a feature with few distinct values gets fewer bins). Nulls are ignored."""
    x = _finite(values)
    if x.size == 0:
        return []
    # Empirical quantiles are observed values: a discrete feature gets no bin without reference rows.
    quantiles = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
    edges = np.unique(quantiles)
    # A lone top edge equal to the maximum would leave the last bin empty in the reference.
    if edges.size and edges[-1] >= x.max() and edges.size > 1:
        edges = edges[:-1]
    return [float(e) for e in edges]


def bin_proportions(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of the (non-null) values in each right-closed bin of `edges` (len(edges) + 1 bins)."""
    x = _finite(values)
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="left"),
                         minlength=len(edges) + 1)
    total = counts.sum()
    if total == 0:
        return [0.0] * (len(edges) + 1)
    return [float(c) for c in counts / total]


def psi(reference: Sequence[float], current: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two proportion vectors over the same bins."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    c = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    if r.shape != c.shape:
        raise ValueError(f"bins differ: {r.shape} vs {c.shape}")
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(frozen=True)
class KsResult:
    statistic: float
    pvalue: float


def ks(reference: np.ndarray, current: np.ndarray) -> KsResult:
    """Two-sample KS test (scipy, exact for small samples, asymptotic for large ones)."""
    r, c = _finite(reference), _finite(current)
    if r.size == 0 or c.size == 0:
        return KsResult(float("nan"), float("nan"))
    from scipy import stats  # here, not at import: scipy.stats takes seconds to import

    result = stats.ks_2samp(r, c, method="auto")
    return KsResult(float(result.statistic), float(result.pvalue))


def histogram(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Proportions over explicit outer edges (numpy's histogram: last bin closed)."""
    x = _finite(values)
    counts, _ = np.histogram(x, bins=np.asarray(edges, dtype=np.float64))
    total = counts.sum()
    return [float(v) for v in (counts / total if total else counts.astype(float))]


def null_rate(values: np.ndarray) -> float:
    x = np.asarray(values, dtype=np.float64)
    return float(np.isnan(x).mean()) if x.size else 0.0


def _finite(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[~np.isnan(x)]

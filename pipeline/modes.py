"""Mode-specific normalisation of a numeric column, fitted from its statistics (`pipeline.columns.numeric`): the
modes of `TableEncoder` (CTGAN, TVAE).

Spikes first (exact zeros, round amounts, a default date): each becomes a mode of its own with std 0, decoded
exactly and drawn with its share. The variational mixture (`pipeline.mixture`) is fitted on the remaining values
of the column's uniform sample (at most `max_fit_rows`, every value on smaller columns), all columns in one
batched loop. Fitting it on all of them let a spike of 94 % zeros and the 6 % around it share one mode whose
generator noise moved zeros off zero. Then every mode's window is widened, or tail modes added, until every seen
value lies in some window (`_widened_scales`), so that the round trip is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabtwin.pipeline.mixture import Mixture1D, fit_mixtures, prune

# Offsets are in units of this many standard deviations, and kept inside the tanh range.
STD_MULTIPLIER = 4.0
MAX_OFFSET = 0.99
# Spikes (`spikes`): values held by at least this share of a column and this many times the median count of its
# distinct values become exact modes of their own.
_SPIKE_SHARE = 0.01
_SPIKE_FACTOR = 5.0
# A mode's window may grow to this many times its fitted width to hold nearby seen values; values further out
# become tail modes (`_widened_scales`), at most this many per column.
_MAX_WIDENING = 2.0
MAX_TAIL_MODES = 5


@dataclass
class Continuous:
    """Learned state of one continuous or datetime column."""

    name: str
    dtype: str
    has_nulls: bool
    integer: bool
    minimum: float
    maximum: float
    weights: list[float]
    means: list[float]
    stds: list[float]  # the mixture's own spread, used for the posterior over modes
    scales: list[float]  # normalisation spread: stds widened so every seen value fits some mode's window
    datetime_unit: str | None = None  # set for datetime columns: values are modelled as counts of this unit
    datetime_format: str | None = None  # set when datetimes arrived as strings
    timezone: str | None = None

    @property
    def n_modes(self) -> int:
        return len(self.means)


def continuous_states(specs: list, summaries: list, max_modes: int, weight_threshold: float,
                      max_fit_rows: int) -> list[Continuous]:
    """One `Continuous` per numeric column (`specs` and their `NumericSummary`s, in order)."""
    mixtures = _fit_mixtures(summaries, max_modes, weight_threshold, max_fit_rows)
    return [_continuous_state(spec, summary, mixture) for spec, summary, mixture in zip(specs, summaries, mixtures)]


def _fit_mixtures(summaries: list, max_modes: int, weight_threshold: float, max_fit_rows: int) -> list[Mixture1D]:
    """Per column, the modes of its finite values (a mode with std 0 is an exact value), sorted by mean."""
    parts = []
    for summary in summaries:
        values, shares = spikes(summary, max(1, max_modes // 2))
        sample = summary.fit_sample(max_fit_rows)
        parts.append((values, shares, sample[~np.isin(sample, values)]))
    fittable = [c for c, (_, _, rest) in enumerate(parts) if len(np.unique(rest)) > 1]
    fitted = fit_mixtures([parts[c][2] for c in fittable], n_components=max_modes) if fittable else []
    fitted = {c: prune(m, weight_threshold) for c, m in zip(fittable, fitted)}
    mixtures = []
    for c, (values, shares, rest) in enumerate(parts):
        if c in fitted:
            mixture = fitted[c]
        elif len(rest):  # one distinct value besides the spikes (or a constant column): an exact mode
            mixture = Mixture1D(weights=np.ones(1), means=rest[:1].astype(np.float64), stds=np.zeros(1))
        elif len(values):
            mixture = Mixture1D(weights=np.zeros(0), means=np.zeros(0), stds=np.zeros(0))
        else:  # all null: one mode, nothing to learn
            mixture = Mixture1D(weights=np.ones(1), means=np.zeros(1), stds=np.ones(1))
        weights = np.r_[shares, mixture.weights * (1.0 - float(shares.sum()))]
        means = np.r_[values, mixture.means]
        stds = np.r_[np.zeros(len(values)), mixture.stds]
        order = np.argsort(means, kind="stable")
        mixtures.append(Mixture1D(weights=weights[order] / weights.sum(), means=means[order], stds=stds[order]))
    return mixtures


def spikes(summary, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, shares of the finite values) of a column's spikes, at most `limit`, the most frequent.

    A spike is a value held by at least `_SPIKE_SHARE` of the values and at least `_SPIKE_FACTOR` times as many
    as the median of the other distinct values (so the ages of a census, each about 2 %, are not spikes, while its
    92 % of zero capital gains and the 47 % working 40 hours are). Past the exact cap the counts are a sample's, scaled,
    whose median says nothing; there the column has over a million distinct values, so at most half of them
    hold more than 2 / 2**20 of the rows each and the share alone decides.
    """
    distinct, counts = summary.distinct, summary.counts
    if not summary.finite:
        return np.zeros(0), np.zeros(0)
    spike = counts >= _SPIKE_SHARE * summary.finite
    if summary.exact:
        spike &= counts >= _SPIKE_FACTOR * _median_of_others(counts, np.flatnonzero(spike))
    chosen = np.flatnonzero(spike)
    chosen = np.sort(chosen[np.argsort(counts[chosen], kind="stable")[::-1][:limit]])
    return distinct[chosen], counts[chosen] / summary.finite


def _median_of_others(counts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per candidate index, the median count of the other distinct values: with few of them the candidate's own
    count moves the median (799 zeros and one 1e6: a median of 400, and the zeros were no spike). Past
    `_EXACT_OTHERS` distinct values, one count moves it by one place at most, and the median of all is used."""
    if len(counts) > _EXACT_OTHERS:
        return np.full(len(counts), np.median(counts))
    others = np.full(len(counts), np.median(counts), dtype=np.float64)
    for i in candidates:
        others[i] = np.median(np.delete(counts, i)) if len(counts) > 1 else 0.0
    return others


_EXACT_OTHERS = 10_000


def _continuous_state(spec, summary, mixture: Mixture1D) -> Continuous:
    distinct, counts = summary.distinct, summary.counts
    if not len(distinct):
        distinct, counts = np.zeros(1), np.ones(1, dtype=np.int64)
    mixture, scales = _widened_scales(distinct, counts, mixture)
    return Continuous(
        name=spec.name,
        dtype=spec.dtype,
        has_nulls=bool(summary.nulls or summary.specials),  # specials travel in the null span
        integer=spec.integer,
        minimum=float(distinct[0]),
        maximum=float(distinct[-1]),
        weights=mixture.weights.tolist(),
        means=mixture.means.tolist(),
        stds=mixture.stds.tolist(),
        scales=scales.tolist(),
        datetime_unit=summary.unit,
        datetime_format=spec.datetime_format,
        timezone=summary.timezone if spec.kind == "datetime" else None,
    )


def _widened_scales(distinct: np.ndarray, counts: np.ndarray, mixture: Mixture1D):
    """The modes and their normalisation scales, such that every seen value (`distinct`, ascending, held by
    `counts` rows) lies inside some mode's window.

    Pruning small modes and heavy tails can leave values more than 4 sigma from every mode; clipping them would
    make the encoding lossy. A value within `_MAX_WIDENING` windows of the mode nearest to it (in its own
    sigmas) widens that mode just enough. Values further out are not swallowed: widening one mode 500-fold to
    reach a single 1e6 among refunds near 30 let the generator's noise on that mode's offsets spread its rows
    over the whole range (half of the synthetic rows above 1,000, against 0.05 % of the real ones). They become
    tail modes instead (`_tail_modes`), weighted by their share: a lone outlier is an exact mode. Clipping them
    to the nearest window would bound them as well, but break the round trip (a seen value would decode to
    another) and still put their rows at the edge of a mode; an own mode keeps the value and its share, and
    discloses nothing the encoder's stored range [minimum, maximum] does not.
    Returns (Mixture1D with any tail modes added, sorted by mean; scales), scale 0 for exact modes.
    """
    means, stds = mixture.means.astype(np.float64), mixture.stds.astype(np.float64)
    scales = stds.copy()
    point = stds <= 0
    covered = np.isin(distinct, means[point])
    reach = STD_MULTIPLIER * MAX_OFFSET
    spread = np.flatnonzero(~point)
    if len(spread) and len(distinct):
        sigmas = np.abs(distinct[:, None] - means[spread][None, :]) / stds[spread][None, :]
        nearest = np.argmin(sigmas, axis=1)
        needed = sigmas[np.arange(len(distinct)), nearest] / reach  # window widths to reach the value
        near = ~covered & (needed <= _MAX_WIDENING)
        widest = np.ones(len(spread))
        np.maximum.at(widest, nearest[near], needed[near] * (1 + 1e-9))
        scales[spread] = stds[spread] * widest
        covered |= near | (needed <= 1.0)
    far, far_counts = distinct[~covered], counts[~covered]
    if not len(far):
        return mixture, scales
    window = 2 * reach * float(scales[spread].max()) if len(spread) else 0.0
    tail_means, tail_scales, tail_counts = _tail_modes(far, far_counts, np.sort(means), window)
    # The tail values were the mixture's: its modes give up their share, exact modes (spikes) keep theirs.
    total = float(counts.sum())
    weights = mixture.weights.astype(np.float64).copy()
    if (~point).any():
        left = max(1.0 - weights[point].sum() - tail_counts.sum() / total, 0.0)
        weights[~point] *= left / weights[~point].sum()
    weights = np.r_[weights, tail_counts / total]
    means, scales = np.r_[means, tail_means], np.r_[scales, tail_scales]
    stds = np.r_[stds, tail_scales]  # a tail mode's posterior spread is its window's
    order = np.argsort(means, kind="stable")
    widened = Mixture1D(weights=weights[order] / weights.sum(), means=means[order], stds=stds[order])
    return widened, scales[order]


def _tail_modes(far: np.ndarray, counts: np.ndarray, mode_means: np.ndarray, window: float):
    """Group sorted distinct values that no mode reaches into at most `MAX_TAIL_MODES` modes.

    A new group starts where two values lie more than `window` (the widest mode window) apart or on different
    sides of a mode; past the cap, only the widest gaps split. Each group is a mode spanning exactly its values
    (mean mid-range, scale 0 for a single value). Returns (means, scales, counts), each (groups,).
    """
    slot = np.searchsorted(mode_means, far)
    gaps = np.diff(far)
    score = np.where(np.diff(slot) != 0, np.inf, gaps)
    splits = np.flatnonzero((score > window) | np.isinf(score))
    if len(splits) >= MAX_TAIL_MODES:
        splits = np.sort(splits[np.argsort(score[splits], kind="stable")[::-1][: MAX_TAIL_MODES - 1]])
    bounds = np.r_[0, splits + 1, len(far)]
    lows, highs = far[bounds[:-1]], far[bounds[1:] - 1]
    group_counts = np.add.reduceat(counts, bounds[:-1])
    scales = (highs - lows) / (2 * STD_MULTIPLIER * MAX_OFFSET) * (1 + 1e-9)
    return (lows + highs) / 2, scales, group_counts.astype(np.float64)

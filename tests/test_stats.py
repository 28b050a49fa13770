"""Statistics checked by simulation against known truth, and against exact references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from ticketaudit.analyses import stats
from ticketaudit.analyses.performance import PairedCounts, excess_drop

SIMULATIONS = 4000


def simulate_pairs(rng: np.random.Generator, n: int, p_b: float, p_c: float, size: int) -> tuple[np.ndarray, ...]:
    """Discordant counts b, c for ``size`` samples of n paired rows."""
    draws = rng.multinomial(n, [p_b, p_c, 1 - p_b - p_c], size=size)
    return draws[:, 0], draws[:, 1]


@pytest.mark.parametrize(("n", "p_b", "p_c", "low", "high"), [
    (100, 0.025, 0.025, 0.93, 0.99),   # 5% discordance, no change: few discordant pairs
    (100, 0.06, 0.01, 0.93, 0.99),     # a real 5-point drop
    (300, 0.025, 0.025, 0.93, 0.99),
    (300, 0.08, 0.03, 0.93, 0.97),
    (1000, 0.05, 0.02, 0.93, 0.97),
])
def test_paired_difference_coverage(n: int, p_b: float, p_c: float, low: float, high: float) -> None:
    rng = np.random.default_rng(1)
    b, c = simulate_pairs(rng, n, p_b, p_c, SIMULATIONS)
    diff = stats.paired_difference(b, c, np.full(SIMULATIONS, n), confidence=0.95)
    covered = np.mean((diff.low <= p_c - p_b) & (p_c - p_b <= diff.high))
    assert low <= covered <= high, covered


def test_percentile_bootstrap_would_undercover_where_bonett_price_does_not() -> None:
    """The reason for the score-type interval (DESIGN.md): n = 100, 5% discordance, a 4-point drop."""
    rng = np.random.default_rng(2)
    n, p_b, p_c = 100, 0.045, 0.005
    b, c = simulate_pairs(rng, n, p_b, p_c, 1000)
    wald_cover = []
    for bi, ci in zip(b, c):
        boot = rng.multinomial(n, [bi / n, ci / n, 1 - (bi + ci) / n], size=400)
        deltas = (boot[:, 1] - boot[:, 0]) / n
        lo, hi = np.quantile(deltas, [0.025, 0.975])
        wald_cover.append(lo <= p_c - p_b <= hi)
    diff = stats.paired_difference(b, c, np.full(len(b), n), confidence=0.95)
    score_cover = np.mean((diff.low <= p_c - p_b) & (p_c - p_b <= diff.high))
    assert score_cover >= 0.95
    assert score_cover > np.mean(wald_cover) + 0.015


@pytest.mark.parametrize(("n_group", "n_rest", "drop_group", "drop_rest"), [
    (100, 900, 0.0, 0.0), (300, 2700, 0.05, 0.01), (500, 1500, 0.02, 0.02),
])
def test_excess_drop_coverage(n_group: int, n_rest: int, drop_group: float, drop_rest: float) -> None:
    rng = np.random.default_rng(3)
    base = 0.03
    bg, cg = simulate_pairs(rng, n_group, base + drop_group, base, 2000)
    br, cr = simulate_pairs(rng, n_rest, base + drop_rest, base, 2000)
    w = n_group / (n_group + n_rest)
    truth = drop_group - (w * drop_group + (1 - w) * drop_rest)
    covered = 0
    for i in range(2000):
        est = excess_drop(PairedCounts(int(bg[i]), int(cg[i]), n_group), PairedCounts(int(br[i]), int(cr[i]), n_rest),
                          confidence=0.95)
        covered += est.low <= truth <= est.high
        assert np.isclose(est.estimate, (bg[i] - cg[i]) / n_group - (bg[i] - cg[i] + br[i] - cr[i]) / (n_group + n_rest))
    assert 0.93 <= covered / 2000 <= 0.99


def test_wilson_matches_scipy() -> None:
    for k, n in [(0, 10), (3, 10), (50, 100), (999, 1000)]:
        low, high = stats.wilson_interval(k, n, confidence=0.95)
        ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert np.isclose(low, ref.low) and np.isclose(high, ref.high)


def test_mcnemar_exact_and_asymptotic() -> None:
    assert stats.mcnemar_p_value(0, 0) == 1.0
    assert np.isclose(stats.mcnemar_p_value(2, 10), sps.binomtest(2, 12, 0.5).pvalue)
    assert np.isclose(stats.mcnemar_p_value(10, 30), sps.chi2.sf((20 - 1) ** 2 / 40, 1))


def test_holm_matches_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    adjusted = stats.holm(p)
    assert np.allclose(adjusted[[4, 0, 2, 1]], [0.02, 0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])


def test_multinomial_cells_match_row_resampling() -> None:
    """Resampling cell counts has the same distribution as resampling rows within each stratum."""
    rng = np.random.default_rng(4)
    stratum = np.repeat([0, 1], [200, 100])
    correct_d = rng.random(300) < 0.8
    correct_t = np.where(rng.random(300) < 0.1, ~correct_d, correct_d)
    cell = correct_d * 2 + correct_t + 4 * stratum
    keys, inverse, counts = np.unique(cell, return_inverse=True, return_counts=True)
    delta_per_cell = ((keys % 2) - (keys // 2) % 2).astype(float)
    draws = np.concatenate(list(stats.stratified_multinomial(counts.astype(float), keys // 4, n_strata=2,
                                                             n_boot=4000, seed=0)))
    cell_deltas = draws @ delta_per_cell / 300
    row_deltas = []
    for _ in range(4000):
        rows = np.concatenate([rng.choice(np.flatnonzero(stratum == s), size=(stratum == s).sum()) for s in (0, 1)])
        row_deltas.append((correct_t[rows].astype(float) - correct_d[rows]).mean())
    assert abs(cell_deltas.mean() - np.mean(row_deltas)) < 0.002
    assert abs(cell_deltas.std() / np.std(row_deltas) - 1) < 0.06
    assert np.array_equal(draws.sum(axis=1), np.full(4000, 300.0))


def test_bootstrap_is_reproducible_and_seed_sensitive() -> None:
    counts, strata = np.array([5.0, 7, 9, 2]), np.array([0, 0, 1, 1])
    first = np.concatenate(list(stats.stratified_multinomial(counts, strata, n_strata=2, n_boot=300, seed=3)))
    again = np.concatenate(list(stats.stratified_multinomial(counts, strata, n_strata=2, n_boot=300, seed=3)))
    other = np.concatenate(list(stats.stratified_multinomial(counts, strata, n_strata=2, n_boot=300, seed=4)))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_bootstrap_p_value_and_interval_agree() -> None:
    reps = np.random.default_rng(5).normal(0.5, 0.2, size=2000)
    low, high = stats.percentile_interval(reps, confidence=0.95)
    assert low > 0 and stats.bootstrap_p_value(reps) < 0.05
    assert stats.bootstrap_p_value(reps - 0.5) > 0.5


def test_lazy_replacements_equal_scipy_stats() -> None:
    """The start-up-light replacements give scipy.stats' numbers: Poisson(1) quantile table, exact and
    chi-square McNemar, normal quantiles."""
    from scipy import stats as sps

    from ticketaudit.analyses.stats import mcnemar_p_value, z_value
    from ticketaudit.analyses.streaming import poisson_table

    assert np.array_equal(poisson_table(), sps.poisson.ppf((np.arange(2**16) + 0.5) / 2**16, 1.0))
    for b in range(30):
        for c in range(30):
            if b + c == 0:
                continue
            expected = (sps.binomtest(b, b + c, 0.5).pvalue if b + c < 25
                        else sps.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), df=1))
            assert mcnemar_p_value(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    for confidence in (0.5, 0.9, 0.95, 0.999, 1 - 1e-6):
        assert z_value(confidence) == pytest.approx(sps.norm.ppf(0.5 + confidence / 2), rel=1e-12)


def test_row_index_draws_have_the_multinomial_law() -> None:
    """Strata with few rows per cell draw row indices (StratumResampler): their counts must follow the same
    multinomial as the binomial-per-cell path: means n·p, variances n·p·(1−p), every replicate summing to n."""
    counts = np.array([1.0, 3, 6, 2, 40, 8])  # stratum 0: 12 rows in 4 cells (index path); stratum 1: 48 in 2
    strata = np.array([0, 0, 0, 0, 1, 1])
    assert 12 <= stats.StratumResampler.ROWS_PER_CELL * 4 and 48 > stats.StratumResampler.ROWS_PER_CELL * 2
    draws = np.concatenate(list(stats.stratified_multinomial(counts, strata, n_strata=2, n_boot=20000, seed=1)))
    for cells, total in ((slice(0, 4), 12), (slice(4, 6), 48)):
        p = counts[cells] / total
        assert np.array_equal(draws[:, cells].sum(axis=1), np.full(20000, float(total)))
        assert np.allclose(draws[:, cells].mean(axis=0), total * p, atol=0.05 * np.sqrt(total))
        assert np.allclose(draws[:, cells].var(axis=0), total * p * (1 - p), rtol=0.06)


def test_fused_bootstrap_sums_equal_the_sums_of_the_drawn_counts() -> None:
    """CellTable.resampled_stratum_sums multiplies each stratum's redraw at once: it must equal stratum_sums of
    stratified_multinomial's (replicates, cells) counts, replicate by replicate."""
    from ticketaudit.analyses.cells import build_cells, metric_layout, metrics_from_sums, quantities

    rng = np.random.default_rng(2)
    proba = rng.dirichlet([1, 1], size=(2, 500))
    cells = build_cells(labels=rng.integers(0, 2, 500), proba_dense=proba[0], proba_ticket=proba[1],
                        stratum=rng.integers(0, 7, 500), n_strata=7, bins=10)
    layout = metric_layout(cells.layout)
    fused = np.concatenate([c.transpose(2, 0, 1) for c in
                            cells.resampled_stratum_sums(7, layout=layout, n_boot=50, seed=4, chunk=16)])
    counts = np.concatenate(list(stats.stratified_multinomial(cells.counts, cells.stratum, n_strata=7, n_boot=50,
                                                              seed=4, chunk=16)))
    full = cells.stratum_sums(counts, 7)
    assert np.allclose(fused, quantities(full, cells.layout, layout), rtol=1e-12, atol=1e-9)
    assert not np.allclose(fused[0], fused[1])
    for model in ("dense", "ticket"):  # the reduced quantities give the same metrics as the full ones
        reduced, whole = metrics_from_sums(fused, layout, model), metrics_from_sums(full, cells.layout, model)
        assert reduced.keys() == whole.keys()
        for name in whole:
            assert np.allclose(reduced[name], whole[name], equal_nan=True), name


def test_strata_drawn_together_keep_each_strata_law() -> None:
    """Strata of the same row count share one block and one integer draw (StratumResampler): each stratum must still
    keep its own size in every replicate and its multinomial means and variances, whatever its number of cells."""
    counts = np.array([1.0, 3, 6, 2, 5, 7, 4, 4, 4, 9, 3])  # strata 0, 1, 2: 12 rows each in 4, 2, 3 cells
    strata = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3])  # stratum 3: 12 rows in 2 cells too
    resampler = stats.StratumResampler(counts, strata, n_strata=4, seed=0)
    assert [len(block.strata) for block in resampler.blocks if block.by_row] == [4]
    draws = np.concatenate(list(stats.stratified_multinomial(counts, strata, n_strata=4, n_boot=20000, seed=2)))
    for s in range(4):
        cells = strata == s
        p = counts[cells] / 12
        assert np.array_equal(draws[:, cells].sum(axis=1), np.full(20000, 12.0))
        assert np.allclose(draws[:, cells].mean(axis=0), 12 * p, atol=0.05 * np.sqrt(12))
        assert np.allclose(draws[:, cells].var(axis=0), 12 * p * (1 - p), rtol=0.06)
    corr = np.corrcoef(draws[:, 0], draws[:, 4])[0, 1]  # strata drawn in one block stay independent
    assert abs(corr) < 0.03


def test_bootstrap_sums_do_not_depend_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of strata run on threads, each with its own random stream: one thread or several, the same sums."""
    from ticketaudit.analyses.cells import build_cells, metric_layout

    rng = np.random.default_rng(3)
    proba = rng.dirichlet([1, 1], size=(2, 3000))
    cells = build_cells(labels=rng.integers(0, 2, 3000), proba_dense=proba[0], proba_ticket=proba[1],
                        stratum=rng.integers(0, 60, 3000), n_strata=60, bins=10)
    layout = metric_layout(cells.layout)
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(stats, "worker_threads", lambda threads=threads: threads)
        monkeypatch.setattr(stats.StratumResampler, "BLOCK_ROWS", 200)  # many blocks
        results.append(np.concatenate(list(cells.resampled_stratum_sums(60, layout=layout, n_boot=40, seed=1,
                                                                        chunk=16)), axis=2))
    assert np.array_equal(results[0], results[1])

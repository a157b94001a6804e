"""Tests of the CLV model mathematics against independent references: the paper's formulas in
plain arithmetic, numerical integration over the latent rates, a direct power series, and
simulation from the models themselves."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from scipy.optimize import approx_fprime
from scipy.special import beta, betaln, gamma

from cdp.traits import clv_model as cm
from cdp.traits.clv_model import BgNbdParams, GammaGammaParams, ModelFitError
from cdp.traits.clv_simulate import simulate_bgnbd, simulate_gamma_gamma

# Published CDNOW estimates (FHL 2005a, 2005b): realistic magnitudes for every test.
CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
CDNOW_SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


# --- independent references --------------------------------------------------------------


def direct_bgnbd_likelihood(p: BgNbdParams, x: int, tx: float, big_t: float) -> float:
    """FHL 2005a eq. 6 in plain arithmetic (no logs): valid for small x and T only."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    common = gamma(r + x) * alpha**r / gamma(r)
    alive = beta(a, b + x) / beta(a, b) * common / (alpha + big_t) ** (r + x)
    lapsed = beta(a + 1, b + x - 1) / beta(a, b) * common / (alpha + tx) ** (r + x) if x else 0
    return float(alive + lapsed)


def posterior_expected_purchases(
    p: BgNbdParams, t: float, x: int, tx: float, big_t: float
) -> float:
    """E[Y(t) | x, t_x, T] without the hypergeometric function: an alive customer with rate
    lambda and lapse probability q buys (1/q)(1 - exp(-lambda q t)) times in t (FHL eq. 7);
    lambda integrates in closed form against its Gamma posterior, q numerically against
    q^(a-1) (1-q)^(b+x-1), and the result is divided by the likelihood (eq. 6)."""
    k = p.r + x

    def integrand(q: float) -> float:
        if q == 0:
            return k * t / (p.alpha + big_t)
        return -math.expm1(-k * math.log1p(q * t / (p.alpha + big_t))) / q

    value, _ = integrate.quad(
        integrand, 0, 1, weight="alg", wvar=(p.a - 1, p.b + x - 1), epsabs=0, epsrel=1e-11
    )
    log_norm = betaln(p.a, p.b + x)
    if x > 0:
        lapsed = betaln(p.a + 1, p.b + x - 1) + k * math.log((p.alpha + big_t) / (p.alpha + tx))
        log_norm = np.logaddexp(log_norm, lapsed)
    return math.exp(math.log(value) - log_norm)


def series_expected_purchases(p: BgNbdParams, t: float, x: int, tx: float, big_t: float) -> float:
    """FHL 2005a eq. 10 as printed, its 2F1(r+x, b+x; a+b+x-1; z) summed term by term in log
    space (all terms positive for x >= 1): a reference for large counts."""
    aa, bb, cc = p.r + x, p.b + x, p.a + p.b + x - 1
    z = t / (p.alpha + big_t + t)
    k = max(aa + bb - cc, 1.0)
    n = np.arange(int((k + 30 * math.sqrt(k) + 100) / (1 - z)) + 100, dtype=float)
    terms = np.concatenate(
        [[0.0], np.cumsum(np.log((aa + n) * (bb + n) / ((cc + n) * (n + 1)) * z))]
    )
    log_hyp = terms.max() + math.log(np.exp(terms - terms.max()).sum())
    bracket = -math.expm1(log_hyp + aa * math.log((p.alpha + big_t) / (p.alpha + big_t + t)))
    log_odds = math.log(p.a / (p.b + x - 1)) + aa * math.log((p.alpha + big_t) / (p.alpha + tx))
    return (p.a + p.b + x - 1) / (p.a - 1) * bracket * float(stats.logistic.sf(log_odds))


def log_param_standard_errors(
    total_ll: Callable[[np.ndarray], float], theta: np.ndarray
) -> np.ndarray:
    """Asymptotic standard errors of log-parameters: the inverse observed information, from a
    central finite-difference Hessian of the total log-likelihood."""
    h, k = 1e-3, theta.size
    hess = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            hess[i, j] = hess[j, i] = (
                total_ll(theta + ei + ej)
                - total_ll(theta + ei - ej)
                - total_ll(theta - ei + ej)
                + total_ll(theta - ei - ej)
            ) / (4 * h * h)
    return np.sqrt(np.diag(np.linalg.inv(-hess)))


def bgnbd_params(theta: np.ndarray) -> BgNbdParams:
    r, alpha, a, b = np.exp(theta)
    return BgNbdParams(float(r), float(alpha), float(a), float(b))


# --- fitting --------------------------------------------------------------------------------


def test_bgnbd_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    ages = rng.uniform(26, 104, size=20_000)
    s = simulate_bgnbd(20_000, CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, ages, rng)
    fit = cm.fit_bgnbd(frequency=s.frequency, recency=s.recency, age=s.age)
    assert fit.converged and fit.n_customers == 20_000
    theta = np.log(list(fit.params.to_dict().values()))
    truth = np.log(list(CDNOW.to_dict().values()))

    def total(th: np.ndarray) -> float:
        ll = cm.bgnbd_log_likelihood(
            bgnbd_params(th), frequency=s.frequency, recency=s.recency, age=s.age
        )
        return float(ll.sum())

    assert fit.log_likelihood == pytest.approx(total(theta), rel=1e-12)
    se = log_param_standard_errors(total, theta)
    # With 20,000 customers the asymptotic standard errors of the log-parameters are a few
    # percent (checked: all below 0.15, so the bound has teeth). Estimates within 4 standard
    # errors of the truth: a correct fit fails this about once in 10^4 seeds, and the seed is
    # fixed, while a wrong likelihood or optimiser misses by far more.
    assert (se < 0.15).all()
    assert np.all(np.abs(theta - truth) < 4 * se), (fit.params, se)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(11)
    x = 1.0 + rng.poisson(3.0, size=20_000)
    m = simulate_gamma_gamma(x, CDNOW_SPEND.p, CDNOW_SPEND.q, CDNOW_SPEND.gamma, rng)
    frequency = np.concatenate([x, np.zeros(500)])  # non-buyers: ignored, NaN spend allowed
    spend = np.concatenate([m, np.full(500, np.nan)])
    fit = cm.fit_gamma_gamma(frequency=frequency, mean_spend=spend)
    assert fit.converged
    assert (fit.n_customers, fit.n_repeat_customers) == (20_500, 20_000)
    theta = np.log(list(fit.params.to_dict().values()))

    def total(th: np.ndarray) -> float:
        p = GammaGammaParams(*(float(v) for v in np.exp(th)))
        return float(cm.gamma_gamma_log_likelihood(p, frequency=x, mean_spend=m).sum())

    assert fit.log_likelihood == pytest.approx(total(theta), rel=1e-12)
    se = log_param_standard_errors(total, theta)
    truth = np.log(list(CDNOW_SPEND.to_dict().values()))
    # As above: 20,000 spenders give standard errors of a few percent; 4 SE is a bound a
    # correct fit breaks about once in 10^4 seeds.
    assert (se < 0.15).all()
    assert np.all(np.abs(theta - truth) < 4 * se), (fit.params, se)


def test_fit_aggregates_without_changing_the_answer() -> None:
    rng = np.random.default_rng(3)
    s = simulate_bgnbd(3_000, 0.5, 6.0, 1.5, 4.0, 52.0, rng, time_step=1 / 7)
    once = cm.fit_bgnbd(frequency=s.frequency, recency=s.recency, age=s.age)
    twice = cm.fit_bgnbd(
        frequency=np.tile(s.frequency, 2), recency=np.tile(s.recency, 2), age=np.tile(s.age, 2)
    )
    assert twice.log_likelihood == pytest.approx(2 * once.log_likelihood, rel=1e-9)
    for k, v in once.params.to_dict().items():
        assert twice.params.to_dict()[k] == pytest.approx(v, rel=1e-5)
    order = rng.permutation(s.frequency.size)
    ll = cm.bgnbd_log_likelihood(once.params, frequency=s.frequency, recency=s.recency, age=s.age)
    shuffled = cm.bgnbd_log_likelihood(
        once.params, frequency=s.frequency[order], recency=s.recency[order], age=s.age[order]
    )
    np.testing.assert_array_equal(shuffled, ll[order])


def test_analytic_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(5)
    s = simulate_bgnbd(2_000, 0.3, 3.0, 0.7, 2.0, rng.uniform(1, 80, 2_000), rng)
    bg = cm._BgNbdObjective(s.frequency, s.recency, s.age)
    m = simulate_gamma_gamma(s.frequency, 4.0, 3.0, 20.0, rng)
    rep = s.frequency > 0
    gg = cm._GammaGammaObjective(s.frequency[rep], m[rep])
    for objective, theta in ((bg, np.log([0.5, 2.0, 1.3, 3.0])), (gg, np.log([2.0, 5.0, 9.0]))):
        numeric = approx_fprime(theta, lambda th, o=objective: o(th)[0], 1e-7)
        np.testing.assert_allclose(objective(theta)[1], numeric, rtol=1e-4, atol=1e-6)


def test_fit_with_large_counts_is_finite() -> None:
    rng = np.random.default_rng(9)
    s = simulate_bgnbd(2_000, 0.243, 4.414, 0.793, 2.426, 52.0, rng)
    heavy = np.array([300.0, 250.0, 400.0])
    fit = cm.fit_bgnbd(
        frequency=np.concatenate([s.frequency, heavy]),
        recency=np.concatenate([s.recency, [480.0, 100.0, 499.0]]),
        age=np.concatenate([s.age, [500.0, 500.0, 500.0]]),
    )
    assert fit.converged and math.isfinite(fit.log_likelihood)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frequency": [], "recency": [], "age": []}, "no customers"),
        ({"frequency": [0, 0], "recency": [0, 0], "age": [5, 9]}, "repeat purchase"),
        ({"frequency": [1, np.nan], "recency": [1, 0], "age": [5, 9]}, "finite"),
        ({"frequency": [1, 2], "recency": [1, 10], "age": [5, 9]}, "recency"),
        ({"frequency": [1.5, 2], "recency": [1, 1], "age": [5, 9]}, "whole number"),
        ({"frequency": [-1, 2], "recency": [1, 1], "age": [5, 9]}, "whole number"),
        ({"frequency": [0, 2], "recency": [1, 1], "age": [5, 9]}, "recency must be 0"),
    ],
)
def test_bgnbd_fit_rejects_degenerate_data(kwargs: dict[str, list[float]], message: str) -> None:
    with pytest.raises(ModelFitError, match=message):
        cm.fit_bgnbd(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frequency", "spend", "message"),
    [
        ([0, 0, 0], [np.nan, np.nan, np.nan], "at least two"),
        ([1, 0, 0], [5.0, np.nan, np.nan], "at least two"),
        ([1, 3, 2], [5.0, 5.0, 5.0], "same mean spend"),
        ([1, 3], [5.0, 0.0], "> 0"),
        ([1, 3], [5.0, np.inf], "finite"),
        ([1.5, 3], [5.0, 6.0], "whole number"),
    ],
)
def test_gamma_gamma_fit_rejects_degenerate_data(
    frequency: list[float], spend: list[float], message: str
) -> None:
    with pytest.raises(ModelFitError, match=message):
        cm.fit_gamma_gamma(frequency=frequency, mean_spend=spend)


def test_fit_results_serialise_to_json() -> None:
    rng = np.random.default_rng(2)
    s = simulate_bgnbd(1_000, 0.5, 5.0, 1.2, 3.0, 40.0, rng)
    m = simulate_gamma_gamma(s.frequency, 5.0, 4.0, 10.0, rng)
    bg = json.loads(
        json.dumps(cm.fit_bgnbd(frequency=s.frequency, recency=s.recency, age=s.age).to_dict())
    )
    gg = json.loads(json.dumps(cm.fit_gamma_gamma(frequency=s.frequency, mean_spend=m).to_dict()))
    assert bg["model"] == "bg_nbd" and set(bg["params"]) == {"r", "alpha", "a", "b"}
    assert bg["n_customers"] == 1_000 and isinstance(bg["converged"], bool)
    assert gg["model"] == "gamma_gamma" and set(gg["params"]) == {"p", "q", "gamma"}
    assert gg["n_repeat_customers"] == int((s.frequency > 0).sum())


def test_parameters_must_be_positive_and_finite() -> None:
    with pytest.raises(ValueError, match="alpha"):
        BgNbdParams(r=1.0, alpha=0.0, a=1.0, b=1.0)
    with pytest.raises(ValueError, match="gamma"):
        GammaGammaParams(p=1.0, q=2.0, gamma=math.inf)


# --- likelihoods against the formulas as printed -------------------------------------------


@pytest.mark.parametrize(
    "params", [CDNOW, BgNbdParams(2.0, 0.5, 3.0, 0.4), BgNbdParams(0.7, 9.0, 1.0, 1.0)]
)
def test_bgnbd_log_likelihood_matches_plain_formula(params: BgNbdParams) -> None:
    grid = [
        (x, tx, big_t) for x in range(8) for big_t in (0.5, 6.0, 20.0) for tx in (0.0, 0.4, 5.0)
    ]
    grid = [(x, tx if x else 0.0, big_t) for x, tx, big_t in grid if tx <= big_t]
    x, tx, big_t = (np.array(col, dtype=float) for col in zip(*grid, strict=True))
    ours = cm.bgnbd_log_likelihood(params, frequency=x, recency=tx, age=big_t)
    direct = [math.log(direct_bgnbd_likelihood(params, *row)) for row in grid]
    np.testing.assert_allclose(ours, direct, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("x", "m"), [(1, 3.0), (2, 40.0), (7, 12.5), (30, 9.0)])
def test_gamma_gamma_likelihood_matches_integral_over_spend_rates(x: int, m: float) -> None:
    p = CDNOW_SPEND
    # The mean of x purchases ~ Gamma(p, nu) is Gamma(px, rate x nu); nu ~ Gamma(q, rate gamma).
    density, _ = integrate.quad(
        lambda nu: (
            stats.gamma.pdf(m, p.p * x, scale=1 / (x * nu))
            * stats.gamma.pdf(nu, p.q, scale=1 / p.gamma)
        ),
        0,
        np.inf,
        epsrel=1e-11,
    )
    ll = cm.gamma_gamma_log_likelihood(p, frequency=[x, 0], mean_spend=[m, np.nan])
    assert ll[1] == 0.0
    assert math.exp(ll[0]) == pytest.approx(density, rel=1e-7)


# --- expectations ---------------------------------------------------------------------------

POSTERIOR_CASES = [
    (CDNOW, 13.0, 0, 0.0, 38.9),
    (CDNOW, 39.0, 2, 30.4, 38.9),
    (CDNOW, 52.0, 7, 10.0, 77.0),
    (BgNbdParams(1.5, 2.0, 3.5, 6.0), 4.0, 3, 2.0, 8.0),
    (BgNbdParams(0.2, 30.0, 0.3, 0.4), 100.0, 0, 0.0, 5.0),  # a + b < 1
    (BgNbdParams(0.6, 3.0, 1.0, 2.0), 26.0, 4, 12.0, 20.0),  # a == 1: removable singularity
    (BgNbdParams(0.6, 3.0, 1.00004, 2.0), 26.0, 4, 12.0, 20.0),
    (BgNbdParams(5.0, 0.1, 40.0, 0.05), 0.5, 10, 1.0, 3.0),
    (BgNbdParams(1.0, 1.0, 0.5, 0.5), 10.0, 0, 0.0, 10.0),  # a + b == 1: pole times zero
]


@pytest.mark.parametrize(("params", "t", "x", "tx", "big_t"), POSTERIOR_CASES)
def test_conditional_expectation_matches_posterior_integral(
    params: BgNbdParams, t: float, x: int, tx: float, big_t: float
) -> None:
    ours = cm.bgnbd_conditional_expected_purchases(params, t=t, frequency=x, recency=tx, age=big_t)
    assert float(ours) == pytest.approx(
        posterior_expected_purchases(params, t, x, tx, big_t), rel=1e-7
    )


@pytest.mark.parametrize(
    ("params", "t", "x", "tx", "big_t"),
    [
        (CDNOW, 52.0, 300, 499.0, 500.0),
        (CDNOW, 104.0, 300, 250.0, 500.0),
        (BgNbdParams(3.0, 1.0, 0.4, 20.0), 30.0, 300, 480.0, 500.0),
        (BgNbdParams(0.5, 50.0, 2.5, 1.0), 260.0, 1000, 900.0, 1000.0),
        # c - a - b an exact integer with z > 0.9, where scipy's 2F1 gives inf or a wrong sign
        (BgNbdParams(1.0, 1.0, 10.0, 10.0), 19.0, 94, 0.0, 1.0),
        (BgNbdParams(1.0, 10.0, 20.0, 50.0), 104.0, 26, 0.0, 1.0),
    ],
)
def test_conditional_expectation_matches_series_for_large_counts(
    params: BgNbdParams, t: float, x: int, tx: float, big_t: float
) -> None:
    ours = cm.bgnbd_conditional_expected_purchases(params, t=t, frequency=x, recency=tx, age=big_t)
    reference = series_expected_purchases(params, t, x, tx, big_t)
    assert float(ours) == pytest.approx(reference, rel=1e-7)


def test_large_counts_stay_finite() -> None:
    x, tx, big_t = 300.0, np.array([0.5, 100.0, 499.0, 500.0]), 500.0
    ll = cm.bgnbd_log_likelihood(CDNOW, frequency=x, recency=tx, age=big_t)
    alive = cm.bgnbd_probability_alive(CDNOW, frequency=x, recency=tx, age=big_t)
    expected = cm.bgnbd_conditional_expected_purchases(
        CDNOW, t=520.0, frequency=x, recency=tx, age=big_t
    )
    assert np.isfinite(ll).all() and np.isfinite(expected).all()
    assert ((alive >= 0) & (alive <= 1)).all() and alive[-1] > 0.9
    assert alive[0] == 0.0 or alive[0] < 1e-100  # 500 silent weeks after 300 purchases: lapsed


def test_new_customer_expectation_is_the_conditional_one_at_zero() -> None:
    t = np.array([0.0, 1.0, 13.0, 52.0, 520.0])
    new = cm.bgnbd_expected_purchases(CDNOW, t=t)
    at_zero = cm.bgnbd_conditional_expected_purchases(CDNOW, t=t, frequency=0, recency=0, age=0)
    np.testing.assert_array_equal(new, at_zero)
    assert new[0] == 0.0 and np.all(np.diff(new) > 0)


@pytest.mark.parametrize("params", [CDNOW, BgNbdParams(0.8, 2.0, 2.5, 5.0)])
def test_new_customer_expectation_matches_simulation(params: BgNbdParams) -> None:
    rng = np.random.default_rng(13)
    n, t = 200_000, 52.0
    s = simulate_bgnbd(n, params.r, params.alpha, params.a, params.b, t, rng)
    predicted = float(cm.bgnbd_expected_purchases(params, t=t))
    standard_error = s.frequency.std() / math.sqrt(n)
    assert abs(s.frequency.mean() - predicted) < 4 * standard_error


def test_conditional_expectations_average_to_the_population_increment() -> None:
    # Tower property: the mean over customers of E[Y(t) | history at T] is E[X(T+t)] - E[X(T)].
    rng = np.random.default_rng(17)
    n, big_t, t = 200_000, 30.0, 20.0
    s = simulate_bgnbd(n, CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, big_t, rng)
    conditional = cm.bgnbd_conditional_expected_purchases(
        CDNOW, t=t, frequency=s.frequency, recency=s.recency, age=s.age
    )
    increment = np.diff(cm.bgnbd_expected_purchases(CDNOW, t=[big_t, big_t + t]))[0]
    assert abs(conditional.mean() - increment) < 4 * conditional.std() / math.sqrt(n)


def test_probability_alive_is_calibrated_on_simulated_customers() -> None:
    rng = np.random.default_rng(19)
    s = simulate_bgnbd(
        200_000, CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, rng.uniform(10, 80, 200_000), rng
    )
    p_alive = cm.bgnbd_probability_alive(CDNOW, frequency=s.frequency, recency=s.recency, age=s.age)
    np.testing.assert_array_equal(p_alive[s.frequency == 0], 1.0)
    repeat = s.frequency > 0
    edges = np.quantile(p_alive[repeat], np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p_alive[repeat], side="right") - 1, 0, 9)
    for b in range(10):
        predicted = p_alive[repeat][bins == b]
        observed = s.alive[repeat][bins == b]
        # Binomial noise of the observed share of a bin around the mean of its probabilities.
        tolerance = 4 * math.sqrt(predicted.mean() * (1 - predicted.mean()) / predicted.size)
        assert abs(observed.mean() - predicted.mean()) < tolerance + 1e-3


positive = st.floats(-2, 2).map(lambda v: 10.0**v)


@settings(max_examples=150, deadline=None)
@given(
    r=positive,
    alpha=st.floats(-2, 3).map(lambda v: 10.0**v),
    a=positive,
    b=positive,
    x=st.integers(0, 500),
    big_t=st.floats(0.1, 1000),
    share=st.floats(0, 1),
    t1=st.floats(0, 1000),
    t2=st.floats(0, 1000),
)
def test_expectations_are_finite_bounded_and_grow_with_horizon(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: int,
    big_t: float,
    share: float,
    t1: float,
    t2: float,
) -> None:
    p = BgNbdParams(r, alpha, a, b)
    tx = share * big_t if x else 0.0
    t_lo, t_hi = sorted((t1, t2))
    summary = {"frequency": x, "recency": tx, "age": big_t}
    ll = cm.bgnbd_log_likelihood(p, **summary)
    alive = float(cm.bgnbd_probability_alive(p, **summary))
    try:
        lo, hi = cm.bgnbd_conditional_expected_purchases(p, t=[t_lo, t_hi], **summary)
    except ValueError:
        # The documented refusal (compute_traits then skips CLV and says why), only where scipy's
        # 2F1 leaves double range: customers who drop out at once (large a) and a horizon
        # hundreds of times the customer's age (z near 1) — the corner a degenerate fit reaches.
        assert a >= 10 and t_hi / (alpha + big_t + t_hi) > 0.99
        return
    assert np.isfinite(ll).all()  # a density in t_x: it may exceed 1, its log 0
    assert 0 <= alive <= 1 and (x > 0 or alive == 1)
    # Slack for rounding: near t = 0 the bracket of eq. 10 cancels to a few 1e-16 absolute
    # times (a+b+x-1)/(a-1), far below a thousandth of a purchase.
    slack = 1e-9
    assert 0 <= lo <= hi + slack
    # Never more than an alive customer who never lapses: P(alive) E[lambda | alive] t.
    assert hi <= alive * t_hi * (r + x) / (alpha + big_t) * (1 + 1e-7) + slack


@settings(max_examples=100, deadline=None)
@given(x=st.integers(1, 400), big_t=st.floats(1, 800), s1=st.floats(0, 1), s2=st.floats(0, 1))
def test_probability_alive_rises_with_recency(x: int, big_t: float, s1: float, s2: float) -> None:
    recency = np.array(sorted((s1, s2))) * big_t
    alive = cm.bgnbd_probability_alive(CDNOW, frequency=x, recency=recency, age=big_t)
    assert 0 <= alive[0] <= alive[1] <= 1


def test_predictions_accept_no_customers() -> None:
    empty = np.zeros(0)
    summary = {"frequency": empty, "recency": empty, "age": empty}
    assert cm.bgnbd_log_likelihood(CDNOW, **summary).shape == (0,)
    assert cm.bgnbd_probability_alive(CDNOW, **summary).shape == (0,)
    assert cm.bgnbd_conditional_expected_purchases(CDNOW, t=52.0, **summary).shape == (0,)
    clv = cm.customer_lifetime_value(
        CDNOW,
        CDNOW_SPEND,
        frequency=empty,
        recency=empty,
        age=empty,
        mean_spend=empty,
        horizon_weeks=52,
        annual_discount_rate=0.1,
    )
    assert clv.shape == (0,)


def test_predictions_reject_invalid_summaries() -> None:
    with pytest.raises(ValueError, match="recency"):
        cm.bgnbd_probability_alive(CDNOW, frequency=1, recency=5, age=4)
    with pytest.raises(ValueError, match="t must be"):
        cm.bgnbd_conditional_expected_purchases(CDNOW, t=-1, frequency=1, recency=1, age=4)


# --- spend and lifetime value ---------------------------------------------------------------


def test_expected_spend_shrinks_the_observed_mean_towards_the_population() -> None:
    p = CDNOW_SPEND
    population = p.p * p.gamma / (p.q - 1)
    x = np.array([0, 1, 5, 50, 5000])
    spend = cm.gamma_gamma_expected_spend(
        p, frequency=x, mean_spend=[np.nan, 80.0, 80.0, 80.0, 80.0]
    )
    assert spend[0] == pytest.approx(population)
    assert np.all(np.diff(spend[1:]) > 0) and np.all((spend[1:] > population) & (spend[1:] < 80))
    assert spend[-1] == pytest.approx(80.0, rel=1e-3)
    with pytest.raises(ModelFitError, match="q"):
        cm.gamma_gamma_expected_spend(GammaGammaParams(1.0, 0.9, 2.0), frequency=1, mean_spend=3.0)


def test_simulated_mean_spend_has_the_model_mean() -> None:
    rng = np.random.default_rng(23)
    x = np.array([0.0] * 10 + [1.0, 2.0, 6.0] * 50_000)
    m = simulate_gamma_gamma(x, CDNOW_SPEND.p, CDNOW_SPEND.q, CDNOW_SPEND.gamma, rng)
    assert np.isnan(m[:10]).all() and (m[10:] > 0).all()
    # E[mean spend] = p gamma / (q - 1) whatever x; its standard error from the sample.
    population = CDNOW_SPEND.p * CDNOW_SPEND.gamma / (CDNOW_SPEND.q - 1)
    assert abs(m[10:].mean() - population) < 4 * m[10:].std() / math.sqrt(m[10:].size)


def test_simulated_summaries_are_consistent() -> None:
    rng = np.random.default_rng(29)
    s = simulate_bgnbd(5_000, 1.0, 2.0, 0.5, 1.0, rng.uniform(0, 60, 5_000), rng, time_step=1 / 7)
    assert np.all(s.recency <= s.age) and np.all(s.recency[s.frequency == 0] == 0)
    np.testing.assert_allclose(s.age * 7, np.round(s.age * 7), atol=1e-9)
    assert not s.alive[(s.frequency > 0) & (s.lapse_probability == 1)].any()


FREQUENCY = np.array([0.0, 1.0, 4.0, 12.0])
RECENCY = np.array([0.0, 3.0, 20.0, 51.0])
AGE = np.array([10.0, 30.0, 40.0, 52.0])
MEAN_SPEND = np.array([np.nan, 25.0, 40.0, 31.0])


def lifetime_value(horizon: float, rate: float, period: float = cm.WEEKS_PER_MONTH) -> np.ndarray:
    return cm.customer_lifetime_value(
        CDNOW,
        CDNOW_SPEND,
        frequency=FREQUENCY,
        recency=RECENCY,
        age=AGE,
        mean_spend=MEAN_SPEND,
        horizon_weeks=horizon,
        annual_discount_rate=rate,
        period_weeks=period,
    )


def expected_purchases(t: float) -> np.ndarray:
    return cm.bgnbd_conditional_expected_purchases(
        CDNOW, t=t, frequency=FREQUENCY, recency=RECENCY, age=AGE
    )


def test_undiscounted_lifetime_value_is_spend_times_expected_purchases() -> None:
    spend = cm.gamma_gamma_expected_spend(CDNOW_SPEND, frequency=FREQUENCY, mean_spend=MEAN_SPEND)
    # Per-period increments telescope: without discounting, the period length cannot matter.
    for period in (1.0, cm.WEEKS_PER_MONTH, 5.0, 52.0, 100.0):
        clv = lifetime_value(52.0, 0.0, period)
        np.testing.assert_allclose(clv, spend * expected_purchases(52.0), rtol=1e-10)


def test_lifetime_value_discounts_each_period_from_its_end() -> None:
    rate, ends = 0.12, np.array([4.0, 8.0, 10.0])  # 4-week periods over 10 weeks
    cumulative = np.stack([expected_purchases(e) for e in ends], axis=1)
    increments = np.diff(cumulative, axis=1, prepend=0.0)
    factors = (1 + rate) ** (-ends / cm.WEEKS_PER_YEAR)
    spend = cm.gamma_gamma_expected_spend(CDNOW_SPEND, frequency=FREQUENCY, mean_spend=MEAN_SPEND)
    clv = lifetime_value(10.0, rate, 4.0)
    np.testing.assert_allclose(clv, spend * (increments * factors).sum(axis=1), rtol=1e-12)


def test_lifetime_value_falls_with_discount_and_rises_with_horizon() -> None:
    np.testing.assert_array_equal(lifetime_value(0.0, 0.1), 0.0)
    assert np.all(lifetime_value(52.0, 0.2) < lifetime_value(52.0, 0.05))
    assert np.all(lifetime_value(104.0, 0.1) > lifetime_value(52.0, 0.1))
    assert np.all(np.isfinite(lifetime_value(520.0, 0.1)))
    with pytest.raises(ValueError, match="horizon"):
        lifetime_value(-1.0, 0.1)
    with pytest.raises(ValueError, match="discount"):
        lifetime_value(52.0, -1.0)


@pytest.mark.parametrize("x", [0, 1, 100])
def test_expectations_out_of_double_range_are_refused_not_returned(x: int) -> None:
    """Where 2F1 leaves double range (large a, a horizon far past the customer's age), the
    expectation is refused with a ValueError — never a NaN or an infinity handed on to be
    stored; compute_traits turns it into ``clv_skipped``."""
    p = BgNbdParams(1.0, 0.1, 100.0, 1.0)
    summary = {"frequency": x, "recency": 0.05 if x else 0.0, "age": 0.1}
    with pytest.raises(ValueError, match="out of numerical range"):
        cm.bgnbd_conditional_expected_purchases(p, t=[0.0, 486.0], **summary)

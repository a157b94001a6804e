"""Simulated customer summaries drawn from the BG/NBD and Gamma-Gamma models themselves.

Tests use them to check that the fits recover known parameters and that the closed-form
expectations match what the models generate; the benchmark uses them as realistic load.
Both draw exactly from the model (no approximation), vectorised over customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class BgNbdSample:
    """Simulated summaries (frequency x, recency t_x, age T, in weeks) and the latent truth
    behind them: each customer's purchase rate, lapse probability, and whether still alive
    at T."""

    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    rate: FloatArray
    lapse_probability: FloatArray
    alive: BoolArray


def simulate_bgnbd(
    n: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    age: float | npt.ArrayLike,
    rng: np.random.Generator,
    *,
    time_step: float | None = None,
) -> BgNbdSample:
    """Draw n customers observed for `age` weeks after their first purchase (a number, or one
    per customer).

    lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b); repeat purchases arrive as a Poisson
    process of rate lambda and the customer lapses right after each one with probability p,
    so the number of repeat purchases before lapsing is Geometric(p) on {1, 2, ...}. With K
    Poisson arrivals in (0, T] and N that geometric count, x = min(K, N), and the x-th arrival
    time of K uniform arrivals on (0, T] is T * Beta(x, K - x + 1).

    time_step (e.g. 1/7 for days) floors recency and age to whole steps, as summaries computed
    from dated orders are; purchases are not merged, so use a step small against 1/lambda.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    big_t = np.broadcast_to(np.asarray(age, dtype=np.float64), (n,)).copy()
    if not (np.isfinite(big_t).all() and (big_t >= 0).all()):
        raise ValueError("age must be finite and >= 0")
    rate = rng.gamma(shape=r, scale=1.0 / alpha, size=n)
    lapse = rng.beta(a, b, size=n)
    arrivals = rng.poisson(rate * big_t)
    before_lapse = rng.geometric(lapse)
    x = np.minimum(arrivals, before_lapse)
    recency = np.zeros(n)
    repeat = x > 0
    recency[repeat] = big_t[repeat] * rng.beta(x[repeat], arrivals[repeat] - x[repeat] + 1)
    if time_step is not None:
        if not time_step > 0:
            raise ValueError("time_step must be > 0")
        big_t = np.floor(big_t / time_step) * time_step
        recency = np.minimum(np.floor(recency / time_step) * time_step, big_t)
    return BgNbdSample(
        frequency=x.astype(np.float64),
        recency=recency,
        age=big_t,
        rate=rate,
        lapse_probability=lapse,
        alive=before_lapse > arrivals,
    )


def simulate_gamma_gamma(
    frequency: npt.ArrayLike, p: float, q: float, gamma: float, rng: np.random.Generator
) -> FloatArray:
    """Draw each customer's mean spend over its `frequency` repeat purchases.

    nu ~ Gamma(q, rate gamma) per customer, each purchase ~ Gamma(p, rate nu); the mean of x
    such purchases is exactly Gamma(p x, rate x nu). NaN where frequency == 0 (no mean)."""
    x = np.asarray(frequency, dtype=np.float64)
    if not np.isfinite(x).all() or (x < 0).any() or (x != np.round(x)).any():
        raise ValueError("frequency must be a finite whole number >= 0")
    nu = rng.gamma(shape=q, scale=1.0 / gamma, size=x.shape)
    repeat = x > 0
    mean = np.full(x.shape, np.nan)
    mean[repeat] = rng.gamma(shape=p * x[repeat], scale=1.0 / (x[repeat] * nu[repeat]))
    return mean

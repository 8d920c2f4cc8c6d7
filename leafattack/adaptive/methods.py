"""Search methods: a registry of per-sign ask/tell optimisers.

Each method is a factory ``f(ctx: SignContext) -> Optimiser``. An optimiser searches one
sign; the engine (:mod:`leafattack.engine.search`) asks every unfinished sign's optimiser
for candidates each round, renders and classifies the candidates of *all* signs in one
batch, and tells each optimiser its losses. Everything an optimiser draws comes from its own
generator seeded by ``ctx.seed`` (the run's seed, the sign and the method), so replaying
the same losses rebuilds the same state: that is how a search resumes.

Protocol:

* ``ask(n) -> Scenes``: at most ``n`` new candidates (fewer, or none, when the method has
  fewer left; none ends the sign's search).
* ``tell(losses)``: float64 (m,) losses of the first ``m`` candidates of the last ask, in
  order (``m`` is smaller when the sign stopped at a success).
* ``population``: how many candidates it would like per round.

Example:
    >>> opt = METHODS["random"](ctx)
    >>> scenes = opt.ask(opt.population)
    >>> opt.tell(losses_of(scenes))
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from leafattack.adaptive.space import Scenes, SearchSpace


@dataclass(frozen=True, slots=True)
class SignContext:
    """What a method knows about one sign before searching it.

    Attributes:
        space: the search space of this sign.
        budget: queries allowed (>= 1).
        seed: the method's seed for this sign (from :func:`method_seed`).
        grid_xy: float64 (P, 2) the grid lattice's leaf centres on this sign (x, y).
        grid_sizes, grid_angles: the grid's sizes and angles (for the ``grid`` method).
    """

    space: SearchSpace
    budget: int
    seed: int
    grid_xy: np.ndarray
    grid_sizes: tuple[float, ...]
    grid_angles: tuple[float, ...]


class Optimiser(Protocol):
    """One sign's search state (see the module docstring)."""

    population: int

    def ask(self, n: int) -> Scenes: ...

    def tell(self, losses: np.ndarray) -> None: ...


def method_seed(seed: int, sign_id: int, method: str) -> int:
    """A 32-bit seed for one method on one sign, independent of the other signs.

    Example:
        >>> method_seed(0, 3, "random") == method_seed(0, 3, "random")
        True
    """
    ss = np.random.SeedSequence([seed, sign_id, zlib.crc32(method.encode())])
    return int(ss.generate_state(1)[0])


class RandomSearch:
    """Independent uniform scenes over the search space (the baseline)."""

    population = 64

    def __init__(self, ctx: SignContext) -> None:
        self.space = ctx.space
        self.rng = np.random.default_rng(ctx.seed)

    def ask(self, n: int) -> Scenes:
        return self.space.decode(self.rng.random((n, self.space.dims)))

    def tell(self, losses: np.ndarray) -> None:
        pass  # memoryless


class Evolution:
    """Differential evolution (nevergrad's ``TwoPointsDE``) on the unit cube of the space.

    The categorical leaf variant is one more box coordinate (``floor(u * V)``), so nevergrad
    sees one plain bounded array and its parametrisation stays cheap.
    """

    population = 16

    def __init__(self, ctx: SignContext) -> None:
        import nevergrad as ng

        self.space = ctx.space
        param = ng.p.Array(shape=(ctx.space.dims,), lower=0.0, upper=1.0)
        param.random_state = np.random.RandomState(ctx.seed)
        self.opt = ng.optimizers.TwoPointsDE(
            parametrization=param, budget=ctx.budget, num_workers=self.population
        )
        self.pending: list[Any] = []

    def ask(self, n: int) -> Scenes:
        self.pending = [self.opt.ask() for _ in range(n)]
        z = np.stack([c.value for c in self.pending]) if n else np.zeros((0, self.space.dims))
        return self.space.decode(z)

    def tell(self, losses: np.ndarray) -> None:
        for cand, loss in zip(self.pending, losses, strict=False):
            self.opt.tell(cand, float(loss))
        self.pending = []


class CmaEs:
    """CMA-ES (the ``cmaes`` package) on the unit cube of the space, from the cube's centre
    with step size 0.3; the leaf variant is one more box coordinate, as for ``evolution``.

    A generation is told only when complete (a sign that stops mid-generation is done)."""

    population = 16

    def __init__(self, ctx: SignContext) -> None:
        from cmaes import CMA

        d = ctx.space.dims
        self.space = ctx.space
        self.opt = CMA(
            mean=np.full(d, 0.5), sigma=0.3, bounds=np.tile([0.0, 1.0], (d, 1)),
            seed=ctx.seed % 2**31, population_size=self.population,
        )
        self.pending = np.zeros((0, d))

    def ask(self, n: int) -> Scenes:
        n = min(n, self.population)
        self.pending = np.stack([self.opt.ask() for _ in range(n)]) if n else self.pending[:0]
        return self.space.decode(self.pending)

    def tell(self, losses: np.ndarray) -> None:
        if len(losses) == self.population:
            self.opt.tell(list(zip(self.pending, np.asarray(losses, float).tolist(), strict=True)))


class Greedy:
    """Add leaves one at a time: slot k is the best of M uniform candidates given the k
    leaves already placed, with ``M = ceil(budget / K)`` (the last slot gets what is left)."""

    population = 64

    def __init__(self, ctx: SignContext) -> None:
        self.space = ctx.space
        self.rng = np.random.default_rng(ctx.seed)
        self.per_slot = math.ceil(ctx.budget / ctx.space.slots)
        self.fixed = np.zeros(ctx.space.dims)
        self.slot = 0
        self.done_in_slot = 0
        self.best = (math.inf, np.zeros(5))
        self.pending = np.zeros((0, 5))

    def ask(self, n: int) -> Scenes:
        k = self.slot
        if k >= self.space.slots:
            return self.space.decode(np.zeros((0, self.space.dims)))
        m = min(n, self.per_slot - self.done_in_slot)
        new = self.rng.random((m, 5))
        z = np.repeat(self.fixed[None], m, axis=0)
        z[:, 5 * k : 5 * k + 5] = new
        present = np.zeros((m, self.space.slots), bool)
        present[:, : k + 1] = True
        self.pending = new
        return self.space.decode(z, present)

    def tell(self, losses: np.ndarray) -> None:
        losses = np.asarray(losses, dtype=np.float64)
        if len(losses):
            i = int(np.argmin(losses))
            if losses[i] < self.best[0]:
                self.best = (float(losses[i]), self.pending[i].copy())
        self.done_in_slot += len(losses)
        if self.done_in_slot >= self.per_slot:
            k = self.slot
            self.fixed[5 * k : 5 * k + 5] = self.best[1]
            self.slot += 1
            self.done_in_slot = 0
            self.best = (math.inf, np.zeros(5))


class GridOrder:
    """The grid's lattice (leaf x colour, size, angle, position; position fastest), one leaf
    in slot 0, truncated to the budget: the grid at equal queries."""

    population = 64

    def __init__(self, ctx: SignContext) -> None:
        self.ctx = ctx
        self.next = 0
        p, a, s = len(ctx.grid_xy), len(ctx.grid_angles), len(ctx.grid_sizes)
        self.total = ctx.space.n_variants * s * a * p

    def ask(self, n: int) -> Scenes:
        ctx = self.ctx
        k = np.arange(self.next, min(self.total, self.next + n), dtype=np.int64)
        self.next += len(k)
        p, a, s = len(ctx.grid_xy), len(ctx.grid_angles), len(ctx.grid_sizes)
        pos, rest = k % p, k // p
        angle, rest = rest % a, rest // a
        size, variant = rest % s, rest // s
        slots = ctx.space.slots
        m = len(k)

        def first(values: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((m, slots), fill, dtype=values.dtype)
            out[:, 0] = values
            return out

        present = np.zeros((m, slots), bool)
        present[:, 0] = True
        return Scenes(
            variant=first(variant, 0),
            size=first(np.asarray(ctx.grid_sizes, dtype=np.float64)[size], 1.0),
            angle=first(np.asarray(ctx.grid_angles, dtype=np.float64)[angle], 0.0),
            x=first(ctx.grid_xy[pos, 0], 0.5),
            y=first(ctx.grid_xy[pos, 1], 0.5),
            present=present,
        )

    def tell(self, losses: np.ndarray) -> None:
        pass


METHODS: dict[str, Callable[[SignContext], Optimiser]] = {
    "random": RandomSearch,
    "evolution": Evolution,
    "cmaes": CmaEs,
    "greedy": Greedy,
    "grid": GridOrder,
}
"""Registry: method name -> factory of a per-sign optimiser."""

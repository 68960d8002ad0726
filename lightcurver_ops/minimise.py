"""Minimisation driven inside JAX: L-BFGS with early stopping on convergence, shared by the PSF and
ROI fits (a fixed iteration count either wastes time or stops short), and STARRED's adabelief for
losses with kinks (L1 and positivity penalties of a free pixel background), where L-BFGS stalls."""

import jax
import jax.numpy as jnp
import optax

PATIENCE = 10
"""Consecutive iterations with a relative loss change below the tolerance before stopping."""


def minimise_lbfgs(loss, params, max_iter: int, tolerance):
    """optax L-BFGS on ``loss`` from ``params`` inside ``lax.while_loop`` (traceable, vmappable).

    Stops after ``max_iter`` iterations or once ``PATIENCE`` consecutive iterations changed the loss
    by less than ``tolerance`` times its value.

    Returns
    -------
    params : pytree
        The parameters at the stop.
    history : jax.Array, shape (max_iter,)
        Loss at each iteration, NaN after the stop.
    n : jax.Array
        Number of iterations run.
    """
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def cond(carry):
        _, _, i, quiet, _, _ = carry
        return (i < max_iter) & (quiet < PATIENCE)

    def body(carry):
        p, state, i, quiet, previous, history = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        p = optax.apply_updates(p, updates)
        small = jnp.abs(previous - value) <= tolerance * jnp.abs(value)
        quiet = jnp.where(small, quiet + 1, 0)
        return p, state, i + 1, quiet, value, history.at[i].set(value)

    history = jnp.full(max_iter, jnp.nan, dtype=jnp.float32)
    start = (params, solver.init(params), 0, 0, jnp.asarray(jnp.inf, jnp.float32), history)
    params, _, n, _, _, history = jax.lax.while_loop(cond, body, start)
    return params, history, n


def minimise_adabelief(loss, params, iterations: int, learning_rate: float):
    """STARRED's optax adabelief (``Optimizer(method="adabelief")``: ``scale_by_belief``, learning rate
    decaying exponentially to 0.99 of ``learning_rate`` over the run) for ``iterations`` steps, inside
    ``lax.fori_loop`` (traceable).

    Returns
    -------
    params : pytree
        The parameters after the last step.
    history : jax.Array, shape (iterations,)
        Loss before each step.
    """
    schedule = optax.exponential_decay(learning_rate, transition_steps=max(iterations, 1), decay_rate=0.99)
    solver = optax.chain(optax.scale_by_belief(), optax.scale_by_schedule(schedule), optax.scale(-1.0))
    value_and_grad = jax.value_and_grad(loss)

    def body(i, carry):
        p, state, history = carry
        value, grad = value_and_grad(p)
        updates, state = solver.update(grad, state, p)
        return optax.apply_updates(p, updates), state, history.at[i].set(value)

    history = jnp.full(iterations, jnp.nan, dtype=jnp.float32)
    params, _, history = jax.lax.fori_loop(0, iterations, body, (params, solver.init(params), history))
    return params, history


def levenberg_marquardt(model, theta, data, weight, iterations: int, free=None):
    """Levenberg-Marquardt fit of ``model(theta)`` to ``data`` with weights ``1/sigma^2``, in JAX.

    A fixed number of iterations (traceable, vmappable); a step is taken only if it lowers the chi2.

    Parameters
    ----------
    model : callable
        ``theta -> array`` shaped like ``data``.
    theta : jax.Array, shape (P,)
        Starting parameters.
    data, weight : jax.Array
        Data and weights (0 on bad pixels).
    iterations : int
    free : jax.Array, shape (P,), optional
        1 for a free parameter, 0 for a fixed one (default: all free).

    Returns
    -------
    theta : jax.Array, shape (P,)
    covariance : jax.Array, shape (P, P)
        Inverse Fisher matrix ``(J^T W J)^-1`` at the optimum (1 on the diagonal of fixed parameters).
    chi2 : jax.Array
        ``sum(weight (data - model)^2)``.
    last_step : jax.Array, shape (P,)
        The last accepted step (its size tells convergence).
    """
    free = jnp.ones_like(theta) if free is None else free
    w = weight.reshape(-1)

    def normal(t):
        residual = (data - model(t)).reshape(-1)
        jac = jax.jacfwd(lambda u: model(u).reshape(-1))(t) * free
        matrix = jac.T @ (w[:, None] * jac) + jnp.diag(1.0 - free)
        return matrix, jac.T @ (w * residual), jnp.sum(w * residual**2)

    def step(_, carry):
        t, damping, last = carry
        matrix, gradient, chi2 = normal(t)
        trial = t + jnp.linalg.solve(matrix + damping * jnp.diag(jnp.diag(matrix)), gradient)
        better = jnp.sum(weight * (data - model(trial)) ** 2) < chi2
        return (
            jnp.where(better, trial, t),
            jnp.where(better, damping * 0.3, damping * 10.0),
            jnp.where(better, trial - t, last),
        )

    start = (theta, jnp.asarray(1e-3, theta.dtype), jnp.full_like(theta, jnp.inf))
    theta, _, last = jax.lax.fori_loop(0, iterations, step, start)
    matrix, _, chi2 = normal(theta)
    return theta, jnp.linalg.inv(matrix), chi2, last

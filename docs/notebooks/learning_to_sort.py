# %% [markdown]
# # Learning to sort with a permutation in the middle
#
# The built-in `Permutations` structure is the Birkhoff polytope: the convex hull of the
# $n \times n$ permutation matrices, whose MAP is the assignment problem. This notebook
# trains a small model whose middle layer picks a permutation, with straight-through (STE-I),
# SPIGOT and SparseMAP, from a downstream loss only, and reports what each one reaches.
#
# **Task.** Each example holds $n = 5$ items with features $x_i \in \mathbb{R}^4$ and values
# $v_i \in \mathbb{R}$. A hidden key $k_i = \langle w^\star, x_i \rangle$ orders the items; the
# target is the values listed in key order, $y_j = v_{\pi^\star(j)}$. The model scores items
# with a linear layer $r_i = \langle w, x_i \rangle + b$, turns them into assignment scores
# $s_{ij} = r_i c_j$ with increasing slot weights $c_j$ (by the rearrangement inequality the
# best assignment sends the items to the slots in increasing order of $r$, so MAP sorts), picks
# $z = \mathrm{map}(s)$ and predicts $\hat y = z^\top v$. It is trained on
# $\|\hat y - y\|^2$ alone, never seeing a permutation. At test time every method decodes with
# the MAP permutation.

# %%
# %matplotlib inline
import time

import numpy as np
import torch
from matplotlib.figure import Figure

from spigot import SPIGOT, Permutations, SparseMAP, StraightThrough

torch.set_num_threads(1)
rng = np.random.default_rng(0)
N, FEATURES, TRAIN, TEST, STEPS = 5, 4, 1000, 200, 200
permutations = Permutations()
w_star = torch.from_numpy(rng.standard_normal(FEATURES))
X = torch.from_numpy(rng.standard_normal((TRAIN + TEST, N, FEATURES)))
V = torch.from_numpy(rng.standard_normal((TRAIN + TEST, N)))
slot_weights = torch.linspace(-0.5, 0.5, N, dtype=torch.float64)
gold = permutations.map((X @ w_star)[:, :, None] * slot_weights)
Y = torch.einsum("bij,bi->bj", gold, V)


def assignment_scores(scorer: torch.nn.Module, x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """``s_ij = r_i c_j``; with ``normalize``, the keys ``r`` of an example are rescaled to norm 4."""
    r = scorer(x).squeeze(-1)
    if normalize:
        r = 4.0 * r / r.norm(dim=1, keepdim=True)
    return r[:, :, None] * slot_weights


def train(layer: torch.nn.Module, normalize: bool = False, batch: int = 32, lr: float = 0.05, seed: int = 0):
    """Adam on the squared error; returns the loss curve, the weight norm curve and test accuracies."""
    torch.manual_seed(seed)
    scorer = torch.nn.Linear(FEATURES, 1, bias=not normalize, dtype=torch.float64)
    optimizer = torch.optim.Adam(scorer.parameters(), lr=lr)
    losses, norms = [], []
    for _ in range(STEPS):
        index = torch.randint(0, TRAIN, (batch,))
        z = layer(assignment_scores(scorer, X[index], normalize))
        loss = ((torch.einsum("bij,bi->bj", z, V[index]) - Y[index]) ** 2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        norms.append(scorer.weight.detach().norm().item())
    with torch.no_grad():
        z = permutations.map(assignment_scores(scorer, X[TRAIN:], normalize))
        exact = (z == gold[TRAIN:]).flatten(1).all(1).double().mean().item()
        items = ((z * gold[TRAIN:]).sum((1, 2)) / N).mean().item()
    return np.array(losses), np.array(norms), exact, items


methods = {
    "STE-I": (StraightThrough(permutations), False),
    "SparseMAP": (SparseMAP(permutations, solver="active-set"), False),
    "SPIGOT": (SPIGOT(permutations, solver="active-set"), False),
    "STE-I, scale fixed": (StraightThrough(permutations), True),
    "SPIGOT, scale fixed": (SPIGOT(permutations, solver="active-set"), True),
}
results = {}
for name, (layer, normalize) in methods.items():
    start = time.perf_counter()
    results[name] = train(layer, normalize)
    _, norms, exact, items = results[name]
    print(
        f"{name:26s} test: whole permutation right {exact:6.1%}, items in the right slot {items:6.1%}, "
        f"final |w| {norms[-1]:.3f}  ({time.perf_counter() - start:.1f} s)"
    )

# %% [markdown]
# ## What each method reaches, and why SPIGOT needs the scale fixed
#
# The table above is this run's measurement (a random permutation puts 20% of the items in the
# right slot). With the plain scorer, STE-I and SparseMAP learn the order and SPIGOT does not;
# the right panel shows why: SPIGOT drives the scorer's weight norm towards 0.
#
# SPIGOT's surrogate gradient with respect to the scores is $d = z - \Pi_P(z - \eta g)$, and
# since $z$ is the MAP, $\langle s, d \rangle = \langle s, z \rangle - \langle s,
# \Pi_P(z - \eta g)\rangle \ge 0$ whatever the loss: every SPIGOT step lowers the score of
# the chosen structure against the pulled-back target, so it always carries a component that
# shrinks the margin of the current argmax. When the target is a spread-out mix of
# permutations (here the loss gives only an aggregate signal about the order), that component
# dominates. MAP reads the keys $r$ only up to scale and shift (the slot weights sum to 0), so
# nothing resists it: $w$, the only part of $r$ that separates the items, shrinks until Adam's
# fixed-size steps scramble its direction. SPIGOT treats the pulled-back point as a label (see
# the concepts page); it has no term that keeps the scale of the scores.
#
# Fixing the scale removes that degree of freedom: without the (useless) bias and with the keys
# rescaled to a fixed norm per example, the scores are invariant to the scale of $w$, so their
# gradient is orthogonal to $w$ and cannot shrink it. The last two rows train that model with
# STE-I and SPIGOT, and SPIGOT then learns the order as well as STE-I does (one run, `seed=0`).

# %%
figure = Figure(figsize=(10, 4), layout="constrained")
left, right = figure.subplots(1, 2)
window = 20
for name, (losses, norms, _, _) in results.items():
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    left.plot(np.arange(window, len(losses) + 1), smooth, label=name)
    right.plot(np.arange(1, len(norms) + 1), norms, label=name)
left.set_yscale("log")
left.set_xlabel("step")
left.set_ylabel(f"training loss (moving average of {window})")
right.set_yscale("log")
right.set_xlabel("step")
right.set_ylabel("|w| of the scorer")
left.legend()
for ax in (left, right):
    ax.grid(alpha=0.3)
figure

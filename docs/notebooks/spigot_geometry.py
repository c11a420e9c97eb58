# %% [markdown]
# # SPIGOT geometry: the surrogate gradient against straight-through and the relaxed problem
#
# A layer outputs $z = \mathrm{map}(s) = \operatorname*{argmax}_{z \in Z} \langle s, z \rangle$.
# Its true gradient is zero almost everywhere, so every estimator returns a *surrogate*
# $\hat\nabla_s$ given $g = \partial L / \partial z$:
#
# - straight-through (STE-I): $\hat\nabla_s = g$;
# - SPIGOT: $\hat\nabla_s = z - \Pi_P(z - \eta g)$, with $\eta_b = \eta$ (`step="fixed"`) or
#   $\eta_b = \min(\eta, \tau / \|g_b\|)$ when a threshold $\tau$ is set (`step="reference"`) (the reference code uses $\eta = \tau = 1$);
# - the relaxed problem, whose gradient is exact: replace the argmax by SparseMAP,
#   $p(s) = \Pi_P(s)$, and differentiate $L(p(s))$: $\nabla_s = J_{\Pi_P}(s)^\top g$.
#
# With a linear downstream loss $L(z) = \langle c, z \rangle$ all three see the same
# $g = c$, so their directions can be compared directly. This notebook measures the cosine
# similarity of SPIGOT and STE-I with the SparseMAP gradient as $\eta$ and $\tau$ vary, on
# the simplex and on dependency trees.

# %%
# %matplotlib inline
import numpy as np
import torch
from matplotlib.figure import Figure

from spigot import Arborescence, Simplex, sparsemap, spigot

torch.set_num_threads(1)
_ = torch.manual_seed(0)

# %% [markdown]
# ## Geometry on the simplex
#
# On $\Delta^3$ (drawn in barycentric coordinates) take $z = e_1$ and a gradient $g$. SPIGOT
# steps from $z$ against $g$ and projects back onto the simplex; each arrow runs from $z$ to
# the projected target $\Pi_P(z - \eta g)$, and the surrogate gradient is that arrow reversed.
# A small $\eta$ keeps the target near $z$; a large one reaches across the simplex.

# %%
def barycentric(p: np.ndarray) -> np.ndarray:
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    return p @ corners


z = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
g = torch.tensor([0.4, -0.3, -0.2], dtype=torch.float64)
figure = Figure(figsize=(5, 4.3), layout="constrained")
ax = figure.subplots()
triangle = barycentric(np.vstack([np.eye(3), np.eye(3)[:1]]))
ax.plot(triangle[:, 0], triangle[:, 1], color="black", linewidth=1)
for eta, color in ((0.3, "C0"), (1.0, "C1"), (3.0, "C2")):
    target = Simplex().project(z - eta * g).x.numpy()
    start, end = barycentric(z.numpy()), barycentric(target)
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": color})
    ax.plot(*end, "o", color=color, label=f"$\\Pi_P(z - \\eta g)$, $\\eta$ = {eta}")
ax.plot(*barycentric(z.numpy()), "ks")
ax.text(*(barycentric(z.numpy()) + [-0.06, -0.06]), "$z = e_1$")
ax.set_aspect("equal")
ax.axis("off")
ax.legend(loc="upper right", fontsize=8)
figure

# %% [markdown]
# ## Cosine similarity with the relaxed problem's gradient
#
# For random scores $s$ and loss weights $c$ (standard normal, scores scaled by 0.5 so that
# SparseMAP's solution is not a vertex and its Jacobian is not zero), compute the three
# gradients and their cosine similarity, instance by instance (top row), and how far SPIGOT
# turns away from straight-through (bottom row). Instances where a gradient is exactly zero
# have no cosine and are left out of the means: SPIGOT's surrogate is zero exactly when $-g$
# lies in the normal cone of $P$ at $z$, i.e. when $z$ already minimises $\langle g, v\rangle$
# over all vertices, whatever $\eta$ (for independent random $g$ on the simplex, with
# probability $1/k$).

# %%
def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 1e-12, (a * b).sum(1) / norms.clamp_min(1e-300), torch.nan)


def spigot_gradient(polytope, scores, c, eta, threshold, solver="exact"):
    leaf = scores.clone().requires_grad_(True)
    step = "fixed" if threshold is None else "reference"
    (spigot(leaf, polytope, solver=solver, eta=eta, threshold=threshold, step=step) * c).sum().backward()
    return leaf.grad


def sparsemap_gradient(polytope, scores, c):
    leaf = scores.clone().requires_grad_(True)
    (sparsemap(leaf, polytope) * c).sum().backward()
    return leaf.grad


ETAS = np.logspace(-2, 2, 13)
THRESHOLDS = (None, 10.0, 3.0, 1.0)


def sweep(polytope, scores, c, solvers=("exact",)):
    """Mean cosines of SPIGOT with SparseMAP and with STE-I per setting, and SPIGOT's zero fraction."""
    reference = sparsemap_gradient(polytope, scores, c)
    rows = {"ste-i": cosine(c, reference)}
    curves = {}
    for solver in solvers:
        for threshold in THRESHOLDS:
            with_reference, with_ste, zero = [], [], []
            for eta in ETAS:
                grad = spigot_gradient(polytope, scores, c, float(eta), threshold, solver)
                with_reference.append(np.nanmean(cosine(grad, reference).numpy()))
                with_ste.append(np.nanmean(cosine(grad, c).numpy()))
                zero.append(float((grad.flatten(1).norm(dim=1) == 0).double().mean()))
            curves[(solver, threshold)] = (np.array(with_reference), np.array(with_ste), np.array(zero))
    return rows, curves, reference


simplex_scores = 0.5 * torch.randn(300, 10, dtype=torch.float64)
simplex_c = torch.randn(300, 10, dtype=torch.float64)
simplex = sweep(Simplex(), simplex_scores, simplex_c)

n = 6
arcs = torch.ones(n + 1, n + 1, dtype=torch.float64)
arcs[:, 0] = 0
arcs.fill_diagonal_(0)
tree_scores = 0.5 * torch.randn(100, n + 1, n + 1, dtype=torch.float64) * arcs
tree_c = torch.randn(100, n + 1, n + 1, dtype=torch.float64) * arcs  # only arcs carry a gradient
trees = sweep(Arborescence(), tree_scores, tree_c, solvers=("exact", "relaxed"))

for name, (rows, curves, reference) in (("simplex k=10", simplex), ("arborescence n=6", trees)):
    zero_ref = float((reference.flatten(1).norm(dim=1) == 0).double().mean())
    best = max(np.nanmax(curve[0]) for curve in curves.values())
    zero = max(np.max(curve[2]) for curve in curves.values())
    print(
        f"{name}: mean cosine with the SparseMAP gradient: STE-I {np.nanmean(rows['ste-i'].numpy()):.3f}, "
        f"SPIGOT at best {best:.3f}; SPIGOT zero on up to {zero:.1%} of instances, "
        f"SparseMAP on {zero_ref:.1%}"
    )

# %%
def plot(results, title, figure, column):
    rows, curves, _ = results
    top, bottom = figure.axes[column], figure.axes[column + 2]
    for (solver, threshold), (with_reference, with_ste, _) in curves.items():
        label = f"SPIGOT ({'relaxed' if solver == 'relaxed' else 'exact'} projection, "
        label += "no threshold)" if threshold is None else f"$\\tau$ = {threshold:g})"
        style = "--" if solver == "relaxed" else "-"
        top.plot(ETAS, with_reference, style, marker="o", markersize=3, label=label)
        bottom.plot(ETAS, with_ste, style, marker="o", markersize=3, label=label)
    top.axhline(np.nanmean(rows["ste-i"].numpy()), color="black", linestyle=":", label="STE-I")
    top.set_title(title)
    top.set_ylabel("mean cosine with the SparseMAP gradient")
    bottom.set_ylabel("mean cosine of SPIGOT with STE-I")
    for ax in (top, bottom):
        ax.set_xscale("log")
        ax.set_xlabel("$\\eta$")
        ax.grid(alpha=0.3)
    top.legend(fontsize=7)


figure = Figure(figsize=(12, 8), layout="constrained")
figure.subplots(2, 2)
plot(simplex, "simplex, k = 10", figure, 0)
plot(trees, "arborescence, n = 6 words", figure, 1)
figure

# %% [markdown]
# ## Reading the curves
#
# The printed numbers and the curves are this run's measurements; the shapes follow from the
# geometry:
#
# - for small $\eta$ the projection of $z - \eta g$ stays in the cone of feasible directions
#   at $z$, the surrogate is $\eta$ times a fixed direction (the projection of $g$ onto that
#   cone), and every cosine is flat in $\eta$;
# - a threshold $\tau$ caps the step at $\tau / \|g\|$, so past that point its curve is
#   constant: the threshold freezes the geometry of a step of that length;
# - large steps reach faces far from $z$ and turn the surrogate towards
#   $z - \operatorname*{argmin}_{v} \langle g, v\rangle$, the difference of two vertices;
# - on trees, the head-selection relaxation (`solver="relaxed"`, the paper's choice) has a
#   larger cone of feasible directions at $z$ than the arborescence polytope, so its
#   surrogate differs from the exact one even for small steps.

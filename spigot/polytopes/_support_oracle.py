r"""The type of a compiled MAP oracle, for solvers that run their whole loop in compiled code.

A polytope whose MAP is numba-compiled can hand it to such a solver (the compiled active set,
:mod:`spigot.solvers._active_set_kernel`) through :meth:`~spigot.polytopes.base.Polytope.compiled_oracle`.
The oracle has the fixed signature :data:`SUPPORT_SIGNATURE`,

.. code-block:: text

    support = oracle(scores, params)

with ``scores`` one unpadded instance's scores flattened in C order (float64, contiguous),
``params`` the polytope's own integer parameters (its size, its options), and ``support`` the
flat positions of the ones of the vertex :math:`\operatorname*{argmax}_{z \in Z}\langle s, z\rangle`
(vertices are 0/1, so the positions are the whole vertex). The oracle is a numba-jitted
function; the solver compiles it for this signature at its first use and passes it as a
first-class function value (:data:`SUPPORT_ORACLE`), so that the solver's loop is compiled
once for every oracle of that type and numba's on-disk cache serves it to later processes.
"""

from __future__ import annotations

from numba import types

#: ``int64[::1](float64[::1] scores, int64[::1] params)``: the support of the MAP vertex.
SUPPORT_SIGNATURE = types.int64[::1](types.float64[::1], types.int64[::1])

#: The numba type of such an oracle as an argument of a compiled function.
SUPPORT_ORACLE = types.FunctionType(SUPPORT_SIGNATURE)

r"""W. J. Cody's rational approximations of the error function: the coefficients, in one place.

Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969); the ``calerf`` routine
behind SciPy. With y = |x|:

* :math:`y \le 0.46875`: :math:`\mathrm{erf}(y) = y\, P(y^2) / Q(y^2)` (coefficients ``A``, ``B``);
* :math:`0.46875 < y \le 4`: :math:`\mathrm{erfc}(y) = e^{-y^2} R(y)` (``C``, ``D``);
* :math:`y > 4`: :math:`\mathrm{erfc}(y) = \frac{e^{-y^2}}{y} \big(\frac{1}{\sqrt\pi} - S(1/y^2)\big)` (``P``, ``Q``).

Two implementations use them: the NumPy reference (:mod:`minidl.nn._activation_common`, which GELU's pair calls)
and the Numba kernels (``minidl/backend/_numba_math.py``), so neither imports the other.
"""

# W. J. Cody's coefficients: erf(y) = y P(y^2)/Q(y^2) on [0, 0.46875]; erfc(y) = exp(-y^2) R(y) on (0.46875, 4] and
# exp(-y^2) / y (1/sqrt(pi) - S(1/y^2)) beyond 4, with R, S rational functions.
A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
Q = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
ERF_SMALL = 0.46875  # below it erf itself is approximated; above it erfc (no cancellation in 1 - erf)
ERFC_ZERO = 27.0  # erfc(27) ~ 5e-319: zero in float64

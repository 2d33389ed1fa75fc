r"""Knowledge distillation (Hinton, Vinyals & Dean 2015): the hard-label cross-entropy plus a KL term that pulls the
student's softened predictions towards the teacher's.

With temperature T, :math:`p_s^T = \mathrm{softmax}(z_s / T)` and :math:`p_t^T = \mathrm{softmax}(z_t / T)`, the
gradient of :math:`\mathrm{KL}(p_t^T \,\|\, p_s^T)` with respect to :math:`z_s` is :math:`(p_s^T - p_t^T) / T`
(the cross-entropy gradient, divided by T by the chain rule). The factor :math:`T^2` on the KL term makes its
gradient :math:`T (p_s^T - p_t^T)`, keeping it on the scale of the hard-label term's as T changes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np  # noqa: F401  (the doctests use it)

from minidl.nn._checks import check_array, check_float
from minidl.nn._loss_common import _Loss, _reduced_dout
from minidl.nn.dispatch import F

__all__ = ["DistillationLoss", "distillation_loss_backward", "distillation_loss_forward"]


def distillation_loss_forward(
    student_logits: Any, target: Any, teacher_logits: Any, temperature: float = 4.0, alpha: float = 0.5
) -> tuple[Any, Any]:
    r"""Knowledge distillation (Hinton et al. 2015): the hard-label cross-entropy plus the teacher's soft targets.

    .. math:: L = (1 - \alpha)\, \mathrm{CE}(z_s, y) + \frac{\alpha T^2}{N} \sum_{n,c} p^T_{t,n,c}
              \big(\log p^T_{t,n,c} - \log p^T_{s,n,c}\big), \qquad p^T_s = \mathrm{softmax}(z_s / T), \quad
              p^T_t = \mathrm{softmax}(z_t / T)

    CE is :func:`~minidl.nn.loss.softmax_cross_entropy_forward` with its defaults (the mean over the N samples).
    The KL term is averaged over the batch; the :math:`T^2` keeps its gradient, :math:`\alpha T (p_s^T - p_t^T) / N`,
    on the scale of the hard-label term's as T changes.

    Args:
        student_logits: (N, C).  target: class indices (N,) or probabilities (N, C) for the CE term.
        teacher_logits: (N, C), the (frozen) teacher's logits.
        temperature: T > 0. Default: 4.0.  alpha: weight of the soft term in [0, 1]. Default: 0.5.

    Shape:
        - Student and teacher logits: (N, C).  - Target: class indices (N,) or probabilities (N, C).
        - Output: a scalar.
    Backward:
        dz_s = dout ((1 - alpha) dCE/dz_s + alpha T (p_s^T - p_t^T) / N), with dCE/dz_s = (softmax(z_s) - onehot(y))
        / N for class indices.
    Examples:
        >>> z = np.zeros((2, 4))
        >>> loss, cache = distillation_loss_forward(z, np.array([0, 1]), z, temperature=2.0, alpha=0.5)
        >>> round(float(loss), 4)  # (1 - alpha) log 4: the KL term is 0 when student == teacher
        0.6931
    """
    where = "distillation_loss_forward"
    be = check_array(where, student_logits, ndim=2, what="student logits")
    check_array(where, teacher_logits, ndim=2, what="teacher logits")
    if tuple(teacher_logits.shape) != tuple(student_logits.shape):
        raise ValueError(
            f"{where}: teacher logits of shape {tuple(teacher_logits.shape)} do not match the student's "
            f"{tuple(student_logits.shape)}"
        )
    T = check_float(where, "temperature", temperature, low=0.0, low_open=True)
    alpha = check_float(where, "alpha", alpha, low=0.0, high=1.0)
    ce, ce_cache = F.softmax_cross_entropy_forward(student_logits, target)  # the hard-label term
    teacher = be.asarray(teacher_logits).astype(student_logits.dtype, copy=False)
    log_ps, _ = F.log_softmax_forward(student_logits / T, dim=1)
    log_pt, _ = F.log_softmax_forward(teacher / T, dim=1)
    p_t = be.xp.exp(log_pt)
    N = student_logits.shape[0]
    kl = (p_t * (log_pt - log_ps)).sum() / N
    loss = (1 - alpha) * ce + alpha * T * T * kl
    soft_grad = (alpha * T / N) * (be.xp.exp(log_ps) - p_t)
    return loss, DistillationCache(ce_cache, 1 - alpha, soft_grad)


class DistillationCache(NamedTuple):
    """The cache of :func:`distillation_loss_forward`."""

    cross_entropy: Any  # the hard-label term's cache
    hard_weight: float  # 1 - alpha
    soft_grad: Any  # alpha T (softmax(z_s / T) - softmax(z_t / T)) / N


def distillation_loss_backward(dout: Any, cache: Any) -> Any:
    r"""The gradient of the distillation loss with respect to the student's logits (the teacher gets none).

    .. math:: \frac{\partial L}{\partial z_s} = dout \Big((1 - \alpha) \frac{\partial\, \mathrm{CE}}{\partial z_s}
              + \frac{\alpha T}{N} \big(p^T_s - p^T_t\big)\Big), \qquad
              \frac{\partial\, \mathrm{CE}}{\partial z_s} = \frac{\mathrm{softmax}(z_s) - \mathrm{onehot}(y)}{N}

    Shape:
        - dout: a scalar.  - dstudent: (N, C), the student logits' shape.
    Examples:
        >>> z = np.zeros((2, 4))
        >>> _, cache = distillation_loss_forward(z, np.array([0, 1]), z, temperature=2.0, alpha=0.5)
        >>> distillation_loss_backward(1.0, cache)  # (1 - alpha) (softmax - onehot) / 2
        array([[-0.1875,  0.0625,  0.0625,  0.0625],
               [ 0.0625, -0.1875,  0.0625,  0.0625]])
    """
    ce_cache, hard_weight, soft_grad = cache
    g = _reduced_dout("distillation_loss_backward", dout, "sum", 1.0, ())
    return (hard_weight * F.softmax_cross_entropy_backward(1.0, ce_cache) + soft_grad) * g


class DistillationLoss(_Loss):
    r"""Knowledge distillation (Hinton, Vinyals & Dean 2015): hard labels plus the teacher's softened predictions.

    .. math:: L = (1 - \alpha)\, CE(z_s, y) + \alpha T^2\, KL(\mathrm{softmax}(z_t/T) \,\|\, \mathrm{softmax}(z_s/T))

    Called as ``loss_fn(student_logits, labels, teacher_logits)``; backward returns the gradient with respect to the
    student's logits only (the teacher is fixed). The KL term is the batch mean.

    Args:
        temperature: T > 0; larger T softens both distributions. Default: 4.0.
        alpha: weight of the soft (teacher) term in [0, 1]. Default: 0.5.
    Shape:
        - Student and teacher logits: (N, C).  - Labels: class indices (N,) or probabilities (N, C).
    Backward:
        dz_s = dout ((1 - alpha) (softmax(z_s) - onehot(y)) / N + alpha T (softmax(z_s/T) - softmax(z_t/T)) / N)
    Examples:
        >>> import numpy as np
        >>> from minidl import nn
        >>> loss_fn = nn.DistillationLoss(temperature=2.0, alpha=0.5)
        >>> z = np.zeros((2, 4))
        >>> round(loss_fn(z, np.array([0, 1]), z), 4)  # the KL term is 0 when student == teacher
        0.6931
        >>> loss_fn.backward().shape
        (2, 4)
    """

    def _pair_backward(self, dout: Any, cache: Any) -> Any:
        return F.distillation_loss_backward(dout, cache)

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5) -> None:
        super().__init__("mean")
        self.temperature = check_float("DistillationLoss", "temperature", temperature, low=0.0, low_open=True)
        self.alpha = check_float("DistillationLoss", "alpha", alpha, low=0.0, high=1.0)

    def _arguments(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "alpha": self.alpha}

    def forward(self, student_logits: Any, target: Any, teacher_logits: Any) -> float:  # type: ignore[override]
        loss, cache = F.distillation_loss_forward(student_logits, target, teacher_logits, self.temperature, self.alpha)
        self.save_for_backward(cache, tuple(loss.shape))
        return float(loss)

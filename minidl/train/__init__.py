"""Training utilities: the epoch loop, metrics, progress bars, history, callbacks, plots and transfer learning.

* :mod:`~minidl.train.loop`: :func:`train_one_epoch`, :func:`evaluate`, :func:`predict`
* :mod:`~minidl.train.trainer`: :class:`Trainer` and :func:`fit` (history, callbacks, checkpoints, exact resume)
* :mod:`~minidl.train.metrics`: :func:`accuracy`, :func:`top_k_accuracy`, :func:`confusion_matrix`,
  :func:`per_class_metrics`, :class:`AverageMeter`
* :mod:`~minidl.train.callbacks`: :class:`EarlyStopping`, :class:`ModelCheckpoint`, :class:`LearningRateMonitor`
* :mod:`~minidl.train.history`: :class:`History` (JSON/CSV); :mod:`~minidl.train.progress`: tqdm bars
* :mod:`~minidl.train.health`: :func:`gradient_flow_report` (per-layer gradient norms, unused parameters, dead ReLUs)
* :mod:`~minidl.train.monitors`: the training-health callbacks :class:`ActivationStats`, :class:`UpdateRatio`,
  :class:`DeadReLU`, :class:`GradientNorms`; :mod:`~minidl.train.monitor_plots` draws them
* :mod:`~minidl.train.plots`: :func:`plot_history`, :func:`plot_confusion_matrix`, :func:`plot_misclassified`
  (needs matplotlib: ``pip install minidl[viz]``)
* :mod:`~minidl.train.transfer`: :func:`freeze`, :func:`unfreeze`, :func:`replace_head`,
  :func:`param_groups_with_lr`, :func:`freeze_batchnorm`
* :mod:`~minidl.train.sanity`: :func:`check_initial_loss`, :func:`overfit_batch` (the recipe's first checks)
* :mod:`~minidl.train.lr_finder`: :func:`lr_find` (the learning-rate range test), :func:`suggest_lr`
* :mod:`~minidl.train.search`: :func:`random_search`, :func:`grid_search`, :class:`SuccessiveHalving`; spaces from
  :mod:`~minidl.train.search_space`: :class:`loguniform`, :class:`uniform`, :class:`choice`, :class:`randint`,
  :func:`narrow`

The ten-line loop they package is in ``docs/training.md``.
"""

from minidl.train.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from minidl.train.health import GradientFlowReport, gradient_flow_report
from minidl.train.history import History
from minidl.train.loop import current_lrs, evaluate, predict, train_one_epoch
from minidl.train.lr_finder import LRFinderResult, lr_find, suggest_lr
from minidl.train.metrics import (
    AverageMeter,
    TopKAccuracy,
    accuracy,
    confusion_matrix,
    per_class_metrics,
    precision_recall,
    top_k_accuracy,
)
from minidl.train.monitor_plots import plot_activation_stats, plot_dead_relu, plot_gradient_norms, plot_update_ratios
from minidl.train.monitors import ActivationStats, DeadReLU, GradientNorms, UpdateRatio
from minidl.train.plots import plot_confusion_matrix, plot_history, plot_misclassified
from minidl.train.progress import EpochProgress, format_metrics
from minidl.train.sanity import InitialLossResult, OverfitResult, check_initial_loss, overfit_batch
from minidl.train.search import SearchResult, SuccessiveHalving, Trial, grid_search, random_search
from minidl.train.search_space import choice, loguniform, narrow, randint, uniform
from minidl.train.trainer import Trainer, fit
from minidl.train.transfer import (
    count_parameters,
    find_last_linear,
    freeze,
    freeze_batchnorm,
    get_submodule,
    param_groups_with_lr,
    replace_head,
    trainable_parameters,
    unfreeze,
    unfreeze_batchnorm,
)

__all__ = [
    "ActivationStats",
    "AverageMeter",
    "Callback",
    "DeadReLU",
    "EarlyStopping",
    "EpochProgress",
    "GradientFlowReport",
    "GradientNorms",
    "History",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "TopKAccuracy",
    "Trainer",
    "UpdateRatio",
    "accuracy",
    "confusion_matrix",
    "count_parameters",
    "current_lrs",
    "evaluate",
    "find_last_linear",
    "fit",
    "format_metrics",
    "gradient_flow_report",
    "freeze",
    "freeze_batchnorm",
    "get_submodule",
    "param_groups_with_lr",
    "per_class_metrics",
    "plot_activation_stats",
    "plot_confusion_matrix",
    "plot_dead_relu",
    "plot_gradient_norms",
    "plot_history",
    "plot_misclassified",
    "plot_update_ratios",
    "precision_recall",
    "predict",
    "replace_head",
    "top_k_accuracy",
    "train_one_epoch",
    "trainable_parameters",
    "unfreeze",
    "unfreeze_batchnorm",
    "InitialLossResult",
    "OverfitResult",
    "check_initial_loss",
    "overfit_batch",
    "LRFinderResult",
    "lr_find",
    "suggest_lr",
    "SearchResult",
    "SuccessiveHalving",
    "Trial",
    "choice",
    "grid_search",
    "loguniform",
    "narrow",
    "randint",
    "random_search",
    "uniform",
]

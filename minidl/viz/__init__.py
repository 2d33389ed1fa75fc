"""Visual explanations: what a trained CNN looks at, and what it has learned.

* :mod:`~minidl.viz.explain` (NumPy only): :func:`saliency`, :func:`smooth_grad`, :func:`grad_cam`,
  :func:`class_model_visualization`, :func:`activation_maps`, :func:`filter_grid`, :func:`resize_bilinear`
* :mod:`~minidl.viz.draw` (needs matplotlib: ``pip install minidl[viz]``): :func:`plot_heatmaps`,
  :func:`plot_filters`, :func:`plot_activation_maps`, :func:`plot_images`

The training-health monitors and their plots are in :mod:`minidl.train` (:mod:`minidl.train.monitors`).
"""

from minidl.viz.draw import plot_activation_maps, plot_filters, plot_heatmaps, plot_images
from minidl.viz.explain import (
    ClassModel,
    GradCam,
    Saliency,
    activation_maps,
    class_model_visualization,
    filter_grid,
    grad_cam,
    resize_bilinear,
    saliency,
    smooth_grad,
)

__all__ = [
    "ClassModel",
    "GradCam",
    "Saliency",
    "activation_maps",
    "class_model_visualization",
    "filter_grid",
    "grad_cam",
    "plot_activation_maps",
    "plot_filters",
    "plot_heatmaps",
    "plot_images",
    "resize_bilinear",
    "saliency",
    "smooth_grad",
]

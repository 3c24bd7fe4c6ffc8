"""Rotations of the residual stream before width pruning (SliceGPT).

* ``stream``: the hidden-size group of the analysis, its RMS norms (probed) and the Linears reading them.
* ``pca``: the principal axes of the normalised stream at every norm input, over calibration batches.
* ``rotate``: fold the norm scales, rotate every stream tensor by Q in place (checked: same outputs), score the
  hidden group by eigenvalue so pruning it slices the least-variance axes, rescale the norms after slicing.
* ``planning``: what ``sc.plan``/``sc.prune`` call for ``rotate=True``.
"""

from secateurs.rotation.rotate import Rotation, rotate_

__all__ = ["Rotation", "rotate_"]

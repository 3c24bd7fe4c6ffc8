"""Post-pruning compensation without retraining: refit what consumer layers lose from calibration data.

``gather`` reads input statistics of the layers a plan shrinks on the ORIGINAL model (before apply);
``compensate`` refits the pruned model's weights/biases from them (methods: ``METHODS.names()``).
``sc.prune(..., compensate="lstsq", calibration=batches)`` does both around apply.
"""

from secateurs.compensation.config import Compensation
from secateurs.compensation.gather import ConsumerStatistics, gather
from secateurs.compensation.methods import METHODS
from secateurs.compensation.refit import compensate
from secateurs.compensation.replay import add_recorded_biases_
from secateurs.compensation.result import CompensationResult

__all__ = ["Compensation", "CompensationResult", "ConsumerStatistics", "add_recorded_biases_", "compensate", "gather",
           "METHODS"]

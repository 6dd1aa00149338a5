"""The population latent-space model: specs, torch module, Pyro model, training, persistence.

Public names: :class:`TwinModel` (user-facing model), :class:`TwinEnsemble` (a deep
ensemble of them with calibrated intervals), :class:`ModalitySpec`
(likelihood and network choices per modality), :class:`TrainingConfig`.
"""

from twin.model.ensemble import TwinEnsemble
from twin.model.specs import ModalitySpec
from twin.model.training import TrainingConfig
from twin.model.twin_model import TwinModel

__all__ = ["ModalitySpec", "TrainingConfig", "TwinEnsemble", "TwinModel"]

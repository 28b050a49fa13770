"""Loading dense models and tickets in every supported format, normalised to one ``Mask``."""

from .load import LoadedModel, load_dense, load_ticket
from .mask import Mask, prunable_parameters

__all__ = ["LoadedModel", "Mask", "load_dense", "load_ticket", "prunable_parameters"]

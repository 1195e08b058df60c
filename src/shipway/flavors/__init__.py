"""Saving and loading models, per framework ("flavour")."""

from shipway.flavors.model import LoadedModel, load_from_manifest, save_to_store
from shipway.flavors.pyfunc import PythonModel

__all__ = ["LoadedModel", "PythonModel", "load_from_manifest", "save_to_store"]

"""The model server: native REST and the Open Inference Protocol, batched, validated, observed."""

from shipway.serving.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # keeps `import shipway.serving` light
        from shipway.serving.app import create_app

        return create_app
    raise AttributeError(name)

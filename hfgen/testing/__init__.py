"""Test support that ships with hfgen: a local Hugging Face Hub (`HubServer`, hfgen.testing.hub_server)
and pytest fixtures (hfgen.testing.pytest_plugin), so Hub features can be tested offline with the real
client."""


def __getattr__(name):
    # imported on use, so `python -m hfgen.testing.hub_server` does not import the module twice
    if name == "HubServer":
        from .hub_server import HubServer

        return HubServer
    raise AttributeError(f"module 'hfgen.testing' has no attribute {name!r}")


__all__ = ["HubServer"]

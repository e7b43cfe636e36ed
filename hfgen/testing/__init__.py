"""Test support that ships with hfgen: a local Hugging Face Hub (`HubServer`, hfgen.testing.hub_server)
and pytest fixtures (hfgen.testing.pytest_plugin), so Hub features can be tested offline with the real
client; `free_port` for multi-process launches."""


def free_port() -> int:
    """A TCP port free now on 127.0.0.1, for `accelerate launch --main_process_port` (a fixed port collides with other
    runs on a shared machine)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def __getattr__(name):
    # imported on use, so `python -m hfgen.testing.hub_server` does not import the module twice
    if name == "HubServer":
        from .hub_server import HubServer

        return HubServer
    raise AttributeError(f"module 'hfgen.testing' has no attribute {name!r}")


__all__ = ["HubServer", "free_port"]

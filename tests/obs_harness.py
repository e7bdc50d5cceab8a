"""Test access to the headless OBS launcher (companion/capture/headless.py)."""
from companion.capture.headless import (  # noqa: F401
    LOCK, SCRIPT, ObsInstance, Xvfb, companion_session, free_port, obs_available)


def start_xvfb(numbers):
    """A real Xvfb on the first free display of ``numbers``: (process, ":N")."""
    import pytest
    try:
        x = Xvfb(displays=numbers)
    except RuntimeError as e:
        pytest.fail(str(e))
    return x.proc, x.display

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


def xdisplay_fixture(displays):
    """A module-scoped pytest fixture yielding the name (":N") of a fresh Xvfb."""
    import pytest

    @pytest.fixture(scope="module")
    def xdisplay():
        proc, name = start_xvfb(displays)
        yield name
        proc.terminate()
        proc.wait(10)
    return xdisplay

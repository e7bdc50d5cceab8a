"""Test access to the headless OBS launcher (companion/capture/headless.py)."""
from companion.capture.headless import (  # noqa: F401
    LOCK, SCRIPT, ObsInstance, Xvfb, companion_session, free_port, obs_available)

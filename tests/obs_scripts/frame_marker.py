"""Test-only OBS script: paints the frame's own OBS frame number into the picture.

In every script_tick (which runs before the frame is rendered, see
docs/contracts/captions-and-sidecar.md) it sets the colour sources "Marker" and
"Marker2" so that the rendered frame shows k mod 4096, where
k = obs_get_video_frame_time() // obs_get_frame_interval_ns(): 12 bits, 2 bits per
RGB channel (levels 0, 85, 170, 255), 6 bits per source. A test decodes the colours
and compares them with the frame times the aligner recovers from the anchors.
"""
import obspython as obs

LEVELS = (0, 85, 170, 255)
_sources = {}
_log = None


def encode6(v):
    r, g, b = LEVELS[(v >> 4) & 3], LEVELS[(v >> 2) & 3], LEVELS[v & 3]
    return 0xFF000000 | (b << 16) | (g << 8) | r  # OBS colour is ABGR


def _set(name, argb):
    src = obs.obs_get_source_by_name(name)
    if src is None:
        return
    data = obs.obs_data_create()
    obs.obs_data_set_int(data, "color", argb)
    obs.obs_source_update(src, data)
    obs.obs_data_release(data)
    obs.obs_source_release(src)


def script_tick(seconds):
    k = obs.obs_get_video_frame_time() // obs.obs_get_frame_interval_ns()
    v = k % 4096
    _set("Marker", encode6(v >> 6))
    _set("Marker2", encode6(v & 63))


def script_load(settings):
    obs.script_log(obs.LOG_INFO, "frame_marker loaded")

"""nm_timestamps: pin every recorded OBS frame to OBS's frame clock and the wall clock.

Runs inside OBS Studio 29+ (Tools > Scripts), standard library only.

What it records, per recording (docs/contracts/captions-and-sidecar.md):

* a *segment anchor* when the recording output becomes active, and again after
  every unpause: the OBS frame time (monotonic ns) of the segment's first recorded
  frame, the index of that frame in the file, the frame interval, the cumulative
  paused time as this script's pause/unpause handlers see it and as OBS's video
  encoder counts it (the latter settles an edge a late handler misplaced);
* *clock pairs* (wall-clock epoch ns, OBS monotonic ns) read back to back, about
  one per second, so drift and NTP slewing are measurable;
* a stop record with frame counts and the script's own cost per frame. OBS's frame
  counters are read when the recording output becomes active and again at the first
  tick after its "stopping" signal, so the stop record carries this recording's own lagged /
  rendered / output-dropped frames, not OBS's lifetime totals.

Each record goes in-band as a CEA-608 caption (so it lives inside the MKV) and,
if enabled, into a sidecar ``<recording stem>.anchors.jsonl`` beside the recording
(for outputs/encoders where captions do not land).

Why not stamp ``time.time_ns()`` on every frame: captions attach to packets after
encoding, behind a ~0.5 s backlog and never on B-frames, so a caption's text is
not the capture time of the frame it lands on. The frame clock is exact: frame k
of a segment was rendered at ``frame_ns + k * interval_ns``.
"""

import json
import os
import sys
import time
import zlib

try:  # only present inside OBS; tests import the pure helpers without it
    import obspython as obs
except ImportError:  # pragma: no cover - exercised by tests outside OBS
    obs = None

SCRIPT_VERSION = "1.2.0"
CAPTION_VERSION = 1
MAGIC = "NM1"
SIDECAR_SUFFIX = ".anchors.jsonl"
CAPTION_DURATION_S = 0.001  # as short as possible: let the next caption land soon

# ---------------------------------------------------------------------------
# Pure helpers (kept byte-for-byte compatible with companion/contract/captions.py)
# ---------------------------------------------------------------------------


def crc_of(body):
    return "%08X" % (zlib.crc32(body.encode("ascii")) & 0xFFFFFFFF)


def _seal(body):
    return "%s K=%s" % (body, crc_of(body))


def anchor_caption(rec_id, segment, pts_base, frame_ns, interval_ns, pause_offset_ns):
    return _seal("%s A R=%s S=%d B=%d F=%d I=%d P=%d" % (
        MAGIC, rec_id, segment, pts_base, frame_ns, interval_ns, pause_offset_ns))


def clock_caption(rec_id, epoch_ns, mono_ns):
    return _seal("%s C R=%s E=%d M=%d" % (MAGIC, rec_id, epoch_ns, mono_ns))


def sidecar_path_for(recording_path):
    root, _ext = os.path.splitext(recording_path)
    return root + SIDECAR_SUFFIX


def new_recording_id():
    return os.urandom(4).hex().upper()


def codec_supports_captions(codec, obs_version):
    """OBS 29-30.1 append an H.264 SEI with no codec check: only H.264 is safe.
    30.2+ also carry captions in HEVC (SEI) and AV1 (T.35 metadata OBU)."""
    codec = (codec or "").lower()
    if codec in ("h264", "avc"):
        return True
    try:
        parts = [int(p) for p in obs_version.split("-")[0].split(".")[:2]]
        major, minor = (parts + [0, 0])[:2]
    except ValueError:
        return False
    return (major, minor) >= (30, 2) and codec in ("hevc", "h265", "av1")


# ---------------------------------------------------------------------------
# Recording state machine (one instance per recording)
# ---------------------------------------------------------------------------


class Recording:
    """State of the recording being anchored. All methods run on OBS's graphics
    thread (script_tick) except ``finish``, which runs from a frontend event."""

    def __init__(self, settings, clock):
        self.s = settings
        self.clock = clock            # object with the OBS calls (see ObsClock)
        self.rec_id = new_recording_id()
        self.output = None
        self.active = False
        self.paused = False
        self.segment = -1
        self.f0 = None
        self.interval = None
        self.pause_offset = 0         # cumulative paused time on the frame grid (ns)
        self.frames_before = 0        # frames recorded before the current pause
        self.seg_start_ns = None      # frame time of the current segment's first frame
        self.pause_start_ns = None    # ts_start of the current pause (frame grid)
        self.pending_segment = None   # set by the unpause signal, emitted by the next tick
        self.next_clock_ns = 0
        self.sidecar = None
        self.sidecar_path = None
        self.captions_ok = True
        self.anchors = 0
        self.clocks = 0
        self.ticks = 0
        self.tick_cost_total = 0
        self.tick_cost_max = 0
        self.path = ""
        self.seg_base = 0
        self.counts_start = None      # OBS frame counters at the first active tick
        self.counts_end = None        # ... at the first tick after the output's "stopping" signal
        self.stopping = None          # (signal_mono_ns, paused) from that signal
        self.stopping_written = False
        self.counts_end_at = None     # "stopping" or "stopped" (fallback, read in finish)

    # -- output helpers ----------------------------------------------------
    def caption(self, text):
        if self.s["captions"] and self.captions_ok:
            self.clock.caption(self.output, text)

    def write(self, rec):
        if self.sidecar is None:
            return
        try:
            self.sidecar.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self.sidecar.flush()
        except (OSError, ValueError) as e:
            self.clock.log_warning("nm_timestamps: sidecar write failed (%s); captions only" % e)
            self._close_sidecar()

    def _close_sidecar(self):
        try:
            if self.sidecar is not None:
                self.sidecar.close()
        except OSError:
            pass
        self.sidecar = None

    def pair(self):
        """Back-to-back (epoch, mono) reading; epoch is the midpoint of two wall
        clock reads around the monotonic read."""
        e1 = time.time_ns()
        m = self.clock.mono_ns()
        e2 = time.time_ns()
        return (e1 + e2) // 2, m

    # -- per-tick work -----------------------------------------------------
    def tick(self):
        t0 = time.perf_counter_ns()
        try:
            self._tick()
        finally:
            cost = time.perf_counter_ns() - t0
            self.ticks += 1
            self.tick_cost_total += cost
            if cost > self.tick_cost_max:
                self.tick_cost_max = cost

    def _tick(self):
        c = self.clock
        if not self.active:
            if not c.output_active(self.output):
                return
            # First tick with the output active: the frame about to be rendered is
            # the first recorded frame (pts 0), see docs/contracts/captions-and-sidecar.md.
            self.active = True
            self.f0 = c.frame_time_ns()
            self.interval = c.frame_interval_ns()
            self.path = c.output_path(self.output)
            self.counts_start = c.frame_counters(self.output)
            self._open_sidecar()
            c.connect_pause_signals(self.output, self.on_pause, self.on_unpause, self.on_stopping)
            self._start_segment(0, self.f0, 0)
            return
        if self.stopping is not None:
            self._flush_stopping()
            return
        pending, self.pending_segment = self.pending_segment, None
        if pending is not None:
            self._start_segment(*pending)
            return
        now = c.mono_ns()
        if now >= self.next_clock_ns:
            self._clock_pair()

    # -- pause / unpause (output signals, emitted synchronously by obs_output_pause) --
    def grid_at_or_below(self, t):
        return self.f0 + ((t - self.f0) // self.interval) * self.interval

    def pause_edge(self, t_signal):
        """The frame-grid time OBS picks for a pause edge.

        OBS computes it inside obs_output_pause as
        ``last_video_ts + ((now - last_video_ts + 2*interval) // interval) * interval``
        (libobs obs-output.c get_closest_v_ts), i.e. the last grid point at or below
        ``now + 2*interval``. The signal handler runs microseconds after ``now``;
        ``margin_ns`` is how far ``t_signal + 2*interval`` lies above that grid point:
        if it is smaller than the handler's delay the edge is one frame earlier.
        """
        x = t_signal + 2 * self.interval
        edge = self.grid_at_or_below(x)
        return edge, x - edge

    def on_pause(self, t_signal):
        if self.f0 is None or self.pause_start_ns is not None:
            return
        edge, margin = self.pause_edge(t_signal)
        self.pause_start_ns = edge
        # frames of the current segment before the pause edge
        self.frames_before = self.seg_base + (edge - self.seg_start_ns) // self.interval
        self.write({"kind": "pause", "signal_mono_ns": t_signal, "edge_ns": edge,
                    "margin_ns": margin, "frames_before": self.frames_before})

    def on_unpause(self, t_signal):
        if self.pause_start_ns is None:
            return
        edge, margin = self.pause_edge(t_signal)
        self.pause_offset += edge - self.pause_start_ns
        self.write({"kind": "unpause", "signal_mono_ns": t_signal, "edge_ns": edge,
                    "margin_ns": margin, "pause_offset_ns": self.pause_offset})
        self.pause_start_ns = None
        self.pending_segment = (self.frames_before, edge, self.pause_offset)

    def on_stopping(self, t_signal):
        """The output's "stopping" signal: OBS reads its stop time right after the signal
        handlers return, and the muxer keeps exactly the packets whose system dts is before
        that time. So this handler only remembers ``t_signal``: any work here (a file
        write, reading counters) would push OBS's stop time later than ``t_signal`` and
        let the muxer keep a frame the stop rule does not expect. The record is written,
        and the frame counters closing this recording's counts are read, at the next tick
        (or in finish)."""
        if self.stopping is None:
            self.stopping = (t_signal, self.pause_start_ns is not None)

    def _flush_stopping(self):
        if self.stopping is None or self.stopping_written:
            return
        self.stopping_written = True
        if self.counts_start is not None and self.counts_end is None:
            self.counts_end = self.clock.frame_counters(self.output)
            self.counts_end_at = "stopping"
        t_signal, paused = self.stopping
        self.write({"kind": "stopping", "signal_mono_ns": t_signal, "paused": paused})

    def _start_segment(self, pts_base, frame_ns, pause_offset):
        self.segment += 1
        self.seg_base = pts_base
        self.seg_start_ns = frame_ns
        self.pause_offset = pause_offset
        epoch, mono = self.pair()
        self.caption(anchor_caption(self.rec_id, self.segment, pts_base, frame_ns,
                                    self.interval, pause_offset))
        # OBS's own paused total, kept on the video encoder (libobs adds each pause's
        # length when it is unpaused, before the unpause signal): it settles an edge
        # this script placed a frame late (docs/contracts/captions-and-sidecar.md)
        obs_offset = self.clock.encoder_pause_offset_ns(self.output)
        rec = {"kind": "segment", "recording_id": self.rec_id, "segment": self.segment,
               "pts_base": pts_base, "frame_ns": frame_ns, "interval_ns": self.interval,
               "pause_offset_ns": pause_offset, "epoch_ns": epoch, "mono_ns": mono}
        if obs_offset is not None:
            rec["obs_pause_offset_ns"] = obs_offset
        self.write(rec)
        self.anchors += 1
        self._clock_pair(epoch, mono)

    def _clock_pair(self, epoch=None, mono=None):
        if epoch is None:
            epoch, mono = self.pair()
        self.caption(clock_caption(self.rec_id, epoch, mono))
        self.write({"kind": "clock", "epoch_ns": epoch, "mono_ns": mono})
        self.clocks += 1
        self.next_clock_ns = mono + int(self.s["clock_interval_s"] * 1e9)

    def _open_sidecar(self):
        c = self.clock
        codec = c.video_codec(self.output)
        version = c.obs_version()
        self.captions_ok = codec_supports_captions(codec, version)
        if self.s["captions"] and not self.captions_ok:
            c.log_warning("nm_timestamps: OBS %s cannot carry captions in %s video; "
                          "anchors go to the sidecar only" % (version, codec))
        if self.s["sidecar"] and self.path:
            self.sidecar_path = sidecar_path_for(self.path)
            try:
                self.sidecar = open(self.sidecar_path, "w", encoding="utf-8")
            except OSError as e:
                c.log_warning("nm_timestamps: cannot write sidecar %s (%s)" % (self.sidecar_path, e))
                self.sidecar = None
        fps_num, fps_den = c.fps()
        w, h = c.output_size(self.output)
        epoch, mono = self.pair()
        self.write({"kind": "header", "caption_version": CAPTION_VERSION,
                    "script_version": SCRIPT_VERSION, "recording_id": self.rec_id,
                    "obs_version": version, "python": sys.version.split()[0],
                    "platform": sys.platform, "fps_num": fps_num, "fps_den": fps_den,
                    "interval_ns": self.interval, "output_width": w, "output_height": h,
                    "video_codec": codec, "captions": bool(self.s["captions"] and self.captions_ok),
                    "recording_path": self.path, "started_epoch_ns": epoch,
                    "started_mono_ns": mono,
                    "counters_at_start": self.counts_start})

    def recording_counts(self, now):
        """This recording's frame counts: OBS counters at the end minus at the start.

        ``now`` is the counters read in finish(), used when no "stopping" signal was
        seen. None for every count if the output never became active."""
        start = self.counts_start
        end = self.counts_end if self.counts_end is not None else now
        at = self.counts_end_at or "stopped"
        if start is None or end is None:
            return {"recording_lagged_frames": None, "recording_rendered_frames": None,
                    "recording_output_dropped_frames": None, "counters_end_at": None}
        return {"recording_lagged_frames": max(0, end["lagged"] - start["lagged"]),
                "recording_rendered_frames": max(0, end["rendered"] - start["rendered"]),
                "recording_output_dropped_frames": max(0, end["output_dropped"] - start["output_dropped"]),
                "counters_end_at": at}

    def finish(self):
        """Recording stopped (or script unloading): write the stop record, log once."""
        c = self.clock
        self._flush_stopping()
        frames = c.output_frames(self.output) if self.output is not None else None
        now = c.frame_counters(self.output) if self.output is not None else None
        counts = self.recording_counts(now)
        epoch, mono = self.pair()
        mean = self.tick_cost_total // self.ticks if self.ticks else 0
        rec = {"kind": "stop", "epoch_ns": epoch, "mono_ns": mono, "total_frames": frames,
               "lagged_frames": now["lagged"] if now else None}
        rec.update(counts)
        rec.update({"counters_at_end": self.counts_end or now, "anchors": self.anchors,
                    "clock_pairs": self.clocks, "ticks": self.ticks,
                    "tick_cost_ns_mean": mean, "tick_cost_ns_max": self.tick_cost_max})
        self.write(rec)
        self._close_sidecar()
        if self.output is not None:
            c.disconnect_pause_signals(self.output, self.on_pause, self.on_unpause)
        if self.active:
            c.log_info("nm_timestamps: recording %s: %s frames, %s lagged, %d segment(s), "
                       "%d clock pairs, %.1f us/frame mean (max %.1f us), sidecar %s" % (
                           self.rec_id, frames, counts["recording_lagged_frames"],
                           self.segment + 1, self.clocks, mean / 1000.0,
                           self.tick_cost_max / 1000.0, self.sidecar_path or "off"))


# ---------------------------------------------------------------------------
# The thin OBS edge
# ---------------------------------------------------------------------------


class ObsClock:
    """Every OBS call the state machine makes, in one place."""

    def mono_ns(self):
        return obs.os_gettime_ns()

    def frame_time_ns(self):
        return obs.obs_get_video_frame_time()

    def frame_interval_ns(self):
        return obs.obs_get_frame_interval_ns()

    def fps(self):
        vi = obs.obs_video_info()
        if obs.obs_get_video_info(vi):
            return vi.fps_num, vi.fps_den
        return 0, 0

    def output_active(self, output):
        return output is not None and obs.obs_output_active(output)

    def output_paused(self, output):
        return obs.obs_output_paused(output)

    def output_frames(self, output):
        return obs.obs_output_get_total_frames(output)

    def encoder_pause_offset_ns(self, output):
        """The recording's video encoder's cumulative paused time (ns), or None.

        For encoded outputs libobs keeps pause state on the encoders
        (``obs_output_get_pause_offset`` stays 0); ``obs_encoder_get_pause_offset`` is the
        sum of ``ts_end - ts_start`` over the pauses so far, OBS's own edges."""
        get = getattr(obs, "obs_encoder_get_pause_offset", None)
        if get is None or output is None:
            return None
        enc = obs.obs_output_get_video_encoder(output)
        if enc is None:
            return None
        value = get(enc)
        return int(value) if isinstance(value, int) else None

    def output_size(self, output):
        return obs.obs_output_get_width(output), obs.obs_output_get_height(output)

    def output_path(self, output):
        settings = obs.obs_output_get_settings(output)
        try:
            return obs.obs_data_get_string(settings, "path") or obs.obs_data_get_string(settings, "url")
        finally:
            obs.obs_data_release(settings)

    def video_codec(self, output):
        enc = obs.obs_output_get_video_encoder(output)
        return obs.obs_encoder_get_codec(enc) if enc is not None else ""

    def obs_version(self):
        return obs.obs_get_version_string()

    def frame_counters(self, output):
        """OBS's running frame counters. ``lagged``: frames the renderer missed since OBS
        started (obs_get_lagged_frames); ``rendered``: frames the render loop produced,
        lagged ones included (obs_get_total_frames); ``output_dropped``: frames the output
        itself dropped (obs_output_get_frames_dropped; 0 for file outputs, which do not
        drop). OBS 29-32 give scripts no access to the encoder-lag skip counter
        (video_output_get_skipped_frames is not wrapped)."""
        return {"lagged": obs.obs_get_lagged_frames(), "rendered": obs.obs_get_total_frames(),
                "output_dropped": obs.obs_output_get_frames_dropped(output) if output is not None else 0}

    def connect_pause_signals(self, output, on_pause, on_unpause, on_stopping=None):
        handler = obs.obs_output_get_signal_handler(output)
        self._cbs = (lambda cd: on_pause(obs.os_gettime_ns()),
                     lambda cd: on_unpause(obs.os_gettime_ns()),
                     lambda cd: on_stopping(obs.os_gettime_ns()) if on_stopping else None)
        obs.signal_handler_connect(handler, "pause", self._cbs[0])
        obs.signal_handler_connect(handler, "unpause", self._cbs[1])
        obs.signal_handler_connect(handler, "stopping", self._cbs[2])

    def disconnect_pause_signals(self, output, on_pause, on_unpause):
        cbs = getattr(self, "_cbs", None)
        if not cbs:
            return
        handler = obs.obs_output_get_signal_handler(output)
        obs.signal_handler_disconnect(handler, "pause", cbs[0])
        obs.signal_handler_disconnect(handler, "unpause", cbs[1])
        obs.signal_handler_disconnect(handler, "stopping", cbs[2])
        self._cbs = None

    def caption(self, output, text):
        obs.obs_output_output_caption_text2(output, text, CAPTION_DURATION_S)

    def log_info(self, msg):
        obs.script_log(obs.LOG_INFO, msg)

    def log_warning(self, msg):
        obs.script_log(obs.LOG_WARNING, msg)


SETTINGS = {"enabled": True, "captions": True, "sidecar": True, "clock_interval_s": 1.0}
_clock = None
_rec = None       # Recording while a recording is starting/active
_watching = False  # True between RECORDING_STARTING and RECORDING_STOPPED


def _begin():
    global _rec, _watching
    _end()
    if not SETTINGS["enabled"]:
        return
    _rec = Recording(dict(SETTINGS), _clock)
    _rec.output = obs.obs_frontend_get_recording_output()
    _watching = _rec.output is not None


def _end():
    global _rec, _watching
    _watching = False
    rec, _rec = _rec, None
    if rec is None:
        return
    try:
        rec.finish()
    finally:
        if rec.output is not None:
            obs.obs_output_release(rec.output)
            rec.output = None


def _on_event(event):
    if event == obs.OBS_FRONTEND_EVENT_RECORDING_STARTING:
        _begin()
    elif event == obs.OBS_FRONTEND_EVENT_RECORDING_STARTED and _rec is None:
        _begin()  # script (re)loaded while OBS was already starting
    elif event in (obs.OBS_FRONTEND_EVENT_RECORDING_STOPPED, obs.OBS_FRONTEND_EVENT_EXIT):
        _end()


def script_description():
    return ("<b>nm_timestamps</b> %s<br>Pins every recorded frame to OBS's frame clock and "
            "the wall clock: segment anchors and clock pairs as captions inside the "
            "recording and in a sidecar file beside it. Use MKV recordings." % SCRIPT_VERSION)


def script_properties():
    props = obs.obs_properties_create()
    obs.obs_properties_add_bool(props, "enabled", "Enabled")
    obs.obs_properties_add_float(props, "clock_interval_s", "Clock pair interval (s)", 0.1, 60.0, 0.1)
    obs.obs_properties_add_bool(props, "captions", "Write anchors as captions into the recording")
    obs.obs_properties_add_bool(props, "sidecar", "Write sidecar file beside the recording")
    return props


def script_defaults(settings):
    obs.obs_data_set_default_bool(settings, "enabled", True)
    obs.obs_data_set_default_double(settings, "clock_interval_s", 1.0)
    obs.obs_data_set_default_bool(settings, "captions", True)
    obs.obs_data_set_default_bool(settings, "sidecar", True)


def script_update(settings):
    SETTINGS["enabled"] = obs.obs_data_get_bool(settings, "enabled")
    SETTINGS["clock_interval_s"] = max(0.1, obs.obs_data_get_double(settings, "clock_interval_s"))
    SETTINGS["captions"] = obs.obs_data_get_bool(settings, "captions")
    SETTINGS["sidecar"] = obs.obs_data_get_bool(settings, "sidecar")


def script_load(settings):
    global _clock
    _clock = ObsClock()
    script_update(settings)
    obs.obs_frontend_add_event_callback(_on_event)
    out = obs.obs_frontend_get_recording_output()
    if out is not None:
        active = obs.obs_output_active(out)
        obs.obs_output_release(out)
        if active:
            obs.script_log(obs.LOG_WARNING, "nm_timestamps: loaded during a recording; "
                           "this recording has no anchors (start a new one)")
    obs.script_log(obs.LOG_INFO, "nm_timestamps %s loaded (OBS %s)" % (
        SCRIPT_VERSION, obs.obs_get_version_string()))


def script_unload():
    _end()


def script_tick(seconds):
    # No work while not recording: one global read.
    rec = _rec
    if _watching and rec is not None:
        rec.tick()

"""Choosing and cross-checking the timing anchors of one recording (pure).

Sources, best first (docs/contracts/captions-and-sidecar.md, "Choosing anchors"):

1. ``sidecar`` (``<stem>.anchors.jsonl`` written by the OBS script), cross-checked
   with the NM1 captions demuxed from the video packets when both exist
   (``captions+sidecar``); only the sidecar can pin the start (stop rule);
2. ``nm_epoch_track``: no sidecar, NM1 captions, and a per-frame epoch-ns subtitle
   track that ``nm-align --owa-out`` wrote (tagged ``NM_EPOCH_TRACK=frame``) with a cue
   on every frame: the frame times aligned from the original, start-race correction
   included, which the captions alone would lose (without captions such a track is
   read as OWA cues, rule 4, to the same times);
3. ``captions``: NM1 captions alone (in-band, travel with the file, but carry no stop
   record);
4. ``owa_subtitles``: an open-world-agents subtitle track of epoch-ns cues;
5. ``recording_start_marker``: the companion's ``recording.started`` marker (or a zip
   export's ``startTime``) pins pts 0: low confidence, warned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..contract.captions import CaptionError, ClockPair, SegmentAnchor, decode_caption
from ..contract.sidecar import Sidecar


@dataclass
class AnchorSet:
    source: str                      # captions | sidecar | captions+sidecar | nm_epoch_track | owa_subtitles | ...
    confidence: str                  # exact | approximate | low
    recording_id: str | None = None
    segments: list[SegmentAnchor] = field(default_factory=list)
    clocks: list[ClockPair] = field(default_factory=list)
    raw_cues: list[tuple[int, int, str]] = field(default_factory=list)  # OWA (start, end, text)
    start_epoch_ns: int | None = None                           # marker fallback
    warnings: list[str] = field(default_factory=list)
    crosscheck: dict | None = None
    bad_captions: int = 0
    header: dict = field(default_factory=dict)
    stop: dict | None = None   # sidecar: {"signal_mono_ns", "paused", "pause_total_ns", "unpause_margins"}
    truncated: str | None = None   # why the recording is cut short (aligned anyway)
    pauses: list = field(default_factory=list)   # marker fallback: [(paused, resumed) epoch ns]
    obs_pause_offsets: dict | None = None   # sidecar 1.2.0+: {segment: OBS's paused total before it}


def stop_info(sidecar: Sidecar | None) -> dict | None:
    """The sidecar's ``stopping`` record with the total paused time, or None."""
    if sidecar is None:
        return None
    stops = [r for r in sidecar.records if r.get("kind") == "stopping"]
    if not stops or not isinstance(stops[0].get("signal_mono_ns"), int):
        return None
    unp = [r for r in sidecar.records if r.get("kind") == "unpause"
           and isinstance(r.get("pause_offset_ns"), int)]
    edges = {r["edge_ns"]: r["margin_ns"] for r in unp
             if isinstance(r.get("edge_ns"), int) and isinstance(r.get("margin_ns"), int)}
    return {"signal_mono_ns": stops[0]["signal_mono_ns"], "paused": bool(stops[0].get("paused")),
            "pause_total_ns": unp[-1]["pause_offset_ns"] if unp else 0,
            "unpause_margins": edges}


def obs_pause_offsets(sidecar: Sidecar) -> dict[int, int] | None:
    """Per segment number, OBS's own paused total before that segment (script 1.2.0+:
    the video encoder's pause offset in each ``segment`` record, taken relative to
    segment 0's), or None when any segment record lacks it."""
    segs = [r for r in sidecar.records if r.get("kind") == "segment"]
    vals = {}
    for r in segs:
        v, k = r.get("obs_pause_offset_ns"), r.get("segment")
        if not isinstance(v, int) or isinstance(v, bool) or not isinstance(k, int):
            return None
        vals[k] = v
    if 0 not in vals:
        return None
    return {k: v - vals[0] for k, v in vals.items()}


def anchors_from_captions(captions: Sequence[tuple[int, str]]) -> tuple[list[SegmentAnchor], list[ClockPair], int, int]:
    """Decode (frame_idx, text) captions; returns segments, clocks, n_bad, n_foreign."""
    segs, clocks, bad, foreign = [], [], 0, 0
    for _idx, text in captions:
        try:
            rec = decode_caption(text)
        except CaptionError:
            bad += 1
            continue
        if rec is None:
            foreign += 1
        elif isinstance(rec, SegmentAnchor):
            segs.append(rec)
        else:
            clocks.append(rec)
    return segs, clocks, bad, foreign


def _majority_id(segs, clocks) -> str | None:
    counts: dict[str, int] = {}
    for r in list(segs) + list(clocks):
        counts[r.recording_id] = counts.get(r.recording_id, 0) + 1
    return max(counts, key=counts.get) if counts else None


def has_epoch_cues(cues: Sequence[tuple[int, int, str]]) -> bool:
    """Whether a subtitle track carries open-world-agents epoch-ns cues: integers of at
    least 16 digits (so a track of small numbers is not mistaken for timestamps)."""
    from ..interop.owa import parse_epoch_cue
    return any(parse_epoch_cue(text) is not None and len(text.strip()) >= 16
               for _s, _e, text in cues)


def nm_epoch_track(subtitle_cues: Sequence[tuple[int, int, str]], subtitle_tags: dict | None,
                   frame_pts_ns, caption_id: str | None, warnings: list[str]) -> AnchorSet | None:
    """An AnchorSet from a per-frame epoch track written by ``nm-align --owa-out``, or
    None (with a warning in ``warnings`` when a track says it is ours but cannot be
    used): it must be tagged ``NM_EPOCH_TRACK=frame``, have exactly one epoch cue on
    every video frame (``frame_pts_ns``: frame presentation times, ns, increasing), and
    name the same recording as the captions when both carry an id. Its confidence is
    the one the writing alignment tagged (``NM_CONFIDENCE``), else ``approximate``."""
    from ..interop.owa import (TAG_CONFIDENCE, TAG_FRAMES, TAG_RECORDING_ID, TAG_TRACK,
                               frames_from_epoch_cues)
    tags = {str(k).upper(): str(v) for k, v in (subtitle_tags or {}).items()}
    if tags.get(TAG_TRACK) != "frame" or frame_pts_ns is None or not subtitle_cues:
        return None
    rec = tags.get(TAG_RECORDING_ID) or None
    if rec and caption_id and rec != caption_id:
        warnings.append(f"the nm epoch track names recording {rec} but the captions {caption_id}: "
                        f"track ignored")
        return None
    import numpy as np
    n = len(frame_pts_ns)
    idx, _epoch, ignored = frames_from_epoch_cues(np.asarray(frame_pts_ns, dtype=np.int64),
                                                  subtitle_cues)
    if ignored or len(idx) != n or tags.get(TAG_FRAMES, str(n)) != str(n):
        warnings.append(f"the nm epoch track has cues on {len(idx)} of {n} frames ({ignored} cue(s) "
                        f"unplaced, {tags.get(TAG_FRAMES, '?')} frames when written): the file was "
                        f"cut or re-muxed, track not used as exact frame times")
        return None
    conf = tags.get(TAG_CONFIDENCE)
    return AnchorSet("nm_epoch_track", conf if conf in ("exact", "approximate", "low") else "approximate",
                     rec or caption_id, raw_cues=list(subtitle_cues), warnings=warnings)


def choose_anchors(captions: Sequence[tuple[int, str]], sidecar: Sidecar | None,
                   subtitle_cues: Sequence[tuple[int, int, str]],
                   start_marker: tuple[int, str] | None,
                   subtitle_tags: dict | None = None, frame_pts_ns=None) -> AnchorSet | None:
    """Pick the best anchor source; None when there is nothing at all.

    ``subtitle_tags`` (the cue track's tags, ``owa.epoch_track_tags``) and ``frame_pts_ns``
    (the frames' presentation times, ns) let a per-frame nm epoch track win over captions
    alone; without them such a track is read as plain OWA cues."""
    c_segs, c_clocks, bad, _foreign = anchors_from_captions(captions)
    warnings = []
    if bad:
        warnings.append(f"{bad} NM1 caption(s) failed their checksum and were ignored")
    cap_id = _majority_id(c_segs, c_clocks)
    if cap_id is not None:
        others = {r.recording_id for r in c_segs + c_clocks} - {cap_id}
        if others:
            warnings.append(f"captions from other recordings ignored: {sorted(others)}")
        c_segs = [s for s in c_segs if s.recording_id == cap_id]
        c_clocks = [c for c in c_clocks if c.recording_id == cap_id]
    has_caps = any(s.segment == 0 for s in c_segs)
    has_side = sidecar is not None and any(s.segment == 0 for s in sidecar.segments)

    if has_caps and not has_side:
        nm = nm_epoch_track(subtitle_cues, subtitle_tags, frame_pts_ns, cap_id, warnings)
        if nm is not None:
            nm.crosscheck = {"agree": True, "problems": [], "notes": [
                "NM1 captions present but not used: they carry no stop record, the nm "
                "epoch track holds the frame times aligned from the original"]}
            return nm
    if has_caps or has_side:
        if has_caps and has_side:
            cross = crosscheck(c_segs, c_clocks, sidecar)
            if cross["agree"]:
                seg_map = {s.segment: s for s in sidecar.segments}
                seg_map.update({s.segment: s for s in c_segs})
                clocks = _merge_clocks(c_clocks, sidecar.clocks)
                return AnchorSet("captions+sidecar", "exact", cap_id,
                                 [seg_map[k] for k in sorted(seg_map)], clocks,
                                 warnings=warnings + cross["problems"], crosscheck=cross,
                                 bad_captions=bad, header=sidecar.header,
                                 stop=stop_info(sidecar),
                                 obs_pause_offsets=obs_pause_offsets(sidecar))
            warnings.append("captions and sidecar disagree (" + "; ".join(cross["problems"])
                            + "); using the captions, which travel inside the video")
            return AnchorSet("captions", "exact", cap_id, c_segs, c_clocks, warnings=warnings,
                             crosscheck=cross, bad_captions=bad)
        if has_caps:
            return AnchorSet("captions", "exact", cap_id, c_segs, c_clocks, warnings=warnings,
                             bad_captions=bad)
        if sidecar.torn_tail:
            warnings.append("sidecar ends in a torn line (OBS or the script stopped abruptly)")
        return AnchorSet("sidecar", "exact", sidecar.recording_id, list(sidecar.segments),
                         list(sidecar.clocks), warnings=warnings, header=sidecar.header,
                         stop=stop_info(sidecar), obs_pause_offsets=obs_pause_offsets(sidecar))
    if has_epoch_cues(subtitle_cues):
        return AnchorSet("owa_subtitles", "approximate", None, raw_cues=list(subtitle_cues),
                         warnings=warnings)
    if start_marker is not None:
        t, kind = start_marker
        warnings.append(f"no timing anchors in the video or a sidecar: frame 0 pinned to the "
                        f"{kind.replace('_', ' ')} (low confidence, typically off by tens of ms)")
        return AnchorSet(kind, "low", None, start_epoch_ns=t, warnings=warnings)
    return None


def _merge_clocks(a: Sequence[ClockPair], b: Sequence[ClockPair]) -> list[ClockPair]:
    seen, out = set(), []
    for c in list(a) + list(b):
        key = (c.epoch_ns, c.mono_ns)
        if key not in seen:
            seen.add(key)
            out.append(ClockPair(c.recording_id or "", c.epoch_ns, c.mono_ns))
    return sorted(out, key=lambda c: c.mono_ns)


def crosscheck(c_segs: Sequence[SegmentAnchor], c_clocks: Sequence[ClockPair], sidecar: Sidecar) -> dict:
    """Compare caption anchors with sidecar anchors. Captions may lack the records
    queued just before the recording stopped (OBS frees pending captions)."""
    problems = []
    sid = sidecar.recording_id
    cid = _majority_id(c_segs, c_clocks)
    if sid and cid and sid != cid:
        problems.append(f"recording id {cid} in captions vs {sid} in sidecar (wrong sidecar?)")
    side = {s.segment: s for s in sidecar.segments}
    for s in c_segs:
        o = side.get(s.segment)
        if o is None:
            problems.append(f"segment {s.segment} in captions only")
        elif (o.pts_base, o.frame_ns, o.interval_ns) != (s.pts_base, s.frame_ns, s.interval_ns):
            problems.append(f"segment {s.segment} differs")
    side_clocks = {(c.epoch_ns, c.mono_ns) for c in sidecar.clocks}
    missing = sum(1 for c in c_clocks if (c.epoch_ns, c.mono_ns) not in side_clocks)
    if missing:
        problems.append(f"{missing} caption clock pair(s) not in the sidecar")
    sidecar_only = [k for k in side if k not in {s.segment for s in c_segs}]
    notes = []
    if sidecar_only:
        notes.append(f"segment(s) {sidecar_only} only in the sidecar")
    return {"agree": not problems, "problems": problems, "notes": notes,
            "caption_segments": len(c_segs), "sidecar_segments": len(side),
            "caption_clock_pairs": len(c_clocks), "sidecar_clock_pairs": len(sidecar.clocks)}

#!/usr/bin/env python3
"""A small WHIP (RFC 9725) receiver for Fieldcast's integration tests.

It takes what an encoder pushes over WHIP on loopback and records it into a
Matroska file, then ffprobe can check the file. It is a test peer and not a
media server: there is one process per test, and state is kept in memory.

    whip_server.py --port PORT --out FILE.mkv [--token TOKEN]
                   [--pli-after S] [--pli-every S]
                   [--link-ice 'URL [username=U credential=P]' ...]
                   [--redirect] [--host ADDR] [--no-loopback-candidates]
                   [--aiortc-default-ciphers] [-v]

HTTP:
  POST   /whip/<name>   (and /whip2/<name>, the --redirect target)
         body: SDP offer, Content-Type application/sdp. The offer must be
         complete (non-trickle): the server adds no remote candidates later.
         -> 201, Content-Type application/sdp, body = SDP answer with all of
            the server's host candidates, Location: /whip/resource/<uuid>,
            plus one `Link: <url>; rel="ice-server"` per --link-ice.
         -> 401 on a missing or wrong bearer token (with --token),
            415 on another Content-Type, 400 on an offer that cannot be
            answered.
  DELETE /whip/resource/<uuid> -> 200 (closes the session and finalizes its
         recording), 404 for an unknown resource.
  PATCH  /whip/resource/<uuid> -> 405: trickle ICE and ICE restarts are not
         supported, which RFC 9725 section 4.3.1 lets a server answer with 405.
  OPTIONS on the endpoint -> 204 with the Link headers (handy for probing).

Recording: aiortc's own MediaRecorder decodes and re-encodes every frame
(libx264 and AAC for Matroska), so it is not used. Instead the receivers'
decoder is replaced with a pass-through and the depacketized H.264 access
units (Annex B) and Opus packets are remuxed unchanged into Matroska with
PyAV. The recorded codecs, profile and resolution are therefore exactly what
the sender sent. Video before the first IDR is dropped; the first recorded
IDR must carry SPS and PPS in band (or the offer must have
sprop-parameter-sets, which are then prepended).

The first session records to --out, the k-th (k > 1) to <stem>.<k>.mkv.
A JSON status file FILE.mkv.json (always named after --out) is rewritten
atomically on every event and at most twice a second while media flows.

The process ends with 0 on SIGTERM or SIGINT after closing every session
and finalizing every recording.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fractions
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from typing import Any, Optional

import aioice.ice
import av
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import rtcrtpreceiver
from aiortc.codecs import CODECS, init_codecs
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

log = logging.getLogger("whip_server")


# --------------------------------------------------------------------------
# aiortc adjustments
# --------------------------------------------------------------------------


class EncodedFrame:
    """What the pass-through 'decoder' hands to the track instead of a
    decoded frame: one depacketized access unit (H.264, Annex B) or one Opus
    packet, with its RTP timestamp (0-based per stream, as aiortc maps it)."""

    __slots__ = ("codec", "data", "timestamp", "clock_rate", "arrival")

    def __init__(self, codec: str, data: bytes, timestamp: int, clock_rate: int):
        self.codec = codec
        self.data = data
        self.timestamp = timestamp
        self.clock_rate = clock_rate
        self.arrival = time.monotonic()


class PassthroughDecoder:
    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.codec = codec.name.lower()
        self.clock_rate = codec.clockRate

    def decode(self, encoded_frame: Any) -> list[EncodedFrame]:
        return [
            EncodedFrame(
                self.codec,
                bytes(encoded_frame.data),
                encoded_frame.timestamp,
                self.clock_rate,
            )
        ]


# aiortc offers only ECDHE-ECDSA cipher suites. GStreamer's DTLS (1.22)
# always uses an RSA-2048 certificate, so when aiortc is the DTLS client (it
# answers a=setup:active) no suite is shared and the handshake dies with a
# fatal alert. Add the ECDHE-RSA suites, as browsers do.
DTLS_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
    b"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)


def patch_aiortc(loopback_candidates: bool, rsa_ciphers: bool) -> None:
    if rsa_ciphers:
        original_ctx = RTCCertificate._create_ssl_context

        def create_ssl_context(self, srtp_profiles):
            ctx = original_ctx(self, srtp_profiles)
            ctx.set_cipher_list(DTLS_CIPHERS)
            return ctx

        RTCCertificate._create_ssl_context = create_ssl_context

    # Hand the encoded frames through undecoded (the decoder worker thread
    # calls rtcrtpreceiver.get_decoder).
    rtcrtpreceiver.get_decoder = PassthroughDecoder

    # aiortc only offers/accepts H.264 Constrained Baseline and Baseline
    # (42e01f, 42001f). Since nothing is decoded here, also accept Main and
    # High so that an encoder sending those can be recorded as they are.
    if not CODECS["video"]:
        init_codecs()
    have = {
        c.parameters.get("profile-level-id")
        for c in CODECS["video"]
        if c.mimeType.lower() == "video/h264"
    }
    pt = max(c.payloadType for c in CODECS["video"]) + 1
    for plid in ("4d001f", "640032"):
        if plid in have:
            continue
        CODECS["video"] += [
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=pt,
                rtcpFeedback=[
                    RTCRtcpFeedback(type="nack"),
                    RTCRtcpFeedback(type="nack", parameter="pli"),
                    RTCRtcpFeedback(type="goog-remb"),
                ],
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": plid,
                },
            ),
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=pt + 1,
                parameters={"apt": pt},
            ),
        ]
        pt += 2

    # aioice never gathers 127.0.0.1 (nor ::1). Tests run on loopback, maybe
    # in a network namespace that has nothing else, so add it.
    if loopback_candidates:
        original = aioice.ice.get_host_addresses

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            addresses = original(use_ipv4, use_ipv6)
            if use_ipv4 and "127.0.0.1" not in addresses:
                addresses.insert(0, "127.0.0.1")
            return addresses

        aioice.ice.get_host_addresses = get_host_addresses


# --------------------------------------------------------------------------
# H.264 / SDP helpers
# --------------------------------------------------------------------------


def annexb_nal_types(data: bytes) -> list[int]:
    types = []
    i = 0
    n = len(data)
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= n:
            return types
        types.append(data[i + 3] & 0x1F)
        i += 3


def rtp_h264_nal_types(payload: bytes) -> list[int]:
    """NAL unit types that start in this RTP payload (RFC 6184)."""
    if not payload:
        return []
    t = payload[0] & 0x1F
    if 1 <= t <= 23:
        return [t]
    if t == 28 and len(payload) > 1:  # FU-A, only the start fragment counts
        return [payload[1] & 0x1F] if payload[1] & 0x80 else []
    if t == 24:  # STAP-A
        out, pos = [], 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(payload):
                break
            out.append(payload[pos] & 0x1F)
            pos += size
        return out
    return []


def offer_facts(offer: str) -> dict[str, Any]:
    """Facts about a WHIP offer worth asserting on in tests."""
    facts: dict[str, Any] = {
        "offer_video_codecs": [],
        "offer_audio_codecs": [],
        "offer_h264_fmtp": [],
        "offer_has_nack": False,
        "offer_has_pli": False,
        "offer_has_fir": False,
        "offer_has_transport_cc": False,
        "offer_has_remb": False,
        "offer_has_rtx": False,
        "offer_extmaps": [],
        "offer_bundle": False,
        "offer_rtcp_mux": False,
        "offer_setup": None,
        "offer_directions": [],
        "offer_candidates": [],
        "offer_end_of_candidates": False,
        "offer_ice_options": None,
    }
    kind = None
    rtpmap: dict[tuple[str, str], str] = {}
    for raw in offer.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif line.startswith("a=group:BUNDLE"):
            facts["offer_bundle"] = True
        elif line == "a=rtcp-mux":
            facts["offer_rtcp_mux"] = True
        elif line.startswith("a=setup:"):
            facts["offer_setup"] = line.split(":", 1)[1]
        elif line in ("a=sendonly", "a=sendrecv", "a=recvonly", "a=inactive"):
            facts["offer_directions"].append(f"{kind}:{line[2:]}")
        elif line.startswith("a=candidate:"):
            facts["offer_candidates"].append(line[2:])
        elif line == "a=end-of-candidates":
            facts["offer_end_of_candidates"] = True
        elif line.startswith("a=ice-options:"):
            facts["offer_ice_options"] = line.split(":", 1)[1]
        elif line.startswith("a=extmap:"):
            facts["offer_extmaps"].append(f"{kind}:{line[9:]}")
            if "transport-wide-cc" in line:
                facts["offer_has_transport_cc"] = True
        elif line.startswith("a=rtpmap:"):
            pt, enc = line[9:].split(" ", 1)
            rtpmap[(kind or "", pt)] = enc
            name = enc.split("/", 1)[0]
            if name.lower() == "rtx":
                facts["offer_has_rtx"] = True
            elif kind == "video":
                facts["offer_video_codecs"].append(name)
            elif kind == "audio":
                facts["offer_audio_codecs"].append(name)
        elif line.startswith("a=fmtp:"):
            pt, params = line[7:].split(" ", 1)
            if rtpmap.get((kind or "", pt), "").upper().startswith("H264/"):
                facts["offer_h264_fmtp"].append(params)
        elif line.startswith("a=rtcp-fb:") and kind == "video":
            fb = line[10:].split(" ", 1)[1] if " " in line[10:] else ""
            if fb == "nack":
                facts["offer_has_nack"] = True
            elif fb == "nack pli":
                facts["offer_has_pli"] = True
            elif fb == "ccm fir":
                facts["offer_has_fir"] = True
            elif fb == "transport-cc":
                facts["offer_has_transport_cc"] = True
            elif fb == "goog-remb":
                facts["offer_has_remb"] = True
    return facts


def sprop_parameter_sets(offer: str) -> bytes:
    m = re.search(r"sprop-parameter-sets=([A-Za-z0-9+/=,]+)", offer)
    if not m:
        return b""
    out = b""
    for part in m.group(1).split(","):
        try:
            out += b"\x00\x00\x00\x01" + base64.b64decode(part)
        except ValueError:
            pass
    return out


def opus_channels_from_toc(packet: bytes) -> Optional[int]:
    return (2 if packet[0] & 0x04 else 1) if packet else None


# --------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------


class Status:
    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "posts": 0,
            "redirects": 0,
            "sessions_created": 0,
            "deletes": 0,
            "delete_unknown": 0,
            "patches": 0,
            "auth_failures": 0,
            "bad_requests": 0,
            "connected": False,
            "connection_state": "new",
            "ice_state": "new",
            "dtls_state": "new",
            "video_frames": 0,
            "video_keyframes": 0,
            "video_frames_recorded": 0,
            "video_nonmonotonic_ts": 0,
            "video_width": None,
            "video_height": None,
            "audio_frames": 0,
            "audio_frames_recorded": 0,
            "audio_channels": None,
            "rtp_packets_video": 0,
            "rtp_packets_audio": 0,
            "rtp_packets_rtx": 0,
            "plis_sent": 0,
            "keyframes_after_pli": 0,
            "pli_keyframe_delays_s": [],
            "plis": [],
            "recordings": [],
            "recordings_finalized": [],
            "last_stream_name": None,
            "last_user_agent": None,
            "last_authorization": None,
            "offer_sdp": None,
            "answer_sdp": None,
        }
        self._last_write = 0.0
        self._pending: Optional[asyncio.TimerHandle] = None

    def write(self) -> None:
        self._last_write = time.monotonic()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)

    def touch(self) -> None:
        """Write soon: used for frame counters, at most twice a second."""
        if self._pending is not None:
            return
        delay = max(0.0, 0.5 - (time.monotonic() - self._last_write))
        self._pending = asyncio.get_running_loop().call_later(delay, self.write)


# --------------------------------------------------------------------------
# recorder: remux H.264 + Opus into Matroska
# --------------------------------------------------------------------------


class Recorder:
    def __init__(
        self, path: str, has_video: bool, has_audio: bool, offer: str, st: Status
    ) -> None:
        self.path = path
        self.has_video = has_video
        self.has_audio = has_audio
        self.sprop = sprop_parameter_sets(offer)
        self.offer_stereo = bool(re.search(r"[; ]stereo=1", offer))
        self.st = st
        self.container: Optional[av.container.OutputContainer] = None
        self.vstream = None
        self.astream = None
        self.origin: Optional[float] = None  # wall time of recorded t=0
        self.v_first: Optional[tuple[int, float]] = None  # (rtp ts, arrival)
        self.a_first: Optional[tuple[int, float]] = None
        self.audio_backlog: list[EncodedFrame] = []
        self.last_v_pts = -1
        self.last_a_pts = -1
        self.closed = False
        self.failed = False

    def _open(self, keyframe: Optional[EncodedFrame]) -> None:
        c = av.open(self.path, mode="w", format="matroska")
        if keyframe is not None:
            width = height = 0
            try:
                dec = av.CodecContext.create("h264", "r")
                pkt = av.Packet(keyframe.data)
                frames = dec.decode(pkt) + dec.decode(None)
                if frames:
                    width, height = frames[0].width, frames[0].height
            except av.FFmpegError as exc:
                log.warning("could not decode the first keyframe: %s", exc)
            self.st.data["video_width"] = width
            self.st.data["video_height"] = height
            # No codec context: packets are muxed as they are. PyAV takes the
            # extradata (SPS/PPS) from this stream's first packet.
            self.vstream = c.add_mux_stream("h264", width=width, height=height)
            self.vstream.time_base = fractions.Fraction(1, 90000)
        if self.has_audio:
            first = self.audio_backlog[0].data if self.audio_backlog else b""
            channels = opus_channels_from_toc(first) or (2 if self.offer_stereo else 1)
            self.st.data["audio_channels"] = channels
            # A libopus encoder context is opened (never fed) only so that
            # the stream gets a proper OpusHead as Matroska CodecPrivate.
            self.astream = c.add_stream("libopus", rate=48000)
            self.astream.layout = "stereo" if channels == 2 else "mono"
        self.container = c

    def _mux(self, stream, data: bytes, pts: int, tb: fractions.Fraction, key: bool):
        pkt = av.Packet(data)
        pkt.stream = stream
        pkt.time_base = tb
        pkt.pts = pkt.dts = pts
        if key:
            pkt.is_keyframe = True
        self.container.mux(pkt)

    def _time(self, first: tuple[int, float], ts: int, rate: int) -> float:
        return (ts - first[0]) / rate + (first[1] - self.origin)

    def add_video(self, f: EncodedFrame, keyframe: bool, has_params: bool) -> None:
        if self.closed or self.failed:
            return
        data = f.data
        if self.container is None:
            if not keyframe:
                return
            if not has_params and self.sprop:
                data = self.sprop + data
            elif not has_params:
                log.warning("first IDR has no SPS/PPS in band; file may not play")
            self.origin = f.arrival
            self.v_first = (f.timestamp, f.arrival)
            self._open(f)
            for a in self.audio_backlog:
                self._add_audio_open(a)
            self.audio_backlog = []
        if self.vstream is None:
            return
        pts = round(self._time(self.v_first, f.timestamp, 90000) * 90000)
        if pts <= self.last_v_pts:
            # B-frames (pts not monotonic) or a timestamp glitch.
            self.st.data["video_nonmonotonic_ts"] += 1
            pts = self.last_v_pts + 1
        self.last_v_pts = pts
        self._guard(self._mux, self.vstream, data, pts, fractions.Fraction(1, 90000), keyframe)
        self.st.data["video_frames_recorded"] += 1

    def add_audio(self, f: EncodedFrame) -> None:
        if self.closed or self.failed:
            return
        if self.a_first is None:
            self.a_first = (f.timestamp, f.arrival)
        if self.container is None:
            if self.has_video:
                # Wait for the first video keyframe; keep a few seconds.
                self.audio_backlog.append(f)
                del self.audio_backlog[:-250]
                return
            self.origin = f.arrival
            self._open(None)
        self._add_audio_open(f)

    def _add_audio_open(self, f: EncodedFrame) -> None:
        pts = round(self._time(self.a_first, f.timestamp, 48000) * 48000)
        if pts < 0 or pts <= self.last_a_pts:
            return  # before the first video keyframe, or a duplicate
        self.last_a_pts = pts
        self._guard(self._mux, self.astream, f.data, pts, fractions.Fraction(1, 48000), False)
        self.st.data["audio_frames_recorded"] += 1

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - keep receiving, report it
            log.error("recording %s failed: %s", self.path, exc)
            self.failed = True
            self.st.data.setdefault("recording_errors", []).append(str(exc))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.container is not None:
            try:
                self.container.close()
            except Exception as exc:  # noqa: BLE001
                log.error("finalizing %s failed: %s", self.path, exc)
                self.st.data.setdefault("recording_errors", []).append(str(exc))
            self.st.data["recordings_finalized"].append(self.path)
            log.info("recording finalized: %s", self.path)
        else:
            log.warning("no media was recorded to %s", self.path)


# --------------------------------------------------------------------------
# one WHIP session
# --------------------------------------------------------------------------


class Session:
    def __init__(self, server: "Server", rid: str, out: str, offer: str) -> None:
        self.server = server
        self.st = server.status
        self.rid = rid
        self.out = out
        self.offer = offer
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tasks: list[asyncio.Task] = []
        self.recorder: Optional[Recorder] = None
        self.video_receiver = None
        self.video_pts: set[int] = set()
        self.video_ssrc: Optional[int] = None
        self.first_video = asyncio.Event()
        self.last_key_rtp_ts: Optional[int] = None
        self.pending_plis: list[tuple[dict[str, Any], float]] = []
        self.t0 = time.monotonic()
        self.closed = False

    async def answer(self) -> str:
        pc = self.pc

        @pc.on("connectionstatechange")
        async def _on_conn() -> None:
            state = pc.connectionState
            log.info("session %s: connection %s", self.rid[:8], state)
            self.st.data["connection_state"] = state
            self.st.data["connected"] = state == "connected"
            for t in pc.getTransceivers():
                self.st.data["dtls_state"] = t.receiver.transport.state
                break
            self.st.write()
            if state == "failed":
                await self.close()

        @pc.on("iceconnectionstatechange")
        async def _on_ice() -> None:
            self.st.data["ice_state"] = pc.iceConnectionState
            self.st.write()

        tracks = []

        @pc.on("track")
        def _on_track(track) -> None:
            tracks.append(track)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=self.offer, type="offer"))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)  # gathers all candidates first
        sdp = pc.localDescription.sdp

        # payload types of the negotiated H.264 (not RTX) for the RTP tap
        kind = None
        for line in sdp.splitlines():
            if line.startswith("m="):
                kind = line[2:].split(" ", 1)[0]
            elif line.startswith("a=rtpmap:") and kind == "video":
                pt, enc = line[9:].split(" ", 1)
                if enc.upper().startswith("H264/"):
                    self.video_pts.add(int(pt))

        kinds = {t.kind for t in tracks}
        self.recorder = Recorder(
            self.out, "video" in kinds, "audio" in kinds, self.offer, self.st
        )
        for t in pc.getTransceivers():
            if t.kind == "video" and t.receiver.track is not None:
                self.video_receiver = t.receiver
                self._tap_rtp(t.receiver, video=True)
            elif t.kind == "audio":
                self._tap_rtp(t.receiver, video=False)
        for track in tracks:
            self.tasks.append(asyncio.create_task(self._consume(track)))
        if self.server.args.pli_after is not None or self.server.args.pli_every:
            self.tasks.append(asyncio.create_task(self._pli_loop()))
        if not self.video_pts and "video" in kinds:
            log.warning("no H.264 in the answer: %s", sdp)
        return sdp

    def _tap_rtp(self, receiver, video: bool) -> None:
        """Wrap the receiver's RTP entry point to count packets, learn the
        media SSRC and time keyframes at the first packet that carries them."""
        original = receiver._handle_rtp_packet

        drop_every = self.server.args.drop_video_every

        async def handle(packet, arrival_time_ms: int) -> None:
            if video:
                if packet.payload_type in self.video_pts:
                    self.st.data["rtp_packets_video"] += 1
                    # Simulated network loss, as the receiver sees it: its
                    # NACKs must bring the packet back as RTX.
                    if drop_every and self.st.data["rtp_packets_video"] % drop_every == 0:
                        self.st.data["rtp_packets_dropped"] = (
                            self.st.data.get("rtp_packets_dropped", 0) + 1
                        )
                        return
                    self.video_ssrc = packet.ssrc
                    if packet.timestamp != self.last_key_rtp_ts:
                        nals = rtp_h264_nal_types(packet.payload)
                        if 5 in nals or 7 in nals:
                            self.last_key_rtp_ts = packet.timestamp
                            self._keyframe_arrived()
                else:
                    self.st.data["rtp_packets_rtx"] += 1
            else:
                self.st.data["rtp_packets_audio"] += 1
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle

    def _keyframe_arrived(self) -> None:
        now = time.monotonic()
        if not self.pending_plis:
            return
        for p, sent in self.pending_plis:
            p["keyframe_at_s"] = round(now - self.t0, 3)
            p["delay_s"] = round(now - sent, 3)
            self.st.data["pli_keyframe_delays_s"].append(p["delay_s"])
            self.st.data["keyframes_after_pli"] += 1
            log.info("keyframe %.3f s after PLI", p["delay_s"])
        self.pending_plis = []
        self.st.write()

    async def _send_pli(self) -> None:
        r = self.video_receiver
        ssrc = self.video_ssrc
        if r is None or ssrc is None:
            log.warning("no video to send a PLI for")
            return
        if getattr(r, "_RTCRtpReceiver__rtcp_ssrc", 1) is None:
            log.warning("receiver has no RTCP SSRC; PLI not sent")
            return
        await r._send_rtcp_pli(ssrc)
        entry = {
            "sent_at_s": round(time.monotonic() - self.t0, 3),
            "media_ssrc": ssrc,
            "keyframe_at_s": None,
            "delay_s": None,
        }
        self.pending_plis.append((entry, time.monotonic()))
        self.st.data["plis"].append(entry)
        self.st.data["plis_sent"] += 1
        log.info("PLI sent to ssrc %d", ssrc)
        self.st.write()

    async def _pli_loop(self) -> None:
        args = self.server.args
        await self.first_video.wait()
        first = args.pli_after if args.pli_after is not None else args.pli_every
        await asyncio.sleep(first)
        while not self.closed:
            await self._send_pli()
            if not args.pli_every:
                return
            await asyncio.sleep(args.pli_every)

    async def _consume(self, track) -> None:
        st = self.st.data
        while True:
            try:
                f = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(f, EncodedFrame):
                continue
            if track.kind == "video":
                st["video_frames"] += 1
                nals = annexb_nal_types(f.data)
                key = 5 in nals
                if key:
                    st["video_keyframes"] += 1
                self.first_video.set()
                self.recorder.add_video(f, key, 7 in nals and 8 in nals)
            else:
                st["audio_frames"] += 1
                self.recorder.add_audio(f)
            self.st.touch()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.pc.close()
        for t in self.tasks:
            if not t.done():
                try:
                    await asyncio.wait_for(t, 2)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    t.cancel()
        if self.recorder is not None:
            self.recorder.close()
        # The resource stays until DELETE (so a DELETE after an ICE/DTLS
        # failure still gets 200); only its peer connection is gone.
        self.st.data["connected"] = any(
            s.pc.connectionState == "connected" for s in self.server.sessions.values()
        )
        self.st.write()


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.status = Status(args.out + ".json")
        self.sessions: dict[str, Session] = {}
        self.redirected: set[str] = set()
        self.session_count = 0

    def link_headers(self) -> list[str]:
        out = []
        for spec in self.args.link_ice:
            url, *attrs = spec.split()
            h = f'<{url}>; rel="ice-server"'
            kv = dict(a.split("=", 1) for a in attrs if "=" in a)
            if "username" in kv:
                h += f'; username="{kv["username"]}"'
            if "credential" in kv:
                h += f'; credential="{kv["credential"]}"; credential-type="password"'
            out.append(h)
        return out

    def authorized(self, request: web.Request) -> bool:
        self.status.data["last_authorization"] = request.headers.get("Authorization")
        if not self.args.token:
            return True
        if request.headers.get("Authorization") == f"Bearer {self.args.token}":
            return True
        self.status.data["auth_failures"] += 1
        self.status.write()
        log.info("%s %s: 401", request.method, request.path)
        return False

    def out_path(self) -> str:
        self.session_count += 1
        if self.session_count == 1:
            return self.args.out
        stem, ext = os.path.splitext(self.args.out)
        return f"{stem}.{self.session_count}{ext or '.mkv'}"

    async def post(self, request: web.Request) -> web.StreamResponse:
        st = self.status.data
        name = request.match_info["name"]
        st["posts"] += 1
        st["last_stream_name"] = name
        st["last_user_agent"] = request.headers.get("User-Agent")
        body = await request.text()
        if not self.authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if (
            self.args.redirect
            and request.path.startswith("/whip/")
            and name not in self.redirected
        ):
            self.redirected.add(name)
            st["redirects"] += 1
            self.status.write()
            log.info("POST %s: 307 -> /whip2/%s", request.path, name)
            return web.Response(status=307, headers={"Location": f"/whip2/{name}"})
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            st["bad_requests"] += 1
            self.status.write()
            return web.Response(status=415, text="Content-Type must be application/sdp\n")
        st.update(offer_facts(body))
        st["offer_sdp"] = body
        rid = str(uuid.uuid4())
        out = self.out_path()
        session = Session(self, rid, out, body)
        try:
            answer = await session.answer()
        except Exception as exc:  # noqa: BLE001 - report any offer problem as 400
            log.warning("POST %s: offer rejected: %s", request.path, exc)
            st["bad_requests"] += 1
            st.setdefault("offer_errors", []).append(str(exc))
            self.status.write()
            await session.pc.close()
            return web.Response(status=400, text=f"cannot answer the offer: {exc}\n")
        self.sessions[rid] = session
        st["sessions_created"] += 1
        st["answer_sdp"] = answer
        st["recordings"].append(out)
        self.status.write()
        headers = [
            ("Location", f"/whip/resource/{rid}"),
            ("Content-Type", "application/sdp"),
        ] + [("Link", h) for h in self.link_headers()]
        resp = web.Response(status=201, body=answer.encode())
        for k, v in headers:
            resp.headers.add(k, v)
        log.info("POST %s: 201, resource %s, recording %s", request.path, rid, out)
        return resp

    async def delete(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        session = self.sessions.pop(request.match_info["rid"], None)
        if session is None:
            self.status.data["delete_unknown"] += 1
            self.status.write()
            log.info("DELETE %s: 404", request.path)
            return web.Response(status=404)
        self.status.data["deletes"] += 1
        await session.close()
        log.info("DELETE %s: 200", request.path)
        return web.Response(status=200)

    async def patch(self, request: web.Request) -> web.StreamResponse:
        # Trickle ICE and ICE restarts are not supported: 405, as RFC 9725
        # section 4.3.1 allows. Clients must send a complete offer.
        self.status.data["patches"] += 1
        self.status.write()
        if request.match_info["rid"] not in self.sessions:
            return web.Response(status=404)
        return web.Response(status=405, headers={"Allow": "DELETE"})

    async def options(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(status=204)
        resp.headers["Accept-Post"] = "application/sdp"
        for h in self.link_headers():
            resp.headers.add("Link", h)
        return resp

    async def close_all(self) -> None:
        for s in list(self.sessions.values()):
            await s.close()
        self.status.write()


async def main_async(args: argparse.Namespace) -> int:
    server = Server(args)
    server.status.write()
    app = web.Application(client_max_size=1 << 20)
    for prefix in ("/whip/", "/whip2/"):
        app.router.add_post(prefix + "{name}", server.post)
        app.router.add_route("OPTIONS", prefix + "{name}", server.options)
    app.router.add_delete("/whip/resource/{rid}", server.delete)
    app.router.add_patch("/whip/resource/{rid}", server.patch)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    log.info("listening on http://%s:%d/whip/<name>, recording to %s", args.host, args.port, args.out)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await server.close_all()
    await runner.cleanup()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description="WHIP test receiver (aiortc)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1", help="HTTP listen address")
    p.add_argument("--out", required=True, help="Matroska file to record to")
    p.add_argument("--token", help="require Authorization: Bearer TOKEN")
    p.add_argument("--pli-after", type=float, help="send a PLI S s after video starts")
    p.add_argument("--pli-every", type=float, help="send a PLI every S s")
    p.add_argument(
        "--drop-video-every",
        type=int,
        default=0,
        metavar="N",
        help="discard every Nth video RTP packet on arrival (simulated loss; "
        "retransmissions are not discarded)",
    )
    p.add_argument(
        "--link-ice",
        action="append",
        default=[],
        metavar="'URL [username=U credential=P]'",
        help='add a Link: <URL>; rel="ice-server" header to the 201 answer',
    )
    p.add_argument(
        "--redirect",
        action="store_true",
        help="answer the first POST to /whip/<name> with 307 to /whip2/<name>",
    )
    p.add_argument(
        "--no-loopback-candidates",
        action="store_true",
        help="do not add 127.0.0.1 to the ICE host candidates",
    )
    p.add_argument(
        "--aiortc-default-ciphers",
        action="store_true",
        help="keep aiortc's ECDSA-only DTLS cipher list (fails with GStreamer "
        "1.22's RSA certificate when the server is the DTLS client)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="whip_server: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        for name in ("aioice", "aiortc", "aiohttp"):
            logging.getLogger(name).setLevel(logging.WARNING)
    patch_aiortc(
        loopback_candidates=not args.no_loopback_candidates,
        rsa_ciphers=not args.aiortc_default_ciphers,
    )
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

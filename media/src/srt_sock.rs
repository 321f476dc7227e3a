//! A live SRT sender on libsrt itself ([`crate::srt_ffi`]), fed MPEG-TS
//! chunks (1316 bytes, seven TS packets: one SRT payload) by the output code.
//!
//! Compared with GStreamer's `srtsink` this gives the operator what libsrt
//! knows — send buffer in ms, packets in flight, the link capacity estimate,
//! the negotiated latency — and failures named by cause (wrong passphrase,
//! stream id refused, no answer, address in use) instead of "Connection does
//! not exist".
//!
//! Threading: every method takes `&self` and may be called from any thread
//! (libsrt's API is thread-safe, docs/API/API-functions.md); wrap the sender
//! in an `Arc` to feed it from one thread and read its stats from another.
//! [`SrtSender::start`] blocks for up to the connect timeout in caller and
//! rendezvous modes: call it from a blocking thread
//! (`tokio::task::spawn_blocking`), not from an async task. [`SrtSender::send`]
//! never blocks (SRTO_SNDSYN = 0): a full send buffer is reported so the
//! feeder can drop to the next keyframe.
//!
//! Protocol references: the SRT Internet-Draft (draft-sharabayko-srt,
//! "The SRT Protocol"), and libsrt's docs/API/API-socket-options.md,
//! docs/API/statistics.md and docs/API/rejection-codes.md.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::srt_ffi as ffi;

/// One SRT live-mode payload: seven 188-byte MPEG-TS packets
/// (SRT_LIVE_DEF_PLSIZE). Longer chunks given to [`SrtSender::send`] are cut
/// into pieces of this size.
pub const PAYLOAD_SIZE: usize = 1316;

/// libsrt's own default connect timeout for a caller (SRTO_CONNTIMEO).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the accept thread waits in `srt_epoll_uwait` before looking at
/// its stop flag and at the health of connected callers: the bound on how
/// long dropping a listener takes.
const ACCEPT_POLL_MS: i64 = 100;

/// Callers that may wait in the listener's queue before we accept them.
const LISTEN_BACKLOG: c_int = 16;

/// SRTO_PASSPHRASE takes 10 to 79 bytes (API-socket-options.md).
const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;
/// SRTO_STREAMID takes at most 512 bytes (API-socket-options.md).
const MAX_STREAMID: usize = 512;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// How the connection is made (libsrt's three connection modes,
/// draft-sharabayko-srt section 4.3 "Handshake").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Connect to a listener at `host:port` (a name or an IP address).
    Caller { host: String, port: u16 },
    /// Wait for callers on `bind:port` (`0.0.0.0` or `::` for every
    /// address; `::` accepts IPv4 too). Port 0 picks a free port, see
    /// [`SrtSender::local_addr`].
    Listener { bind: IpAddr, port: u16 },
    /// Both ends call each other from and to the same port: ours is
    /// `local:port`, the peer's `host:port`. `local` may be the wildcard
    /// (`0.0.0.0`), but the peer must send to an address of ours.
    Rendezvous {
        local: IpAddr,
        host: String,
        port: u16,
    },
}

/// What [`SrtSender::start`] needs. `Debug` never shows the passphrase or
/// the stream id (ingest services use the stream id as the stream key).
#[derive(Clone, PartialEq, Eq)]
pub struct SrtSenderConfig {
    pub mode: Mode,
    /// SRTO_PASSPHRASE: 10 to 79 bytes; `None` for an unencrypted stream.
    pub passphrase: Option<String>,
    /// SRTO_PBKEYLEN: AES key length in bytes, 16, 24 or 32 (libsrt's
    /// default with a passphrase is 16). Only with a passphrase.
    pub pbkeylen: Option<u8>,
    /// SRTO_STREAMID, up to 512 bytes: sent to the listener in the
    /// handshake (caller and rendezvous). A listener has no use for it:
    /// each caller brings its own.
    pub streamid: Option<String>,
    /// SRTO_LATENCY in ms (libsrt's default is 120): the TSBPD delay we
    /// propose; each direction uses the larger of both sides' proposals
    /// (draft-sharabayko-srt, "TSBPD"; see `negotiated_latency_ms`).
    pub latency_ms: Option<u32>,
    /// Caller mode only: the local address to send from, to pick the
    /// interface on a multi-homed box. Listener and rendezvous name their
    /// local address in [`Mode`].
    pub adapter: Option<IpAddr>,
    /// SRTO_CONNTIMEO: how long a caller or rendezvous waits for the
    /// handshake to complete. Set explicitly, so rendezvous does not get
    /// libsrt's tenfold default.
    pub connect_timeout: Duration,
}

impl SrtSenderConfig {
    /// A configuration with libsrt's defaults: no encryption, no stream id,
    /// default latency, a 3 s connect timeout.
    pub fn new(mode: Mode) -> Self {
        SrtSenderConfig {
            mode,
            passphrase: None,
            pbkeylen: None,
            streamid: None,
            latency_ms: None,
            adapter: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The sender configuration for a validated SRT target, as `srtsink`
    /// was set up from it: a listener binds to the target's host (every
    /// address when empty, else the adapter's), a rendezvous binds to the
    /// adapter (every address when none).
    pub fn from_target(t: &crate::srt::SrtTarget) -> Result<Self, SrtError> {
        use crate::srt::SrtMode;
        let mode = match t.mode {
            SrtMode::Caller => Mode::Caller {
                host: t.host.clone(),
                port: t.port,
            },
            SrtMode::Listener => {
                let bind = if t.host.is_empty() {
                    t.adapter.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
                } else {
                    t.host.parse().map_err(|_| {
                        SrtError::Config(format!(
                            "a listener binds to an IP address, '{}' is not one",
                            t.host
                        ))
                    })?
                };
                Mode::Listener { bind, port: t.port }
            }
            SrtMode::Rendezvous => Mode::Rendezvous {
                local: t.adapter.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                host: t.host.clone(),
                port: t.port,
            },
        };
        Ok(SrtSenderConfig {
            mode: mode.clone(),
            passphrase: t.passphrase().map(str::to_owned),
            pbkeylen: t.pbkeylen,
            streamid: t.streamid.clone(),
            latency_ms: t.latency_ms,
            adapter: match mode {
                Mode::Caller { .. } => t.adapter,
                _ => None,
            },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// Checks what libsrt would refuse with a vaguer message, and what it
    /// would silently accept but misbehave on. Messages carry lengths, never
    /// the secret values.
    fn validate(&self) -> Result<(), SrtError> {
        let cfg = |m: String| Err(SrtError::Config(m));
        match &self.mode {
            Mode::Caller { host, port } | Mode::Rendezvous { host, port, .. } => {
                if host.is_empty() {
                    return cfg("the peer's host is empty".into());
                }
                if *port == 0 {
                    return cfg(format!("{} has port 0", host_port(host, *port)));
                }
            }
            Mode::Listener { .. } => {}
        }
        if self.adapter.is_some() && !matches!(self.mode, Mode::Caller { .. }) {
            return cfg(
                "adapter is for caller mode; a listener or rendezvous names its local address in its mode"
                    .into(),
            );
        }
        if let Some(p) = &self.passphrase {
            if !PASSPHRASE_LEN.contains(&p.len()) {
                return cfg(format!(
                    "passphrase has {} bytes, SRT needs 10 to 79",
                    p.len()
                ));
            }
            if p.contains('\0') {
                return cfg("passphrase contains a NUL byte".into());
            }
        }
        match self.pbkeylen {
            None => {}
            Some(_) if self.passphrase.is_none() => {
                return cfg("pbkeylen is set but there is no passphrase".into());
            }
            Some(16 | 24 | 32) => {}
            Some(other) => return cfg(format!("pbkeylen {other} is not one of 16, 24, 32")),
        }
        if let Some(id) = &self.streamid {
            if id.len() > MAX_STREAMID {
                return cfg(format!(
                    "streamid has {} bytes, libsrt allows at most {MAX_STREAMID}",
                    id.len()
                ));
            }
            if id.contains('\0') {
                return cfg("streamid contains a NUL byte".into());
            }
        }
        if let Some(l) = self.latency_ms
            && i32::try_from(l).is_err()
        {
            return cfg(format!("latency {l} ms is out of range"));
        }
        if self.connect_timeout.is_zero()
            || i32::try_from(self.connect_timeout.as_millis()).is_err()
        {
            return cfg(format!(
                "connect timeout {:?} is out of range",
                self.connect_timeout
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for SrtSenderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("SrtSenderConfig")
            .field("mode", &self.mode)
            .field("passphrase", &redact(&self.passphrase))
            .field("pbkeylen", &self.pbkeylen)
            .field("streamid", &redact(&self.streamid))
            .field("latency_ms", &self.latency_ms)
            .field("adapter", &self.adapter)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why the sender could not start or send. Messages name the peer as
/// configured (`host:port`) and the cause as an operator would fix it; they
/// never contain the passphrase or the stream id.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SrtError {
    /// The configuration cannot work (checked before touching the network).
    #[error("SRT configuration: {0}")]
    Config(String),
    /// The peer's host name did not resolve.
    #[error("resolving {host}: {reason}")]
    Resolve { host: String, reason: String },
    /// The local address could not be bound (listener, rendezvous, caller
    /// with an adapter).
    #[error("binding {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    /// The handshake got no answer within the connect timeout
    /// (SRT_ENOSERVER / SRT_REJ_TIMEOUT).
    #[error("no answer from {peer} within {} (connection timed out)", human_duration(*.timeout))]
    Timeout { peer: String, timeout: Duration },
    /// The peer answered and refused the connection; `code` is libsrt's
    /// reject reason (SRT_REJ_*, or an access-control code >= 1000).
    #[error("{peer} rejected the connection: {reason}")]
    Rejected {
        peer: String,
        code: i32,
        reason: String,
    },
    /// The peer refused the stream id we sent (SRT_REJ_PEER or an
    /// access-control code, with a stream id set).
    #[error("{peer} refused the stream id: {reason}")]
    StreamIdRefused {
        peer: String,
        code: i32,
        reason: String,
    },
    /// An established connection broke (peer gone, idle timeout, shutdown).
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// Any other libsrt failure: what we were doing, and libsrt's message.
    #[error("{what}: {message} (SRT error {code})")]
    Srt {
        what: String,
        code: i32,
        message: String,
    },
}

/// `3 s`, `2.5 s`, `500 ms`.
fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// libsrt's error state of this thread right after a failed call
/// (srt_getlasterror is thread-local in libsrt).
#[derive(Debug)]
struct LastError {
    code: c_int,
    errno: c_int,
    message: String,
}

fn last_error() -> LastError {
    let mut errno: c_int = 0;
    // SAFETY: `errno` is a valid, writable c_int for the duration of the
    // call; libsrt writes the system errno of the failure into it.
    let code = unsafe { ffi::srt_getlasterror(&mut errno) };
    // SAFETY: srt_getlasterror_str takes no arguments and returns this
    // thread's NUL-terminated error text, valid until the next libsrt call
    // on this thread; cstr_lossy copies it at once.
    let message = unsafe { cstr_lossy(ffi::srt_getlasterror_str()) };
    LastError {
        code,
        errno,
        message: message.trim_end_matches('.').to_string(),
    }
}

/// A copy of a C string from libsrt, or "" for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for the duration of the call.
unsafe fn cstr_lossy(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract; the
    // text is copied before returning.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// libsrt's text for an error code.
fn strerror(code: c_int) -> String {
    // SAFETY: srt_strerror accepts any code and returns a NUL-terminated
    // string valid until the next call on this thread; copied at once.
    let text = unsafe { cstr_lossy(ffi::srt_strerror(code, 0)) };
    text.trim_end_matches('.').to_string()
}

fn srt_error(what: impl Into<String>, e: LastError) -> SrtError {
    SrtError::Srt {
        what: what.into(),
        code: e.code,
        message: e.message,
    }
}

/// libsrt's name for a reject reason and what it means to an operator.
/// Codes: srt.h `SRT_REJECT_REASON` (below 1000) and access_control.h
/// `SRT_REJX_*` (1000 + an HTTP-like status), explained in
/// docs/API/rejection-codes.md.
fn reject_info(code: c_int) -> Option<(&'static str, &'static str)> {
    Some(match code {
        ffi::SRT_REJ_UNKNOWN => ("SRT_REJ_UNKNOWN", "no reason known"),
        ffi::SRT_REJ_SYSTEM => ("SRT_REJ_SYSTEM", "system error at the peer"),
        ffi::SRT_REJ_PEER => ("SRT_REJ_PEER", "refused by the peer, no reason given"),
        ffi::SRT_REJ_RESOURCE => ("SRT_REJ_RESOURCE", "the peer ran out of resources"),
        ffi::SRT_REJ_ROGUE => ("SRT_REJ_ROGUE", "the handshake could not be interpreted"),
        ffi::SRT_REJ_BACKLOG => ("SRT_REJ_BACKLOG", "the listener's queue is full"),
        ffi::SRT_REJ_IPE => ("SRT_REJ_IPE", "internal error at the peer"),
        ffi::SRT_REJ_CLOSE => ("SRT_REJ_CLOSE", "the listener is closing"),
        ffi::SRT_REJ_VERSION => ("SRT_REJ_VERSION", "the peer requires a newer SRT version"),
        ffi::SRT_REJ_RDVCOOKIE => (
            "SRT_REJ_RDVCOOKIE",
            "rendezvous cookie collision, both sides use the same address",
        ),
        ffi::SRT_REJ_BADSECRET => ("SRT_REJ_BADSECRET", "wrong passphrase"),
        ffi::SRT_REJ_UNSECURE => (
            "SRT_REJ_UNSECURE",
            "encryption mismatch, only one side has a passphrase",
        ),
        ffi::SRT_REJ_MESSAGEAPI => ("SRT_REJ_MESSAGEAPI", "message API setting differs"),
        ffi::SRT_REJ_CONGESTION => (
            "SRT_REJ_CONGESTION",
            "congestion control differs (is the peer in file mode?)",
        ),
        ffi::SRT_REJ_FILTER => ("SRT_REJ_FILTER", "packet filter (FEC) settings differ"),
        ffi::SRT_REJ_GROUP => ("SRT_REJ_GROUP", "group settings differ"),
        ffi::SRT_REJ_TIMEOUT => ("SRT_REJ_TIMEOUT", "timed out"),
        ffi::SRT_REJX_FALLBACK => ("SRT_REJX_FALLBACK", "refused by its access control"),
        ffi::SRT_REJX_KEY_NOTSUP => (
            "SRT_REJX_KEY_NOTSUP",
            "a key in the stream id is not supported",
        ),
        ffi::SRT_REJX_FILEPATH => ("SRT_REJX_FILEPATH", "no such file path"),
        ffi::SRT_REJX_HOSTNOTFOUND => ("SRT_REJX_HOSTNOTFOUND", "unknown host (h=)"),
        ffi::SRT_REJX_BAD_REQUEST => ("SRT_REJX_BAD_REQUEST", "bad request, malformed stream id"),
        ffi::SRT_REJX_UNAUTHORIZED => (
            "SRT_REJX_UNAUTHORIZED",
            "unauthorized, authentication failed",
        ),
        ffi::SRT_REJX_OVERLOAD => ("SRT_REJX_OVERLOAD", "overloaded or credit exceeded"),
        ffi::SRT_REJX_FORBIDDEN => ("SRT_REJX_FORBIDDEN", "forbidden"),
        ffi::SRT_REJX_NOTFOUND => ("SRT_REJX_NOTFOUND", "not found"),
        ffi::SRT_REJX_BAD_MODE => ("SRT_REJX_BAD_MODE", "mode (m=) not supported"),
        ffi::SRT_REJX_UNACCEPTABLE => ("SRT_REJX_UNACCEPTABLE", "parameters not acceptable"),
        ffi::SRT_REJX_CONFLICT => (
            "SRT_REJX_CONFLICT",
            "conflict, the resource is already in use (already published?)",
        ),
        ffi::SRT_REJX_NOTSUP_MEDIA => ("SRT_REJX_NOTSUP_MEDIA", "media type (t=) not supported"),
        ffi::SRT_REJX_LOCKED => ("SRT_REJX_LOCKED", "the resource is locked"),
        ffi::SRT_REJX_FAILED_DEPEND => {
            ("SRT_REJX_FAILED_DEPEND", "a session it depends on is gone")
        }
        ffi::SRT_REJX_ISE => ("SRT_REJX_ISE", "internal server error"),
        ffi::SRT_REJX_UNIMPLEMENTED => ("SRT_REJX_UNIMPLEMENTED", "not implemented"),
        ffi::SRT_REJX_GW => ("SRT_REJX_GW", "the gateway's upstream refused it"),
        ffi::SRT_REJX_DOWN => ("SRT_REJX_DOWN", "service down"),
        ffi::SRT_REJX_VERSION => ("SRT_REJX_VERSION", "SRT version not supported"),
        ffi::SRT_REJX_NOROOM => ("SRT_REJX_NOROOM", "no room to store the stream"),
        _ => return None,
    })
}

/// The error for a connection the peer refused with reject reason `code`.
///
/// With a stream id sent, a refusal that gives no specific reason is the
/// listener's application turning the stream id down: older peers report
/// it as SRT_REJ_PEER, and libsrt 1.5.1 reports a listener callback that
/// refuses without setting a code (GStreamer's srtsrc, for one) as
/// SRT_REJ_ROGUE. Access-control codes (>= 1000) are about the stream id by
/// definition (SRT Access Control guidelines).
fn rejection(peer: &str, code: c_int, timeout: Duration, streamid_set: bool) -> SrtError {
    if code == ffi::SRT_REJ_TIMEOUT {
        return SrtError::Timeout {
            peer: peer.to_string(),
            timeout,
        };
    }
    let access = code >= ffi::SRT_REJC_PREDEFINED;
    let vague = matches!(code, ffi::SRT_REJ_PEER | ffi::SRT_REJ_ROGUE);
    let reason = match reject_info(code) {
        Some((name, _)) if vague && streamid_set => format!("no reason given ({name})"),
        Some((name, text)) if access => format!("{text} ({name}, {code})"),
        Some((name, text)) => format!("{text} ({name})"),
        None if code >= ffi::SRT_REJC_USERDEFINED => format!("application-defined code {code}"),
        None if access => format!("access control code {code}"),
        None => {
            // SAFETY: srt_rejectreason_str accepts any int and returns a
            // static NUL-terminated string (a generic text for unknown
            // values), copied at once.
            let text = unsafe { cstr_lossy(ffi::srt_rejectreason_str(code)) };
            format!("{text} (reject reason {code})")
        }
    };
    let peer = peer.to_string();
    if streamid_set && (access || vague) {
        SrtError::StreamIdRefused { peer, code, reason }
    } else {
        SrtError::Rejected { peer, code, reason }
    }
}

/// Why a bind failed, from the errno libsrt kept of the system call.
fn bind_reason(e: &LastError) -> String {
    match e.errno {
        libc::EADDRINUSE => "address in use".into(),
        libc::EADDRNOTAVAIL => "address not available on this machine".into(),
        libc::EACCES => "permission denied".into(),
        _ => match e.code {
            ffi::SRT_EDUPLISTEN => "address in use (another SRT listener in this process)".into(),
            ffi::SRT_EBINDCONFLICT => {
                "address in use (conflicts with another SRT socket in this process)".into()
            }
            _ => e.message.clone(),
        },
    }
}

fn is_bind_failure(code: c_int) -> bool {
    matches!(
        code,
        ffi::SRT_ESOCKFAIL | ffi::SRT_EDUPLISTEN | ffi::SRT_EBINDCONFLICT
    )
}

/// Errors of `srt_send` that mean the connection is gone for good.
fn is_connection_gone(code: c_int) -> bool {
    matches!(
        code,
        ffi::SRT_ECONNLOST | ffi::SRT_ENOCONN | ffi::SRT_EINVSOCK | ffi::SRT_ESCLOSED
    )
}

// ---------------------------------------------------------------------------
// Library start-up and logging
// ---------------------------------------------------------------------------

static STARTUP: OnceLock<Result<(), SrtError>> = OnceLock::new();

/// `srt_startup` once per process (it starts libsrt's garbage-collector
/// thread; libsrt counts calls, so GStreamer's SRT plugin calling it too is
/// fine). `srt_cleanup` is never called: other users (GStreamer) may still
/// hold sockets, and process exit releases everything.
fn startup() -> Result<(), SrtError> {
    STARTUP
        .get_or_init(|| {
            // SAFETY: no arguments; safe to call from any thread, returns
            // 0 (started), 1 (already started) or -1.
            if unsafe { ffi::srt_startup() } < 0 {
                return Err(srt_error("starting libsrt", last_error()));
            }
            install_log_handler();
            Ok(())
        })
        .clone()
}

/// Sends libsrt's own log lines (warnings and worse) to `tracing` under the
/// target `libsrt` instead of straight to stderr. The handler is global to
/// the library: GStreamer's SRT plugin, which shares this libsrt, installs
/// its own when it loads, and whichever came last wins; both are fine.
fn install_log_handler() {
    // SAFETY: `srt_log` has the SRT_LOG_HANDLER_FN signature, does not
    // unwind, and ignores the opaque pointer (NULL); it is a plain function
    // that lives as long as the process. The flags and level are plain ints.
    unsafe {
        ffi::srt_setlogflags(
            ffi::SRT_LOGF_DISABLE_TIME
                | ffi::SRT_LOGF_DISABLE_THREADNAME
                | ffi::SRT_LOGF_DISABLE_SEVERITY
                | ffi::SRT_LOGF_DISABLE_EOL,
        );
        ffi::srt_setloglevel(ffi::LOG_WARNING);
        ffi::srt_setloghandler(std::ptr::null_mut(), Some(srt_log));
    }
}

/// libsrt's log callback (SRT_LOG_HANDLER_FN), called on libsrt's threads.
extern "C" fn srt_log(
    _opaque: *mut c_void,
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    // SAFETY: libsrt passes NULL or NUL-terminated strings that live for
    // the duration of the callback; both are copied here.
    let (message, area) = unsafe { (cstr_lossy(message), cstr_lossy(area)) };
    // A panicking tracing subscriber must not unwind into libsrt (that
    // would abort the process): log lines are not worth that.
    let _ = catch_unwind(|| {
        let message = message.trim();
        match level {
            l if l <= ffi::LOG_ERR => tracing::error!(target: "libsrt", area, "{message}"),
            ffi::LOG_WARNING => tracing::warn!(target: "libsrt", area, "{message}"),
            ffi::LOG_NOTICE => tracing::info!(target: "libsrt", area, "{message}"),
            _ => tracing::debug!(target: "libsrt", area, "{message}"),
        }
    });
}

// ---------------------------------------------------------------------------
// Socket addresses
// ---------------------------------------------------------------------------

/// A `struct sockaddr_in`/`sockaddr_in6` built from a Rust address, to pass
/// to libsrt by pointer and length.
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    fn new(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            RawAddr::V4(a) => (a as *const libc::sockaddr_in).cast(),
            RawAddr::V6(a) => (a as *const libc::sockaddr_in6).cast(),
        }
    }

    fn len(&self) -> c_int {
        let n = match self {
            RawAddr::V4(_) => size_of::<libc::sockaddr_in>(),
            RawAddr::V6(_) => size_of::<libc::sockaddr_in6>(),
        };
        // 16 or 28: always fits.
        n as c_int
    }
}

/// The Rust address in a `sockaddr_storage` libsrt filled in, if it is
/// IPv4 or IPv6 and long enough.
fn from_storage(s: &libc::sockaddr_storage, len: c_int) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?;
    match c_int::from(s.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned
            // for any sockaddr type, and the family says it holds a
            // sockaddr_in of the length libsrt reported.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data (integers and byte
    // arrays), for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Resolves `host:port`, keeping only addresses of `family` if given.
fn resolve(host: &str, port: u16, family: Option<IpAddr>) -> Result<SocketAddr, SrtError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| SrtError::Resolve {
            host: host.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    let fitting = addrs
        .iter()
        .find(|a| family.is_none_or(|f| f.is_ipv4() == a.is_ipv4()));
    match (fitting, family) {
        (Some(a), _) => Ok(*a),
        (None, Some(f)) if !addrs.is_empty() => Err(SrtError::Config(format!(
            "{host} has no {} address to reach from {f}",
            if f.is_ipv4() { "IPv4" } else { "IPv6" }
        ))),
        _ => Err(SrtError::Resolve {
            host: host.to_string(),
            reason: "no address".into(),
        }),
    }
}

// ---------------------------------------------------------------------------
// Owned libsrt handles
// ---------------------------------------------------------------------------

/// An SRT socket we own: closed on drop. The id is an `int` handle into
/// libsrt's socket table; libsrt serialises access to it internally, so
/// sharing `&Socket` between threads is sound.
#[derive(Debug)]
struct Socket(ffi::SRTSOCKET);

impl Socket {
    fn create() -> Result<Self, SrtError> {
        // SAFETY: no arguments; returns a new socket id or SRT_INVALID_SOCK.
        let s = unsafe { ffi::srt_create_socket() };
        if s == ffi::SRT_INVALID_SOCK {
            return Err(srt_error("creating an SRT socket", last_error()));
        }
        Ok(Socket(s))
    }

    fn set_raw(
        &self,
        opt: ffi::SRT_SOCKOPT,
        name: &str,
        val: *const c_void,
        len: c_int,
    ) -> Result<(), SrtError> {
        // SAFETY: `val` points to `len` readable bytes owned by the caller
        // for the duration of the call; libsrt copies the value.
        if unsafe { ffi::srt_setsockflag(self.0, opt, val, len) } == ffi::SRT_ERROR {
            return Err(srt_error(format!("setting {name}"), last_error()));
        }
        Ok(())
    }

    fn set_int(&self, opt: ffi::SRT_SOCKOPT, name: &str, v: i32) -> Result<(), SrtError> {
        self.set_raw(
            opt,
            name,
            (&v as *const i32).cast(),
            size_of::<i32>() as c_int,
        )
    }

    /// Options typed `bool` in API-socket-options.md take a C `bool`
    /// (one byte, the same representation as Rust's).
    fn set_bool(&self, opt: ffi::SRT_SOCKOPT, name: &str, v: bool) -> Result<(), SrtError> {
        self.set_raw(
            opt,
            name,
            (&v as *const bool).cast(),
            size_of::<bool>() as c_int,
        )
    }

    /// String options take the bytes and their length, no terminator.
    fn set_str(&self, opt: ffi::SRT_SOCKOPT, name: &str, v: &str) -> Result<(), SrtError> {
        // Lengths were validated (<= 512); the conversion cannot fail.
        let len = c_int::try_from(v.len()).unwrap_or(c_int::MAX);
        self.set_raw(opt, name, v.as_ptr().cast(), len)
    }

    fn get_int(&self, opt: ffi::SRT_SOCKOPT) -> Option<i32> {
        let mut v: i32 = 0;
        let mut len = size_of::<i32>() as c_int;
        // SAFETY: `v` and `len` are valid and writable; libsrt writes at
        // most `len` bytes into `v` and the written length into `len`.
        let rc =
            unsafe { ffi::srt_getsockflag(self.0, opt, (&mut v as *mut i32).cast(), &mut len) };
        (rc != ffi::SRT_ERROR).then_some(v)
    }

    fn state(&self) -> ffi::SRT_SOCKSTATUS {
        // SAFETY: any id is accepted; unknown ids give SRTS_NONEXIST.
        unsafe { ffi::srt_getsockstate(self.0) }
    }

    fn connected(&self) -> bool {
        self.state() == ffi::SRTS_CONNECTED
    }

    /// Statistics with the buffer figures as they are now rather than
    /// libsrt's moving averages (statistics.md, "instantaneous"). `clear`
    /// starts a new interval for the interval figures (`mbpsSendRate` is
    /// the rate since the previous clearing read).
    fn stats(&self, clear: bool) -> Option<ffi::SRT_TRACEBSTATS> {
        let mut perf = ffi::SRT_TRACEBSTATS::default();
        // SAFETY: `perf` is a valid, writable SRT_TRACEBSTATS with the
        // layout of srt.h 1.5 (size checked by a unit test in srt_ffi).
        let rc = unsafe { ffi::srt_bistats(self.0, &mut perf, c_int::from(clear), 1) };
        (rc != ffi::SRT_ERROR).then_some(perf)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        let mut s = zeroed_storage();
        let mut len = size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: `s` is a writable sockaddr_storage of `len` bytes; libsrt
        // writes the address and its length.
        let rc = unsafe {
            ffi::srt_getsockname(
                self.0,
                (&mut s as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if rc == ffi::SRT_ERROR {
            return None;
        }
        from_storage(&s, len)
    }

    /// Binds to `addr`; an IPv6 wildcard must state IPV6ONLY first
    /// (API-functions.md, srt_bind): we take IPv4 too.
    fn bind(&self, addr: SocketAddr) -> Result<(), SrtError> {
        self.prepare_local(addr)?;
        let raw = RawAddr::new(addr);
        // SAFETY: `raw` is a valid sockaddr of `raw.len()` bytes, alive for
        // the call.
        if unsafe { ffi::srt_bind(self.0, raw.as_ptr(), raw.len()) } == ffi::SRT_ERROR {
            let e = last_error();
            return Err(SrtError::Bind {
                addr,
                reason: bind_reason(&e),
            });
        }
        Ok(())
    }

    fn prepare_local(&self, addr: SocketAddr) -> Result<(), SrtError> {
        if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
            self.set_int(ffi::SRTO_IPV6ONLY, "SRTO_IPV6ONLY", 0)?;
        }
        Ok(())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: we own this id and nothing uses it after drop. In live
        // mode SRTO_LINGER is 0, so this does not wait for unsent data
        // (that is what `SrtSender::flush` is for).
        if unsafe { ffi::srt_close(self.0) } == ffi::SRT_ERROR {
            tracing::debug!(socket = self.0, error = %last_error().message, "srt_close failed");
        }
    }
}

/// An SRT epoll container we own: released on drop.
struct Epoll(c_int);

impl Epoll {
    fn for_accepting(listener: &Socket) -> Result<Self, SrtError> {
        // SAFETY: no arguments; returns an epoll id or -1.
        let eid = unsafe { ffi::srt_epoll_create() };
        if eid < 0 {
            return Err(srt_error("creating an SRT epoll", last_error()));
        }
        let ep = Epoll(eid);
        let events = ffi::SRT_EPOLL_IN | ffi::SRT_EPOLL_ERR;
        // SAFETY: `events` is a valid int for the call; both ids are ours.
        if unsafe { ffi::srt_epoll_add_usock(ep.0, listener.0, &events) } == ffi::SRT_ERROR {
            return Err(srt_error("watching the listener", last_error()));
        }
        Ok(ep)
    }

    /// Waits up to `ms` for the listener to have a caller to accept.
    /// Ok(true): something to accept (or an error to look at).
    fn wait(&self, ms: i64) -> Result<bool, LastError> {
        let mut ev = [ffi::SRT_EPOLL_EVENT::default(); 1];
        // SAFETY: `ev` holds 1 writable SRT_EPOLL_EVENT, as the size says.
        let n = unsafe { ffi::srt_epoll_uwait(self.0, ev.as_mut_ptr(), 1, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            return Ok(false);
        }
        let e = last_error();
        if e.code == ffi::SRT_ETIMEOUT {
            Ok(false)
        } else {
            Err(e)
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own this epoll id; nothing waits on it any more (the
        // accept thread owns it and is the one dropping it).
        if unsafe { ffi::srt_epoll_release(self.0) } == ffi::SRT_ERROR {
            tracing::debug!(eid = self.0, error = %last_error().message, "srt_epoll_release failed");
        }
    }
}

/// Options for every socket we make, before bind/connect/listen (most SRT
/// options are "pre" options, API-socket-options.md). SRTO_TRANSTYPE first:
/// it resets the others to the live-mode defaults.
fn configure(s: &Socket, cfg: &SrtSenderConfig) -> Result<(), SrtError> {
    s.set_int(ffi::SRTO_TRANSTYPE, "SRTO_TRANSTYPE", ffi::SRTT_LIVE)?;
    s.set_bool(ffi::SRTO_SENDER, "SRTO_SENDER", true)?;
    // Non-blocking send: srt_send returns SRT_EASYNCSND at once when the
    // send buffer is full rather than stalling the feeder.
    s.set_bool(ffi::SRTO_SNDSYN, "SRTO_SNDSYN", false)?;
    s.set_int(
        ffi::SRTO_PAYLOADSIZE,
        "SRTO_PAYLOADSIZE",
        ffi::SRT_LIVE_DEF_PLSIZE,
    )?;
    if let Some(l) = cfg.latency_ms {
        s.set_int(
            ffi::SRTO_LATENCY,
            "SRTO_LATENCY",
            i32::try_from(l).unwrap_or(i32::MAX),
        )?;
    }
    s.set_int(
        ffi::SRTO_CONNTIMEO,
        "SRTO_CONNTIMEO",
        i32::try_from(cfg.connect_timeout.as_millis()).unwrap_or(i32::MAX),
    )?;
    if let Some(id) = &cfg.streamid {
        s.set_str(ffi::SRTO_STREAMID, "SRTO_STREAMID", id)?;
    }
    if let Some(p) = &cfg.passphrase {
        s.set_str(ffi::SRTO_PASSPHRASE, "SRTO_PASSPHRASE", p)?;
        if let Some(k) = cfg.pbkeylen {
            s.set_int(ffi::SRTO_PBKEYLEN, "SRTO_PBKEYLEN", i32::from(k))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

/// What libsrt says about the sending side of a connection
/// (docs/API/statistics.md). For a listener, the top level sums or picks the
/// worst of its callers, and `callers` has each one.
///
/// Counters are totals since the connection was made. Buffer figures are
/// the state at the time of the read (libsrt's "instantaneous" values).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SrtSocketStats {
    /// byteSentTotal: bytes sent including retransmissions and all headers
    /// (IP + UDP + SRT, 44 bytes per packet).
    pub bytes_sent: u64,
    /// pktSentTotal: data packets sent, including retransmissions.
    pub packets_sent: u64,
    /// pktRetransTotal: data packets sent again after a loss report or an
    /// ACK timeout (draft-sharabayko-srt, "Packet retransmission").
    pub packets_retransmitted: u64,
    /// pktSndLossTotal: packets the sender learned were lost, from the
    /// receiver's loss reports (NAKs) or its own retransmission timer. Not
    /// the receiver's count.
    pub packets_lost: u64,
    /// pktSndDropTotal: packets the sender dropped because they could no
    /// longer arrive within the latency (too-late packet drop, TLPKTDROP,
    /// draft-sharabayko-srt "Too-Late Packet Drop"): the viewer lost them.
    pub packets_dropped: u64,
    /// pktRecvACKTotal: ACK control packets received from the peer (the
    /// receiver acknowledges every 10 ms while data flows): none means the
    /// peer does not hear us.
    pub acks_received: u64,
    /// pktRecvNAKTotal: NAK (loss report) control packets received.
    pub naks_received: u64,
    /// mbpsSendRate: sending rate in Mbit/s, including retransmissions and
    /// headers, over the interval since the previous `stats()` call (libsrt
    /// resets its interval counters on each read). Listener: the sum.
    pub send_rate_mbps: f64,
    /// msRTT: round-trip time in ms, smoothed, measured by ACK/ACKACK
    /// pairs. Listener: the worst (largest) caller's.
    pub rtt_ms: f64,
    /// mbpsBandwidth: the link capacity estimated by the receiver from
    /// packet-pair probes (every 16th packet), in Mbit/s; 0 until measured.
    /// Listener: the worst (smallest measured) caller's.
    pub bandwidth_mbps: f64,
    /// mbpsMaxBW: the sending-rate ceiling in Mbit/s (SRTO_MAXBW; in live
    /// mode libsrt's default is 1 Gbit/s, i.e. no real limit).
    pub max_bandwidth_mbps: f64,
    /// msSndBuf: the time span in ms of the data in the send buffer (sent
    /// but not yet acknowledged, or not yet sent). A few ms to a few RTTs on
    /// a healthy link; growing means the link cannot keep up, and past the
    /// sender's drop threshold (peer latency + SRTO_SNDDROPDELAY, at least
    /// 1 s, statistics.md "pktSndDropTotal") libsrt starts dropping.
    /// Listener: the worst caller's.
    pub send_buffer_ms: u64,
    /// pktSndBuf: packets in the send buffer, not yet acknowledged.
    /// Listener: the sum.
    pub send_buffer_packets: u64,
    /// byteSndBuf: bytes in the send buffer, with headers. Listener: sum.
    pub send_buffer_bytes: u64,
    /// pktFlightSize: packets sent and not yet acknowledged, i.e. the
    /// distance from the last ACKed sequence number to the last sent one.
    /// Listener: the sum.
    pub flight_size_packets: u64,
    /// byteAvailSndBuf: free space in the send buffer, bytes (SRTO_SNDBUF
    /// minus what is queued). Listener: the smallest.
    pub available_send_buffer_bytes: u64,
    /// msSndTsbPdDelay: the latency in ms the peer applies to our packets:
    /// the larger of both sides' proposals (SRTO_PEERLATENCY after the
    /// handshake). Listener: the smallest, the caller with the least slack.
    pub negotiated_latency_ms: u64,
    /// Connected peers: 1 or 0 for caller and rendezvous, the number of
    /// callers for a listener.
    pub peers: usize,
    /// Listener only: each connected caller's figures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerStats>,
}

/// One caller of a listener: its address and its socket's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallerStats {
    pub peer: SocketAddr,
    #[serde(flatten)]
    pub stats: SrtSocketStats,
}

fn count<T: Into<i64>>(v: T) -> u64 {
    u64::try_from(v.into()).unwrap_or(0)
}

fn real(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

impl SrtSocketStats {
    fn from_perf(p: &ffi::SRT_TRACEBSTATS, connected: bool) -> Self {
        SrtSocketStats {
            bytes_sent: p.byteSentTotal,
            packets_sent: count(p.pktSentTotal),
            packets_retransmitted: count(p.pktRetransTotal),
            packets_lost: count(p.pktSndLossTotal),
            packets_dropped: count(p.pktSndDropTotal),
            acks_received: count(p.pktRecvACKTotal),
            naks_received: count(p.pktRecvNAKTotal),
            send_rate_mbps: real(p.mbpsSendRate),
            rtt_ms: real(p.msRTT),
            bandwidth_mbps: real(p.mbpsBandwidth),
            max_bandwidth_mbps: real(p.mbpsMaxBW),
            send_buffer_ms: count(p.msSndBuf),
            send_buffer_packets: count(p.pktSndBuf),
            send_buffer_bytes: count(p.byteSndBuf),
            flight_size_packets: count(p.pktFlightSize),
            available_send_buffer_bytes: count(p.byteAvailSndBuf),
            negotiated_latency_ms: count(p.msSndTsbPdDelay),
            peers: usize::from(connected),
            callers: Vec::new(),
        }
    }

    fn of_socket(s: &Socket) -> Self {
        let connected = s.connected();
        match s.stats(true) {
            Some(p) => SrtSocketStats::from_perf(&p, connected),
            None => SrtSocketStats::default(),
        }
    }

    /// A listener's figures from its callers': counters, rates and buffer
    /// occupancy summed; RTT, buffer time and capacity the worst caller's.
    pub fn of_callers(callers: Vec<CallerStats>) -> Self {
        let mut t = SrtSocketStats::default();
        let mut first = true;
        for c in &callers {
            let s = &c.stats;
            t.bytes_sent += s.bytes_sent;
            t.packets_sent += s.packets_sent;
            t.packets_retransmitted += s.packets_retransmitted;
            t.packets_lost += s.packets_lost;
            t.packets_dropped += s.packets_dropped;
            t.acks_received += s.acks_received;
            t.naks_received += s.naks_received;
            t.send_rate_mbps += s.send_rate_mbps;
            t.rtt_ms = t.rtt_ms.max(s.rtt_ms);
            // 0 is "not measured yet", not a dead link.
            if s.bandwidth_mbps > 0.0
                && (t.bandwidth_mbps == 0.0 || s.bandwidth_mbps < t.bandwidth_mbps)
            {
                t.bandwidth_mbps = s.bandwidth_mbps;
            }
            t.max_bandwidth_mbps = t.max_bandwidth_mbps.max(s.max_bandwidth_mbps);
            t.send_buffer_ms = t.send_buffer_ms.max(s.send_buffer_ms);
            t.send_buffer_packets += s.send_buffer_packets;
            t.send_buffer_bytes += s.send_buffer_bytes;
            t.flight_size_packets += s.flight_size_packets;
            if first {
                t.available_send_buffer_bytes = s.available_send_buffer_bytes;
                t.negotiated_latency_ms = s.negotiated_latency_ms;
            } else {
                t.available_send_buffer_bytes = t
                    .available_send_buffer_bytes
                    .min(s.available_send_buffer_bytes);
                t.negotiated_latency_ms = t.negotiated_latency_ms.min(s.negotiated_latency_ms);
            }
            t.peers += s.peers;
            first = false;
        }
        t.callers = callers;
        t
    }
}

// ---------------------------------------------------------------------------
// The sender
// ---------------------------------------------------------------------------

/// What became of one chunk given to [`SrtSender::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued for every connected peer.
    Sent,
    /// `missed` of `peers` peers had no room in their send buffer and did
    /// not get (all of) this chunk; the others did. Their stream now has a
    /// gap: feed them from the next keyframe.
    BufferFull { missed: usize, peers: usize },
    /// A listener with no caller connected: nothing was sent.
    NoPeer,
}

/// A live SRT sender: one connection (caller, rendezvous) or a listener
/// with any number of callers, each getting the whole stream. Dropping it
/// closes every socket and stops the accept thread (within ~100 ms).
pub struct SrtSender {
    kind: Kind,
}

enum Kind {
    Connected(Connected),
    Listener(Listener),
}

struct Connected {
    sock: Socket,
}

struct Caller {
    sock: Socket,
    peer: SocketAddr,
}

/// What the accept thread and the sender share.
struct Shared {
    /// A Mutex is right here: it is held only for non-blocking libsrt calls
    /// (srt_send with SRTO_SNDSYN = 0, srt_bistats, srt_getsockstate,
    /// srt_getsockflag), each a few microseconds, and for pushing or
    /// removing an entry. `srt_accept` (non-blocking), `srt_close` and the
    /// `on_caller` callback run outside it, so a slow callback or a close
    /// never stalls `send`.
    callers: Mutex<Vec<Caller>>,
    stop: AtomicBool,
}

impl Shared {
    fn callers(&self) -> MutexGuard<'_, Vec<Caller>> {
        // A panic while holding the lock cannot leave the Vec inconsistent
        // (pushes and removals are single operations): keep going.
        self.callers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Listener {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    local: Option<SocketAddr>,
    // Declared last so it is closed after the callers (fields drop in
    // order), once the accept thread has stopped using it.
    _sock: Socket,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let Some(t) = self.thread.take() else { return };
        // Dropped from `on_caller` itself, i.e. on the accept thread: it
        // sees the flag and ends once the callback returns; joining itself
        // would fail.
        if t.thread().id() == std::thread::current().id() {
            return;
        }
        if t.join().is_err() {
            tracing::error!("SRT accept thread panicked");
        }
    }
}

impl fmt::Debug for SrtSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Connected(c) => f
                .debug_struct("SrtSender")
                .field("socket", &c.sock.0)
                .finish(),
            Kind::Listener(l) => f
                .debug_struct("SrtSender")
                .field("listening", &l.local)
                .field("callers", &l.shared.callers().len())
                .finish(),
        }
    }
}

impl SrtSender {
    /// Connects (caller, rendezvous: blocks up to `cfg.connect_timeout`) or
    /// starts listening (listener: returns once bound; callers are accepted
    /// on a background thread and `on_caller` runs there, with each new
    /// caller's address). `on_caller` is not called in the other modes.
    pub fn start(
        cfg: SrtSenderConfig,
        on_caller: impl Fn(SocketAddr) + Send + Sync + 'static,
    ) -> Result<Self, SrtError> {
        cfg.validate()?;
        startup()?;
        let kind = match &cfg.mode {
            Mode::Caller { host, port } => Kind::Connected(connect_caller(&cfg, host, *port)?),
            Mode::Rendezvous { local, host, port } => {
                Kind::Connected(connect_rendezvous(&cfg, *local, host, *port)?)
            }
            Mode::Listener { bind, port } => Kind::Listener(listen(
                &cfg,
                SocketAddr::new(*bind, *port),
                Arc::new(on_caller),
            )?),
        };
        Ok(SrtSender { kind })
    }

    /// Whether this is a listener (callers come and go).
    pub fn is_listener(&self) -> bool {
        matches!(self.kind, Kind::Listener(_))
    }

    /// Queues one chunk of the stream (normally 1316 bytes; longer chunks
    /// are cut into 1316-byte payloads). Never blocks.
    ///
    /// Caller and rendezvous: `Err(ConnectionLost)` once the connection is
    /// broken (the sender is then useless: drop it and start again).
    /// Listener: a caller whose connection broke, or that fails in any other
    /// way, is closed and dropped; the others carry on.
    pub fn send(&self, chunk: &[u8]) -> Result<SendOutcome, SrtError> {
        match &self.kind {
            Kind::Connected(c) => match send_chunk(&c.sock, chunk)? {
                true => Ok(SendOutcome::Sent),
                false => Ok(SendOutcome::BufferFull {
                    missed: 1,
                    peers: 1,
                }),
            },
            Kind::Listener(l) => {
                let mut gone = Vec::new();
                let (missed, peers) = {
                    let mut callers = l.shared.callers();
                    let mut missed = 0;
                    let mut i = 0;
                    while i < callers.len() {
                        match send_chunk(&callers[i].sock, chunk) {
                            Ok(true) => i += 1,
                            Ok(false) => {
                                missed += 1;
                                i += 1;
                            }
                            Err(e) => gone.push((callers.remove(i), e)),
                        }
                    }
                    (missed, callers.len())
                };
                // Closed outside the lock.
                for (c, e) in gone {
                    tracing::warn!(peer = %c.peer, "SRT caller dropped: {e}");
                }
                Ok(match (missed, peers) {
                    (_, 0) => SendOutcome::NoPeer,
                    (0, _) => SendOutcome::Sent,
                    (missed, peers) => SendOutcome::BufferFull { missed, peers },
                })
            }
        }
    }

    /// libsrt's figures for this sender (see [`SrtSocketStats`]). Each call
    /// starts a new interval for `send_rate_mbps`.
    pub fn stats(&self) -> SrtSocketStats {
        match &self.kind {
            Kind::Connected(c) => SrtSocketStats::of_socket(&c.sock),
            Kind::Listener(l) => {
                let each: Vec<CallerStats> = l
                    .shared
                    .callers()
                    .iter()
                    .map(|c| CallerStats {
                        peer: c.peer,
                        stats: SrtSocketStats::of_socket(&c.sock),
                    })
                    .collect();
                SrtSocketStats::of_callers(each)
            }
        }
    }

    /// Connected peers: callers of a listener (broken ones are noticed
    /// within ~100 ms, or at the next `send`); 1 or 0 otherwise.
    pub fn callers(&self) -> usize {
        match &self.kind {
            Kind::Connected(c) => usize::from(c.sock.connected()),
            Kind::Listener(l) => l.shared.callers().len(),
        }
    }

    /// The local address: where a listener listens (its port when started
    /// with port 0), or where a caller sends from.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Connected(c) => c.sock.local_addr(),
            Kind::Listener(l) => l.local,
        }
    }

    /// For a clean stop: waits, up to `timeout`, until every connected peer
    /// has acknowledged all data (SRTO_SNDDATA is 0) and then for the
    /// peers' latency, so the receivers have also played it out. Returns
    /// whether all that fitted in `timeout`. Peers whose connection broke
    /// are not waited for.
    ///
    /// Why both: in live mode `srt_close` discards unsent data (SRTO_LINGER
    /// is 0); and acknowledged is not yet delivered, since the receiver
    /// hands each packet to its application a latency after it was sent
    /// (TSBPD, draft-sharabayko-srt "Timestamp-Based Packet Delivery"). A
    /// connection closed before then takes the undelivered rest with it: with
    /// libsrt 1.5.1 a receiver loses the last ~latency of the stream (seen
    /// with srt-live-transmit).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let mut pending = 0u64;
            let mut play_out = Duration::ZERO;
            let mut look = |s: &Socket| {
                if let Some((unacked, p)) = pending_on(s) {
                    pending += unacked;
                    play_out = play_out.max(p);
                }
            };
            match &self.kind {
                Kind::Connected(c) => look(&c.sock),
                Kind::Listener(l) => l.shared.callers().iter().for_each(|c| look(&c.sock)),
            }
            let now = Instant::now();
            if pending == 0 {
                // The last packet went out no later than now.
                if now + play_out > deadline {
                    std::thread::sleep(deadline.saturating_duration_since(now));
                    return false;
                }
                std::thread::sleep(play_out);
                return true;
            }
            if now >= deadline {
                tracing::debug!(pending, "SRT flush timed out");
                return false;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
        }
    }
}

/// For a connected socket: unacknowledged packets in its send buffer, and
/// how long the peer may still hold the newest one before playing it: the
/// negotiated latency plus a round trip (which covers the one-way delay),
/// plus a margin for a receiver whose delivery thread runs late (a busy
/// box): libsrt discards what it still holds when the connection closes,
/// and a receiver that had not yet played the last packets loses the end
/// of the last frame (seen on a loaded 2-core machine).
fn pending_on(s: &Socket) -> Option<(u64, Duration)> {
    if !s.connected() {
        return None;
    }
    let unacked = s.get_int(ffi::SRTO_SNDDATA).map_or(0, count);
    let p = s.stats(false)?;
    let ms = count(p.msSndTsbPdDelay) as f64 * 1.25 + real(p.msRTT) + 250.0;
    Some((unacked, Duration::from_secs_f64(ms / 1000.0)))
}

/// Sends `chunk` in payload-size pieces. Ok(false): the send buffer was full
/// (the rest of the chunk is dropped).
fn send_chunk(s: &Socket, chunk: &[u8]) -> Result<bool, SrtError> {
    for piece in chunk.chunks(PAYLOAD_SIZE) {
        // SAFETY: `piece` is valid for reads of its length (<= 1316, so the
        // cast cannot truncate) for the call; libsrt copies it into its send
        // buffer and never writes through the pointer.
        let rc = unsafe { ffi::srt_send(s.0, piece.as_ptr().cast(), piece.len() as c_int) };
        if rc == ffi::SRT_ERROR {
            let e = last_error();
            return match e.code {
                ffi::SRT_EASYNCSND => Ok(false),
                ffi::SRT_ECONNLOST => Err(SrtError::ConnectionLost(e.message)),
                // libsrt releases a broken socket after a while; then the
                // same loss reads "Invalid socket ID". Say what happened.
                c if is_connection_gone(c) => {
                    Err(SrtError::ConnectionLost(strerror(ffi::SRT_ECONNLOST)))
                }
                _ => Err(srt_error("sending", e)),
            };
        }
    }
    Ok(true)
}

fn connect_caller(cfg: &SrtSenderConfig, host: &str, port: u16) -> Result<Connected, SrtError> {
    let peer_name = host_port(host, port);
    let peer = resolve(host, port, cfg.adapter)?;
    let sock = Socket::create()?;
    configure(&sock, cfg)?;
    if let Some(a) = cfg.adapter {
        sock.bind(SocketAddr::new(a, 0))?;
    }
    let raw = RawAddr::new(peer);
    // SAFETY: `raw` is a valid sockaddr of `raw.len()` bytes for the call.
    // Blocking (SRTO_RCVSYN is on by default) for at most SRTO_CONNTIMEO.
    let rc = unsafe { ffi::srt_connect(sock.0, raw.as_ptr(), raw.len()) };
    if rc == ffi::SRT_ERROR {
        return Err(connect_error(&sock, &peer_name, cfg, None));
    }
    tracing::info!(peer = %peer_name, "SRT connected");
    Ok(Connected { sock })
}

fn connect_rendezvous(
    cfg: &SrtSenderConfig,
    local: IpAddr,
    host: &str,
    port: u16,
) -> Result<Connected, SrtError> {
    let peer_name = host_port(host, port);
    // A wildcard local address fits either family; a given one picks it.
    let family = (!local.is_unspecified()).then_some(local);
    let peer = resolve(host, port, family)?;
    let local = match (local, peer) {
        (IpAddr::V4(l), SocketAddr::V6(_)) if l.is_unspecified() => {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        }
        (IpAddr::V6(l), SocketAddr::V4(_)) if l.is_unspecified() => {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
        (l, _) => l,
    };
    let local = SocketAddr::new(local, port);
    let sock = Socket::create()?;
    configure(&sock, cfg)?;
    sock.prepare_local(local)?;
    let (l, r) = (RawAddr::new(local), RawAddr::new(peer));
    // SAFETY: both are valid sockaddrs of their lengths for the call. Binds
    // `local`, then blocks up to SRTO_CONNTIMEO for the peer.
    let rc = unsafe { ffi::srt_rendezvous(sock.0, l.as_ptr(), l.len(), r.as_ptr(), r.len()) };
    if rc == ffi::SRT_ERROR {
        return Err(connect_error(&sock, &peer_name, cfg, Some(local)));
    }
    tracing::info!(peer = %peer_name, "SRT rendezvous connected");
    Ok(Connected { sock })
}

/// The error of a failed srt_connect/srt_rendezvous, read right after it.
fn connect_error(
    sock: &Socket,
    peer: &str,
    cfg: &SrtSenderConfig,
    local: Option<SocketAddr>,
) -> SrtError {
    let e = last_error();
    match e.code {
        ffi::SRT_ENOSERVER => SrtError::Timeout {
            peer: peer.to_string(),
            timeout: cfg.connect_timeout,
        },
        ffi::SRT_ECONNREJ => {
            // SAFETY: any id is accepted; returns the socket's reason code.
            let code = unsafe { ffi::srt_getrejectreason(sock.0) };
            rejection(peer, code, cfg.connect_timeout, cfg.streamid.is_some())
        }
        c if is_bind_failure(c) && local.is_some() => SrtError::Bind {
            addr: local.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            reason: bind_reason(&e),
        },
        _ => srt_error(format!("connecting to {peer}"), e),
    }
}

fn listen(
    cfg: &SrtSenderConfig,
    addr: SocketAddr,
    on_caller: Arc<dyn Fn(SocketAddr) + Send + Sync>,
) -> Result<Listener, SrtError> {
    let sock = Socket::create()?;
    configure(&sock, cfg)?;
    // Non-blocking accept: the accept thread waits in epoll instead, with a
    // timeout, so it can notice it should stop.
    sock.set_bool(ffi::SRTO_RCVSYN, "SRTO_RCVSYN", false)?;
    sock.bind(addr)?;
    // SAFETY: a bound socket id we own.
    if unsafe { ffi::srt_listen(sock.0, LISTEN_BACKLOG) } == ffi::SRT_ERROR {
        let e = last_error();
        return Err(if is_bind_failure(e.code) {
            SrtError::Bind {
                addr,
                reason: bind_reason(&e),
            }
        } else {
            srt_error(format!("listening on {addr}"), e)
        });
    }
    let local = sock.local_addr();
    let epoll = Epoll::for_accepting(&sock)?;
    let shared = Arc::new(Shared {
        callers: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let thread_shared = shared.clone();
    let lsock = sock.0;
    let shown = local.unwrap_or(addr);
    let thread = std::thread::Builder::new()
        .name(format!("srt-accept-{}", shown.port()))
        .spawn(move || accept_loop(lsock, epoll, &thread_shared, on_caller.as_ref()))
        .map_err(|e| SrtError::Srt {
            what: "starting the SRT accept thread".into(),
            code: 0,
            message: e.to_string(),
        })?;
    tracing::info!(addr = %shown, "SRT listening");
    Ok(Listener {
        shared,
        thread: Some(thread),
        local,
        _sock: sock,
    })
}

/// The accept thread: picks up callers as they complete the handshake and
/// drops callers whose connection broke, until the sender is dropped.
fn accept_loop(
    lsock: ffi::SRTSOCKET,
    epoll: Epoll,
    shared: &Shared,
    on_caller: &(dyn Fn(SocketAddr) + Send + Sync),
) {
    while !shared.stop.load(Ordering::SeqCst) {
        match epoll.wait(ACCEPT_POLL_MS) {
            Ok(true) => accept_pending(lsock, shared, on_caller),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e.message, "SRT listener wait failed");
                std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS as u64));
            }
        }
        let gone: Vec<Caller> = shared
            .callers()
            .extract_if(.., |c| !c.sock.connected())
            .collect();
        for c in gone {
            tracing::info!(peer = %c.peer, "SRT caller disconnected");
        }
    }
}

/// Accepts every caller waiting in the backlog.
fn accept_pending(
    lsock: ffi::SRTSOCKET,
    shared: &Shared,
    on_caller: &(dyn Fn(SocketAddr) + Send + Sync),
) {
    while !shared.stop.load(Ordering::SeqCst) {
        let mut storage = zeroed_storage();
        let mut len = size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: `storage` is a writable sockaddr_storage of `len` bytes;
        // the listener is non-blocking (SRTO_RCVSYN off), so this returns at
        // once with a new socket or SRT_EASYNCRCV.
        let s = unsafe {
            ffi::srt_accept(
                lsock,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if s == ffi::SRT_INVALID_SOCK {
            let e = last_error();
            if e.code != ffi::SRT_EASYNCRCV {
                tracing::warn!(error = %e.message, "SRT accept failed");
            }
            return;
        }
        let sock = Socket(s);
        let Some(peer) = from_storage(&storage, len) else {
            tracing::warn!("SRT caller with an unknown address family, closed");
            continue;
        };
        // An IPv4 caller of a dual-stack (`::`) listener arrives as
        // ::ffff:a.b.c.d; show it as the IPv4 address it is.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        // Accepted sockets take the listener's options; SNDSYN is stated
        // again so send() can never block on a caller.
        if let Err(e) = sock.set_bool(ffi::SRTO_SNDSYN, "SRTO_SNDSYN", false) {
            tracing::warn!(%peer, "SRT caller closed: {e}");
            continue;
        }
        tracing::info!(%peer, "SRT caller connected");
        shared.callers().push(Caller { sock, peer });
        if catch_unwind(AssertUnwindSafe(|| on_caller(peer))).is_err() {
            tracing::error!(%peer, "on_caller callback panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller_cfg() -> SrtSenderConfig {
        SrtSenderConfig::new(Mode::Caller {
            host: "127.0.0.1".into(),
            port: 9000,
        })
    }

    #[test]
    fn config_checks_name_lengths_not_secrets() {
        let mut c = caller_cfg();
        c.passphrase = Some("short".into());
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "SRT configuration: passphrase has 5 bytes, SRT needs 10 to 79"
        );
        c.passphrase = Some("longenough-secret".into());
        c.pbkeylen = Some(20);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("pbkeylen 20")
        );
        c.pbkeylen = Some(32);
        c.validate().unwrap();
        c.passphrase = None;
        assert!(c.validate().is_err(), "pbkeylen without passphrase");
        let mut c = caller_cfg();
        c.streamid = Some("x".repeat(513));
        assert!(!c.validate().unwrap_err().to_string().contains("xxx"));
        let mut c = caller_cfg();
        c.adapter = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        c.validate().unwrap();
        c.mode = Mode::Listener {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
        };
        assert!(c.validate().is_err(), "adapter with a listener");
        let c = SrtSenderConfig::new(Mode::Caller {
            host: "h".into(),
            port: 0,
        });
        assert!(c.validate().is_err());
    }

    /// The options reach libsrt as intended (read back where libsrt can
    /// report them).
    #[test]
    fn options_are_applied() {
        startup().unwrap();
        let mut c = caller_cfg();
        c.latency_ms = Some(250);
        c.passphrase = Some("0123456789abcdef".into());
        c.pbkeylen = Some(32);
        c.streamid = Some("live/cam1".into());
        let s = Socket::create().unwrap();
        configure(&s, &c).unwrap();
        assert_eq!(s.get_int(ffi::SRTO_SNDSYN), Some(0));
        assert_eq!(s.get_int(ffi::SRTO_PAYLOADSIZE), Some(1316));
        assert_eq!(s.get_int(ffi::SRTO_LATENCY), Some(250));
        assert_eq!(s.get_int(ffi::SRTO_PBKEYLEN), Some(32));
        assert_eq!(s.get_int(ffi::SRTO_CONNTIMEO), Some(3000));
        assert_eq!(s.state(), ffi::SRTS_INIT);
        assert!(!s.connected());
    }

    #[test]
    fn config_from_target() {
        use crate::srt::SrtTarget;
        let t = SrtTarget::try_from(
            "srt://ingest.example:9000?streamid=live/abc&passphrase=0123456789ab&pbkeylen=24&latency=300&adapter=10.0.0.2",
        )
        .unwrap();
        let c = SrtSenderConfig::from_target(&t).unwrap();
        assert_eq!(
            c.mode,
            Mode::Caller {
                host: "ingest.example".into(),
                port: 9000
            }
        );
        assert_eq!(c.passphrase.as_deref(), Some("0123456789ab"));
        assert_eq!(c.pbkeylen, Some(24));
        assert_eq!(c.streamid.as_deref(), Some("live/abc"));
        assert_eq!(c.latency_ms, Some(300));
        assert_eq!(c.adapter, Some("10.0.0.2".parse().unwrap()));
        c.validate().unwrap();

        let t = SrtTarget::try_from("srt://:7000").unwrap();
        let c = SrtSenderConfig::from_target(&t).unwrap();
        assert_eq!(
            c.mode,
            Mode::Listener {
                bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port: 7000
            }
        );
        let t =
            SrtTarget::try_from("srt://10.1.1.2:7000?mode=rendezvous&adapter=10.1.1.1").unwrap();
        let c = SrtSenderConfig::from_target(&t).unwrap();
        assert_eq!(
            c.mode,
            Mode::Rendezvous {
                local: "10.1.1.1".parse().unwrap(),
                host: "10.1.1.2".into(),
                port: 7000
            }
        );
        assert_eq!(c.adapter, None);
        c.validate().unwrap();
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = caller_cfg();
        c.passphrase = Some("topsecret-passphrase".into());
        c.streamid = Some("#!::r=live/key123".into());
        let d = format!("{c:?}");
        assert!(!d.contains("topsecret") && !d.contains("key123"), "{d}");
        assert!(d.contains("***"), "{d}");
    }

    #[test]
    fn error_texts() {
        let t = Duration::from_secs(3);
        let e = rejection("127.0.0.1:9000", ffi::SRT_REJ_BADSECRET, t, false);
        assert_eq!(
            e.to_string(),
            "127.0.0.1:9000 rejected the connection: wrong passphrase (SRT_REJ_BADSECRET)"
        );
        let e = rejection("127.0.0.1:9000", ffi::SRT_REJ_TIMEOUT, t, false);
        assert_eq!(
            e.to_string(),
            "no answer from 127.0.0.1:9000 within 3 s (connection timed out)"
        );
        let e = rejection("127.0.0.1:9000", ffi::SRT_REJX_FORBIDDEN, t, true);
        assert_eq!(
            e.to_string(),
            "127.0.0.1:9000 refused the stream id: forbidden (SRT_REJX_FORBIDDEN, 1403)"
        );
        let e = rejection("h:1", ffi::SRT_REJ_PEER, t, true);
        assert_eq!(
            e.to_string(),
            "h:1 refused the stream id: no reason given (SRT_REJ_PEER)"
        );
        let e = rejection("h:1", ffi::SRT_REJ_ROGUE, t, true);
        assert_eq!(
            e.to_string(),
            "h:1 refused the stream id: no reason given (SRT_REJ_ROGUE)"
        );
        let e = rejection("h:1", ffi::SRT_REJ_ROGUE, t, false);
        assert_eq!(
            e.to_string(),
            "h:1 rejected the connection: the handshake could not be interpreted (SRT_REJ_ROGUE)"
        );
        let e = rejection("h:1", ffi::SRT_REJ_PEER, t, false);
        assert_eq!(
            e.to_string(),
            "h:1 rejected the connection: refused by the peer, no reason given (SRT_REJ_PEER)"
        );
        let e = rejection("h:1", ffi::SRT_REJX_NOTFOUND, t, true);
        assert_eq!(
            e.to_string(),
            "h:1 refused the stream id: not found (SRT_REJX_NOTFOUND, 1404)"
        );
        let e = rejection("h:1", ffi::SRT_REJX_UNAUTHORIZED, t, false);
        assert_eq!(
            e.to_string(),
            "h:1 rejected the connection: unauthorized, authentication failed (SRT_REJX_UNAUTHORIZED, 1401)"
        );
        let e = rejection("h:1", 2042, t, true);
        assert_eq!(
            e.to_string(),
            "h:1 refused the stream id: application-defined code 2042"
        );
        let e = rejection("h:1", 1499, t, false);
        assert_eq!(
            e.to_string(),
            "h:1 rejected the connection: access control code 1499"
        );
        let e = rejection("h:1", 99, t, false);
        assert!(e.to_string().ends_with("(reject reason 99)"), "{e}");
        // Every internal code has a text; out-of-range ones say their number.
        for code in 0..=20 {
            assert!(!rejection("h:1", code, t, false).to_string().is_empty());
        }
        assert_eq!(human_duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(human_duration(Duration::from_millis(500)), "500 ms");
        assert_eq!(host_port("::1", 9), "[::1]:9");
        let b = SrtError::Bind {
            addr: "0.0.0.0:9000".parse().unwrap(),
            reason: "address in use".into(),
        };
        assert_eq!(b.to_string(), "binding 0.0.0.0:9000: address in use");
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:9000", "[::1]:1234", "[fe80::1%3]:5", "0.0.0.0:0"] {
            let a: SocketAddr = a.parse().unwrap();
            let raw = RawAddr::new(a);
            let mut s = zeroed_storage();
            // SAFETY: test: copies raw.len() bytes of a valid sockaddr into
            // a sockaddr_storage, which is larger.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    raw.as_ptr().cast::<u8>(),
                    (&mut s as *mut libc::sockaddr_storage).cast::<u8>(),
                    raw.len() as usize,
                );
            }
            assert_eq!(from_storage(&s, raw.len()), Some(a));
            assert_eq!(from_storage(&s, 4), None, "too short");
        }
    }

    #[test]
    fn listener_figures_aggregate() {
        let a = SrtSocketStats {
            packets_sent: 100,
            bytes_sent: 1000,
            acks_received: 10,
            rtt_ms: 1.0,
            bandwidth_mbps: 900.0,
            send_buffer_ms: 20,
            send_buffer_packets: 5,
            flight_size_packets: 3,
            available_send_buffer_bytes: 5000,
            negotiated_latency_ms: 120,
            send_rate_mbps: 1.5,
            peers: 1,
            ..Default::default()
        };
        let b = SrtSocketStats {
            packets_sent: 50,
            bytes_sent: 500,
            acks_received: 5,
            rtt_ms: 30.0,
            bandwidth_mbps: 0.0, // not measured yet
            send_buffer_ms: 200,
            send_buffer_packets: 7,
            flight_size_packets: 4,
            available_send_buffer_bytes: 3000,
            negotiated_latency_ms: 250,
            send_rate_mbps: 1.0,
            peers: 1,
            ..Default::default()
        };
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let t = SrtSocketStats::of_callers(vec![
            CallerStats {
                peer,
                stats: a.clone(),
            },
            CallerStats { peer, stats: b },
        ]);
        assert_eq!(t.peers, 2);
        assert_eq!(t.packets_sent, 150);
        assert_eq!(t.bytes_sent, 1500);
        assert_eq!(t.acks_received, 15);
        assert_eq!(t.rtt_ms, 30.0);
        assert_eq!(t.bandwidth_mbps, 900.0);
        assert_eq!(t.send_buffer_ms, 200);
        assert_eq!(t.send_buffer_packets, 12);
        assert_eq!(t.flight_size_packets, 7);
        assert_eq!(t.available_send_buffer_bytes, 3000);
        assert_eq!(t.negotiated_latency_ms, 120);
        assert_eq!(t.send_rate_mbps, 2.5);
        assert_eq!(t.callers.len(), 2);
        assert_eq!(
            SrtSocketStats::of_callers(Vec::new()),
            SrtSocketStats::default()
        );
    }
}

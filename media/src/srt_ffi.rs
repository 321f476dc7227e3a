//! Hand-written bindings for the part of libsrt 1.5 that [`crate::srt_sock`]
//! uses, transcribed from `/usr/include/srt/srt.h` (and `access_control.h`,
//! `logging_api.h`) of Debian 12's libsrt 1.5.1.
//!
//! No bindgen and no build script: the declarations below are the contract,
//! and the unit tests at the bottom pin the layout of the one large struct
//! (`SRT_TRACEBSTATS`) to what gcc computes from the real header.
//!
//! Linking: Debian ships libsrt in two flavours that differ only in the
//! crypto library, `libsrt1.5-gnutls` (`libsrt-gnutls.so.1.5`) and
//! `libsrt1.5-openssl` (`libsrt.so.1.5`). GStreamer's SRT plugin
//! (`libgstsrt.so`, gstreamer1.0-plugins-bad) and srt-tools are built
//! against the GnuTLS one. We link the same one (`-lsrt-gnutls`, from
//! `libsrt-gnutls-dev`) so that a process that also loads GStreamer's
//! `srtsrc`/`srtsink` holds exactly one libsrt: with two copies, every
//! exported symbol of the second resolves into the first (ELF global
//! scope), so both would run one library's code against two sets of
//! globals (two socket tables, two garbage-collector threads).
//!
//! Every function here is `unsafe` to call; the safe wrapper is
//! [`crate::srt_sock`]. All functions are thread-safe in libsrt (the API is
//! documented as callable from any thread, docs/API/API-functions.md).

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_int, c_void};

/// `typedef int32_t SRTSOCKET;`
pub type SRTSOCKET = i32;
/// `typedef int SYSSOCKET;` (POSIX)
pub type SYSSOCKET = c_int;

/// `static const SRTSOCKET SRT_INVALID_SOCK = -1;`
pub const SRT_INVALID_SOCK: SRTSOCKET = -1;
/// `static const int SRT_ERROR = -1;`
pub const SRT_ERROR: c_int = -1;

/// `static const int SRT_LIVE_DEF_PLSIZE = 1316;` — 7 MPEG-TS packets, the
/// default SRTO_PAYLOADSIZE in live mode.
pub const SRT_LIVE_DEF_PLSIZE: c_int = 1316;
/// `static const int SRT_LIVE_MAX_PLSIZE = 1456;` — MTU 1500 minus
/// IP/UDP (28) and SRT (16) headers.
pub const SRT_LIVE_MAX_PLSIZE: c_int = 1456;

// ---------------------------------------------------------------------------
// enum SRT_SOCKSTATUS (values returned by srt_getsockstate). A C enum is an
// `int` here (all values fit), so the function is declared returning c_int.
// ---------------------------------------------------------------------------
pub type SRT_SOCKSTATUS = c_int;
pub const SRTS_INIT: SRT_SOCKSTATUS = 1;
pub const SRTS_OPENED: SRT_SOCKSTATUS = 2;
pub const SRTS_LISTENING: SRT_SOCKSTATUS = 3;
pub const SRTS_CONNECTING: SRT_SOCKSTATUS = 4;
pub const SRTS_CONNECTED: SRT_SOCKSTATUS = 5;
pub const SRTS_BROKEN: SRT_SOCKSTATUS = 6;
pub const SRTS_CLOSING: SRT_SOCKSTATUS = 7;
pub const SRTS_CLOSED: SRT_SOCKSTATUS = 8;
pub const SRTS_NONEXIST: SRT_SOCKSTATUS = 9;

// ---------------------------------------------------------------------------
// enum SRT_SOCKOPT: only the options this crate sets or reads.
// ---------------------------------------------------------------------------
pub type SRT_SOCKOPT = c_int;
/// bool: blocking send (we set false: `srt_send` never waits).
pub const SRTO_SNDSYN: SRT_SOCKOPT = 1;
/// bool: blocking receive; on a listener it makes `srt_accept` blocking.
pub const SRTO_RCVSYN: SRT_SOCKOPT = 2;
/// int32 (GET): packets in the send buffer not yet acknowledged.
pub const SRTO_SNDDATA: SRT_SOCKOPT = 19;
/// bool: this side sends (HSv4 compatibility; harmless with HSv5).
pub const SRTO_SENDER: SRT_SOCKOPT = 21;
/// int32 ms: sets both SRTO_RCVLATENCY and SRTO_PEERLATENCY.
pub const SRTO_LATENCY: SRT_SOCKOPT = 23;
/// string, 10..79 bytes.
pub const SRTO_PASSPHRASE: SRT_SOCKOPT = 26;
/// int32: 16, 24 or 32 (AES-128/192/256).
pub const SRTO_PBKEYLEN: SRT_SOCKOPT = 27;
/// int32 ms: connect (and rendezvous) timeout.
pub const SRTO_CONNTIMEO: SRT_SOCKOPT = 36;
/// string, up to 512 bytes.
pub const SRTO_STREAMID: SRT_SOCKOPT = 46;
/// int32: payload size of one live-mode packet.
pub const SRTO_PAYLOADSIZE: SRT_SOCKOPT = 49;
/// int32 (SRT_TRANSTYPE).
pub const SRTO_TRANSTYPE: SRT_SOCKOPT = 50;
/// int32: IPV6_V6ONLY for a socket bound to `::` (must be set explicitly
/// before binding to the IPv6 wildcard, API-socket-options.md).
pub const SRTO_IPV6ONLY: SRT_SOCKOPT = 54;

// enum SRT_TRANSTYPE
pub type SRT_TRANSTYPE = c_int;
pub const SRTT_LIVE: SRT_TRANSTYPE = 0;
pub const SRTT_FILE: SRT_TRANSTYPE = 1;

// ---------------------------------------------------------------------------
// enum SRT_ERRNO (srt_getlasterror): 1000 * major + minor.
// ---------------------------------------------------------------------------
pub const SRT_SUCCESS: c_int = 0;
pub const SRT_ECONNSETUP: c_int = 1000;
/// Connect timed out (no answer within SRTO_CONNTIMEO).
pub const SRT_ENOSERVER: c_int = 1001;
/// Connection rejected: see srt_getrejectreason.
pub const SRT_ECONNREJ: c_int = 1002;
/// Could not create/configure the UDP socket (bind failures, with errno).
pub const SRT_ESOCKFAIL: c_int = 1003;
pub const SRT_ESECFAIL: c_int = 1004;
pub const SRT_ESCLOSED: c_int = 1005;
pub const SRT_ECONNFAIL: c_int = 2000;
pub const SRT_ECONNLOST: c_int = 2001;
pub const SRT_ENOCONN: c_int = 2002;
pub const SRT_ERESOURCE: c_int = 3000;
pub const SRT_EINVOP: c_int = 5000;
pub const SRT_EBOUNDSOCK: c_int = 5001;
pub const SRT_ECONNSOCK: c_int = 5002;
pub const SRT_EINVPARAM: c_int = 5003;
pub const SRT_EINVSOCK: c_int = 5004;
pub const SRT_EUNBOUNDSOCK: c_int = 5005;
pub const SRT_ENOLISTEN: c_int = 5006;
/// Another socket already listens on this port (same multiplexer).
pub const SRT_EDUPLISTEN: c_int = 5011;
pub const SRT_ELARGEMSG: c_int = 5012;
/// Binding conflicts with an existing SRT binding of this process.
pub const SRT_EBINDCONFLICT: c_int = 5015;
pub const SRT_EASYNCFAIL: c_int = 6000;
/// Non-blocking send: no room in the send buffer.
pub const SRT_EASYNCSND: c_int = 6001;
/// Non-blocking receive/accept: nothing to pick up.
pub const SRT_EASYNCRCV: c_int = 6002;
pub const SRT_ETIMEOUT: c_int = 6003;
pub const SRT_ECONGEST: c_int = 6004;
pub const SRT_EPEERERR: c_int = 7000;

// ---------------------------------------------------------------------------
// enum SRT_REJECT_REASON (srt_getrejectreason), and the access-control codes
// of access_control.h: 1000..1999 predefined (HTTP-like, 1000 + HTTP code),
// 2000.. user defined.
// ---------------------------------------------------------------------------
pub const SRT_REJ_UNKNOWN: c_int = 0;
pub const SRT_REJ_SYSTEM: c_int = 1;
pub const SRT_REJ_PEER: c_int = 2;
pub const SRT_REJ_RESOURCE: c_int = 3;
pub const SRT_REJ_ROGUE: c_int = 4;
pub const SRT_REJ_BACKLOG: c_int = 5;
pub const SRT_REJ_IPE: c_int = 6;
pub const SRT_REJ_CLOSE: c_int = 7;
pub const SRT_REJ_VERSION: c_int = 8;
pub const SRT_REJ_RDVCOOKIE: c_int = 9;
pub const SRT_REJ_BADSECRET: c_int = 10;
pub const SRT_REJ_UNSECURE: c_int = 11;
pub const SRT_REJ_MESSAGEAPI: c_int = 12;
pub const SRT_REJ_CONGESTION: c_int = 13;
pub const SRT_REJ_FILTER: c_int = 14;
pub const SRT_REJ_GROUP: c_int = 15;
pub const SRT_REJ_TIMEOUT: c_int = 16;

pub const SRT_REJC_PREDEFINED: c_int = 1000;
pub const SRT_REJC_USERDEFINED: c_int = 2000;

pub const SRT_REJX_FALLBACK: c_int = 1000;
pub const SRT_REJX_KEY_NOTSUP: c_int = 1001;
pub const SRT_REJX_FILEPATH: c_int = 1002;
pub const SRT_REJX_HOSTNOTFOUND: c_int = 1003;
pub const SRT_REJX_BAD_REQUEST: c_int = 1400;
pub const SRT_REJX_UNAUTHORIZED: c_int = 1401;
pub const SRT_REJX_OVERLOAD: c_int = 1402;
pub const SRT_REJX_FORBIDDEN: c_int = 1403;
pub const SRT_REJX_NOTFOUND: c_int = 1404;
pub const SRT_REJX_BAD_MODE: c_int = 1405;
pub const SRT_REJX_UNACCEPTABLE: c_int = 1406;
pub const SRT_REJX_CONFLICT: c_int = 1409;
pub const SRT_REJX_NOTSUP_MEDIA: c_int = 1415;
pub const SRT_REJX_LOCKED: c_int = 1423;
pub const SRT_REJX_FAILED_DEPEND: c_int = 1424;
pub const SRT_REJX_ISE: c_int = 1500;
pub const SRT_REJX_UNIMPLEMENTED: c_int = 1501;
pub const SRT_REJX_GW: c_int = 1502;
pub const SRT_REJX_DOWN: c_int = 1503;
pub const SRT_REJX_VERSION: c_int = 1505;
pub const SRT_REJX_NOROOM: c_int = 1507;

// ---------------------------------------------------------------------------
// epoll (enum SRT_EPOLL_OPT)
// ---------------------------------------------------------------------------
pub const SRT_EPOLL_IN: c_int = 0x1;
pub const SRT_EPOLL_OUT: c_int = 0x4;
pub const SRT_EPOLL_ERR: c_int = 0x8;

/// `typedef struct SRT_EPOLL_EVENT_STR { SRTSOCKET fd; int events; }`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SRT_EPOLL_EVENT {
    pub fd: SRTSOCKET,
    pub events: c_int,
}

// ---------------------------------------------------------------------------
// Logging (logging_api.h; levels are syslog's from <syslog.h>)
// ---------------------------------------------------------------------------
pub const LOG_CRIT: c_int = 2;
pub const LOG_ERR: c_int = 3;
pub const LOG_WARNING: c_int = 4;
pub const LOG_NOTICE: c_int = 5;
pub const LOG_INFO: c_int = 6;
pub const LOG_DEBUG: c_int = 7;

pub const SRT_LOGF_DISABLE_TIME: c_int = 1;
pub const SRT_LOGF_DISABLE_THREADNAME: c_int = 2;
pub const SRT_LOGF_DISABLE_SEVERITY: c_int = 4;
pub const SRT_LOGF_DISABLE_EOL: c_int = 8;

/// `typedef void SRT_LOG_HANDLER_FN(void* opaque, int level, const char*
/// file, int line, const char* area, const char* message);`
pub type SRT_LOG_HANDLER_FN = unsafe extern "C" fn(
    opaque: *mut c_void,
    level: c_int,
    file: *const c_char,
    line: c_int,
    area: *const c_char,
    message: *const c_char,
);

/// `struct CBytePerfMon` (`typedef struct CBytePerfMon SRT_TRACEBSTATS`),
/// every field in header order with the header's C types. Field meanings:
/// docs/API/statistics.md of libsrt. Totals are since the connection;
/// "local" (interval) figures are since the last read with `clear` set;
/// "instant" figures are the state at the read (moving averages for the
/// buffer sizes unless read with `srt_bistats(.., instantaneous = 1)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SRT_TRACEBSTATS {
    // global measurements
    pub msTimeStamp: i64,
    pub pktSentTotal: i64,
    pub pktRecvTotal: i64,
    pub pktSndLossTotal: c_int,
    pub pktRcvLossTotal: c_int,
    pub pktRetransTotal: c_int,
    pub pktSentACKTotal: c_int,
    pub pktRecvACKTotal: c_int,
    pub pktSentNAKTotal: c_int,
    pub pktRecvNAKTotal: c_int,
    pub usSndDurationTotal: i64,
    pub pktSndDropTotal: c_int,
    pub pktRcvDropTotal: c_int,
    pub pktRcvUndecryptTotal: c_int,
    pub byteSentTotal: u64,
    pub byteRecvTotal: u64,
    pub byteRcvLossTotal: u64,
    pub byteRetransTotal: u64,
    pub byteSndDropTotal: u64,
    pub byteRcvDropTotal: u64,
    pub byteRcvUndecryptTotal: u64,

    // local measurements
    pub pktSent: i64,
    pub pktRecv: i64,
    pub pktSndLoss: c_int,
    pub pktRcvLoss: c_int,
    pub pktRetrans: c_int,
    pub pktRcvRetrans: c_int,
    pub pktSentACK: c_int,
    pub pktRecvACK: c_int,
    pub pktSentNAK: c_int,
    pub pktRecvNAK: c_int,
    pub mbpsSendRate: f64,
    pub mbpsRecvRate: f64,
    pub usSndDuration: i64,
    pub pktReorderDistance: c_int,
    pub pktRcvAvgBelatedTime: f64,
    pub pktRcvBelated: i64,
    pub pktSndDrop: c_int,
    pub pktRcvDrop: c_int,
    pub pktRcvUndecrypt: c_int,
    pub byteSent: u64,
    pub byteRecv: u64,
    pub byteRcvLoss: u64,
    pub byteRetrans: u64,
    pub byteSndDrop: u64,
    pub byteRcvDrop: u64,
    pub byteRcvUndecrypt: u64,

    // instant measurements
    pub usPktSndPeriod: f64,
    pub pktFlowWindow: c_int,
    pub pktCongestionWindow: c_int,
    pub pktFlightSize: c_int,
    pub msRTT: f64,
    pub mbpsBandwidth: f64,
    pub byteAvailSndBuf: c_int,
    pub byteAvailRcvBuf: c_int,
    pub mbpsMaxBW: f64,
    pub byteMSS: c_int,
    pub pktSndBuf: c_int,
    pub byteSndBuf: c_int,
    pub msSndBuf: c_int,
    pub msSndTsbPdDelay: c_int,
    pub pktRcvBuf: c_int,
    pub byteRcvBuf: c_int,
    pub msRcvBuf: c_int,
    pub msRcvTsbPdDelay: c_int,
    pub pktSndFilterExtraTotal: c_int,
    pub pktRcvFilterExtraTotal: c_int,
    pub pktRcvFilterSupplyTotal: c_int,
    pub pktRcvFilterLossTotal: c_int,
    pub pktSndFilterExtra: c_int,
    pub pktRcvFilterExtra: c_int,
    pub pktRcvFilterSupply: c_int,
    pub pktRcvFilterLoss: c_int,
    pub pktReorderTolerance: c_int,

    // new in 1.5.0
    pub pktSentUniqueTotal: i64,
    pub pktRecvUniqueTotal: i64,
    pub byteSentUniqueTotal: u64,
    pub byteRecvUniqueTotal: u64,
    pub pktSentUnique: i64,
    pub pktRecvUnique: i64,
    pub byteSentUnique: u64,
    pub byteRecvUnique: u64,
}

#[link(name = "srt-gnutls")]
unsafe extern "C" {
    pub fn srt_startup() -> c_int;
    pub fn srt_cleanup() -> c_int;
    pub fn srt_getversion() -> u32;

    pub fn srt_create_socket() -> SRTSOCKET;
    pub fn srt_bind(u: SRTSOCKET, name: *const libc::sockaddr, namelen: c_int) -> c_int;
    pub fn srt_listen(u: SRTSOCKET, backlog: c_int) -> c_int;
    pub fn srt_accept(u: SRTSOCKET, addr: *mut libc::sockaddr, addrlen: *mut c_int) -> SRTSOCKET;
    pub fn srt_connect(u: SRTSOCKET, name: *const libc::sockaddr, namelen: c_int) -> c_int;
    pub fn srt_rendezvous(
        u: SRTSOCKET,
        local_name: *const libc::sockaddr,
        local_namelen: c_int,
        remote_name: *const libc::sockaddr,
        remote_namelen: c_int,
    ) -> c_int;
    pub fn srt_close(u: SRTSOCKET) -> c_int;
    pub fn srt_getpeername(u: SRTSOCKET, name: *mut libc::sockaddr, namelen: *mut c_int) -> c_int;
    pub fn srt_getsockname(u: SRTSOCKET, name: *mut libc::sockaddr, namelen: *mut c_int) -> c_int;

    pub fn srt_getsockflag(
        u: SRTSOCKET,
        opt: SRT_SOCKOPT,
        optval: *mut c_void,
        optlen: *mut c_int,
    ) -> c_int;
    pub fn srt_setsockflag(
        u: SRTSOCKET,
        opt: SRT_SOCKOPT,
        optval: *const c_void,
        optlen: c_int,
    ) -> c_int;

    pub fn srt_send(u: SRTSOCKET, buf: *const c_char, len: c_int) -> c_int;

    pub fn srt_getlasterror_str() -> *const c_char;
    pub fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
    pub fn srt_clearlasterror();
    pub fn srt_strerror(code: c_int, errnoval: c_int) -> *const c_char;

    pub fn srt_bstats(u: SRTSOCKET, perf: *mut SRT_TRACEBSTATS, clear: c_int) -> c_int;
    pub fn srt_bistats(
        u: SRTSOCKET,
        perf: *mut SRT_TRACEBSTATS,
        clear: c_int,
        instantaneous: c_int,
    ) -> c_int;

    pub fn srt_getsockstate(u: SRTSOCKET) -> SRT_SOCKSTATUS;

    pub fn srt_epoll_create() -> c_int;
    pub fn srt_epoll_add_usock(eid: c_int, u: SRTSOCKET, events: *const c_int) -> c_int;
    pub fn srt_epoll_remove_usock(eid: c_int, u: SRTSOCKET) -> c_int;
    pub fn srt_epoll_uwait(
        eid: c_int,
        fds_set: *mut SRT_EPOLL_EVENT,
        fds_size: c_int,
        ms_timeout: i64,
    ) -> c_int;
    pub fn srt_epoll_release(eid: c_int) -> c_int;

    pub fn srt_setloglevel(ll: c_int);
    pub fn srt_setloghandler(opaque: *mut c_void, handler: Option<SRT_LOG_HANDLER_FN>);
    pub fn srt_setlogflags(flags: c_int);

    pub fn srt_getrejectreason(sock: SRTSOCKET) -> c_int;
    pub fn srt_rejectreason_str(id: c_int) -> *const c_char;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// Sizes and offsets printed by gcc 12 for `SRT_TRACEBSTATS` from
    /// Debian 12's /usr/include/srt/srt.h (libsrt 1.5.1), x86_64, with:
    ///
    /// ```c
    /// #include <stdio.h>
    /// #include <stddef.h>
    /// #include <srt/srt.h>
    /// int main(void) {
    ///   printf("%zu %zu\n", sizeof(SRT_TRACEBSTATS), _Alignof(SRT_TRACEBSTATS));
    ///   printf("%zu\n", offsetof(SRT_TRACEBSTATS, pktFlightSize)); /* ... */
    /// }
    /// ```
    /// (`gcc sz.c $(pkg-config --cflags --libs srt)`). A missing or mistyped
    /// field shifts everything after it, which these catch.
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn tracebstats_layout_matches_gcc() {
        assert_eq!(size_of::<SRT_TRACEBSTATS>(), 496);
        assert_eq!(align_of::<SRT_TRACEBSTATS>(), 8);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, msTimeStamp), 0);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, usSndDurationTotal), 56);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, byteSentTotal), 80);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktSent), 136);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, mbpsSendRate), 184);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, usSndDuration), 200);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktReorderDistance), 208);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktRcvAvgBelatedTime), 216);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktRcvBelated), 224);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktSndDrop), 232);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, byteSent), 248);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, usPktSndPeriod), 304);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktFlightSize), 320);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, msRTT), 328);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, mbpsBandwidth), 336);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, byteAvailSndBuf), 344);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, mbpsMaxBW), 352);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, byteMSS), 360);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktSndBuf), 364);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, msSndBuf), 372);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, msSndTsbPdDelay), 376);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktReorderTolerance), 428);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, pktSentUniqueTotal), 432);
        assert_eq!(offset_of!(SRT_TRACEBSTATS, byteRecvUnique), 488);
    }

    /// `SRT_EPOLL_EVENT` is two 32-bit ints (gcc: sizeof 8).
    #[test]
    fn epoll_event_layout() {
        assert_eq!(size_of::<SRT_EPOLL_EVENT>(), 8);
    }

    /// The library we link is the 1.5 series the declarations come from
    /// (`srt_getversion` is 0xMMmmpp).
    #[test]
    fn linked_library_is_1_5() {
        // SAFETY: srt_getversion takes no arguments, touches no state and
        // may be called before srt_startup.
        let v = unsafe { srt_getversion() };
        assert_eq!(v >> 8, 0x0105, "libsrt version {v:#x}");
    }
}

//! Network change watcher: owns an rtnetlink socket and its thread, and tells
//! the daemon, once per burst, that links, addresses or routes changed, so
//! SRT caller pushes pinned to a route that no longer exists reconnect at
//! once instead of looking connected while delivering nothing.
//!
//! Three layers, as elsewhere in this crate:
//!
//! - `classify` is the wire parser: bytes of one `recv` in, `Observed`
//!   out, no I/O, bounds-checked (netlink(7), rtnetlink(7)).
//! - `Tracker` decides which observations are a change that matters to a
//!   push, and which are noise (see its docs for what is ignored and why).
//! - `Batch` coalesces a burst: a WAN switch is a dozen messages within a
//!   few milliseconds, and the daemon should reconnect once, not twelve
//!   times. Time is passed in, so it is tested without sleeping.
//!
//! The shell ([`spawn`]) opens the socket in the calling thread's network
//! namespace and runs one std thread that blocks in poll(2) on the socket
//! and on a stop pipe, and hands [`NetChange`]s to a tokio channel.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

/// What changed, coalesced over one burst.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetChange {
    /// Which of "link", "address", "route" changed, in that order.
    pub kinds: Vec<&'static str>,
    /// For humans and logs, e.g. "link wlan0 up; address 192.168.1.20/24
    /// added on wlan0; default route via 192.168.1.1 dev wlan0 added".
    pub summary: String,
}

/// Handle on the watcher thread. Dropping it, or calling [`NetWatch::stop`],
/// ends the thread and waits for it; that join is fine even on an async
/// task, because closing the stop pipe wakes the thread's poll at once and
/// it holds nothing it must finish first. The thread also ends by itself
/// once the receiver is gone and it has a change to deliver.
#[derive(Debug)]
pub struct NetWatch {
    /// Write end of the stop pipe. Nothing is ever written: closing it makes
    /// the read end report POLLHUP. A pipe rather than shutdown(2) on the
    /// netlink socket, because netlink sockets do not implement shutdown
    /// (`sock_no_shutdown`, EOPNOTSUPP); rather than a poll timeout and a
    /// flag, because that would either spin or make stop slow.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl NetWatch {
    /// Ends the watcher thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("network watcher thread panicked");
        }
    }
}

impl Drop for NetWatch {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Changes waiting for the daemon. The daemon reconnects on any of them, so
/// a few suffice; when the channel is full the watcher keeps merging into
/// its pending batch instead of blocking.
const CHANNEL_DEPTH: usize = 8;
/// Large enough for any rtnetlink datagram: notifications are at most
/// NLMSG_GOODSIZE (one page) and dump replies at most 32 KiB
/// (`netlink_dump`); a larger datagram is detected with MSG_TRUNC anyway.
const RECV_BUF: usize = 64 * 1024;
/// Socket receive buffer asked for (the kernel caps it at
/// net.core.rmem_max). A bigger buffer makes ENOBUFS on a burst less likely;
/// an overrun is still handled (reported as "everything changed", then
/// resynchronised).
const SO_RCVBUF_BYTES: libc::c_int = 1 << 20;
/// Datagrams read per wake-up before the batch deadline is checked again, so
/// a message storm cannot postpone delivery forever.
const MAX_DATAGRAMS_PER_WAKE: usize = 64;

/// Starts watching the network namespace of the calling thread.
///
/// The rtnetlink socket is bound to RTMGRP_LINK, RTMGRP_IPV4_IFADDR,
/// RTMGRP_IPV6_IFADDR, RTMGRP_IPV4_ROUTE and RTMGRP_IPV6_ROUTE
/// (rtnetlink(7)); a socket belongs to the namespace it was created in, so
/// this must be called from a thread in the namespace to watch (for the
/// daemon, any thread). Bursts are coalesced: a [`NetChange`] is sent once no
/// further relevant message came for `debounce` (and at the latest after ten
/// times `debounce`, so a flapping link cannot hold back the news).
///
/// Errors (with context) if the socket or the thread cannot be set up; the
/// daemon then runs without the watcher. If the watcher later fails, it logs
/// a warning and the receiver sees the channel close.
pub fn spawn(debounce: Duration) -> io::Result<(mpsc::Receiver<NetChange>, NetWatch)> {
    let sock = Socket::open()?;
    let (stop_rx, stop_tx) = pipe()?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let thread = std::thread::Builder::new()
        .name("netwatch".into())
        .spawn(move || {
            if let Err(e) = run(&sock, &stop_rx, &tx, debounce) {
                tracing::warn!(
                    error = %e,
                    "network watcher stopped; pushes will not reconnect on route changes"
                );
            }
        })
        .map_err(|e| context("spawning the network watcher thread", e))?;
    Ok((
        rx,
        NetWatch {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    ))
}

// ---------------------------------------------------------------------------
// Wire format: <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>,
// <linux/if_addr.h>. All integers are in host byte order (netlink(7));
// addresses inside attributes are in network byte order.

/// sizeof(struct nlmsghdr): u32 len, u16 type, u16 flags, u32 seq, u32 pid.
const NLMSG_HDRLEN: usize = 16;
/// sizeof(struct ifinfomsg): u8 family, u8 pad, u16 type, i32 index,
/// u32 flags, u32 change.
const IFINFOMSG_LEN: usize = 16;
/// sizeof(struct ifaddrmsg): u8 family, u8 prefixlen, u8 flags, u8 scope,
/// u32 index.
const IFADDRMSG_LEN: usize = 8;
/// sizeof(struct rtmsg): u8 family, dst_len, src_len, tos, table, protocol,
/// scope, type; u32 flags.
const RTMSG_LEN: usize = 12;
/// sizeof(struct rtattr): u16 len, u16 type.
const RTA_HDRLEN: usize = 4;

const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const NLMSG_OVERRUN: u16 = libc::NLMSG_OVERRUN as u16;
const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;

const IFLA_IFNAME: u16 = libc::IFLA_IFNAME;
const IFA_ADDRESS: u16 = libc::IFA_ADDRESS;
const IFA_LOCAL: u16 = libc::IFA_LOCAL;
const IFA_FLAGS: u16 = libc::IFA_FLAGS;
const RTA_DST: u16 = libc::RTA_DST;
const RTA_OIF: u16 = libc::RTA_OIF;
const RTA_GATEWAY: u16 = libc::RTA_GATEWAY;
const RTA_TABLE: u16 = libc::RTA_TABLE;

const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_RUNNING: u32 = libc::IFF_RUNNING as u32;
const IFF_LOWER_UP: u32 = libc::IFF_LOWER_UP as u32;
const IFF_LOOPBACK: u32 = libc::IFF_LOOPBACK as u32;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
const RT_TABLE_MAIN: u32 = libc::RT_TABLE_MAIN as u32;
const RT_TABLE_LOCAL: u32 = libc::RT_TABLE_LOCAL as u32;
const RTN_UNICAST: u8 = libc::RTN_UNICAST;
const RTM_F_CLONED: u32 = libc::RTM_F_CLONED;

/// NLMSG_ALIGN / RTA_ALIGN: both round up to 4 bytes.
fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let bytes = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

/// One rtnetlink message, as far as the watcher cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    /// nlmsg_seq and nlmsg_pid: a reply to our own dump request carries our
    /// port id and sequence number; a notification carries the port of
    /// whoever made the change (0 for the kernel).
    pub seq: u32,
    pub port: u32,
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// RTM_NEWLINK / RTM_DELLINK.
    Link(Link),
    /// RTM_NEWADDR / RTM_DELADDR.
    Address(Address),
    /// RTM_NEWROUTE / RTM_DELROUTE.
    Route(Route),
    /// NLMSG_DONE: the end of a dump.
    Done,
    /// NLMSG_ERROR: errno (positive), 0 for an acknowledgement.
    Error(i32),
    /// NLMSG_OVERRUN: data was lost.
    Overrun,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub removed: bool,
    pub family: u8,
    pub index: u32,
    /// ifi_flags: IFF_UP, IFF_RUNNING, IFF_LOWER_UP, IFF_LOOPBACK, …
    pub flags: u32,
    /// IFLA_IFNAME.
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    pub removed: bool,
    pub index: u32,
    pub prefix_len: u8,
    /// IFA_LOCAL if present, else IFA_ADDRESS: on a point-to-point link
    /// IFA_ADDRESS is the peer, and IPv6 sends only IFA_ADDRESS (rtnetlink(7)).
    pub addr: Option<IpAddr>,
    /// IFA_FLAGS if present (it holds the bits that do not fit ifa_flags),
    /// else ifa_flags.
    pub flags: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub removed: bool,
    pub family: u8,
    /// RTA_TABLE if present, else rtm_table (which reads RT_TABLE_COMPAT for
    /// table ids above 255).
    pub table: u32,
    /// rtm_type: RTN_UNICAST, RTN_BLACKHOLE, …
    pub kind: u8,
    /// rtm_flags, e.g. RTM_F_CLONED.
    pub flags: u32,
    pub dst: Option<IpAddr>,
    pub dst_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

/// Parses one datagram read from an rtnetlink socket.
///
/// Messages of other types are skipped; a message whose fixed body is too
/// short is skipped; a header that cannot be framed (length below the header
/// size or beyond the buffer) ends the parse, since nothing after it can be
/// located. Attributes are read until the first malformed one. The kernel
/// never sends such input; this only guarantees no panic on it.
pub(crate) fn classify(buf: &[u8]) -> Vec<Observed> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let (Some(len), Some(ty), Some(seq), Some(port)) = (
            u32_at(rest, 0),
            u16_at(rest, 4),
            u32_at(rest, 8),
            u32_at(rest, 12),
        ) else {
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let body = &rest[NLMSG_HDRLEN..len];
        if let Some(what) = parse_body(ty, body) {
            out.push(Observed { seq, port, what });
        }
        // The last message of a datagram may lack its padding.
        rest = rest.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

fn parse_body(ty: u16, body: &[u8]) -> Option<What> {
    match ty {
        libc::RTM_NEWLINK | libc::RTM_DELLINK => {
            parse_link(ty == libc::RTM_DELLINK, body).map(What::Link)
        }
        libc::RTM_NEWADDR | libc::RTM_DELADDR => {
            parse_address(ty == libc::RTM_DELADDR, body).map(What::Address)
        }
        libc::RTM_NEWROUTE | libc::RTM_DELROUTE => {
            parse_route(ty == libc::RTM_DELROUTE, body).map(What::Route)
        }
        NLMSG_DONE => Some(What::Done),
        // struct nlmsgerr starts with `int error`, a negative errno.
        NLMSG_ERROR => Some(What::Error(
            (u32_at(body, 0)? as i32).checked_neg().unwrap_or(i32::MAX),
        )),
        NLMSG_OVERRUN => Some(What::Overrun),
        _ => None,
    }
}

/// Iterates the `struct rtattr`s of a message tail; stops at the first one
/// whose length does not fit.
struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let len = usize::from(u16_at(self.0, 0)?);
        let ty = u16_at(self.0, 2)? & NLA_TYPE_MASK;
        if len < RTA_HDRLEN || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let payload = &self.0[RTA_HDRLEN..len];
        self.0 = self.0.get(align4(len)..).unwrap_or(&[]);
        Some((ty, payload))
    }
}

fn parse_link(removed: bool, body: &[u8]) -> Option<Link> {
    let attrs = body.get(IFINFOMSG_LEN..)?;
    let mut link = Link {
        removed,
        family: body[0],
        index: u32_at(body, 4)?,
        flags: u32_at(body, 8)?,
        name: None,
    };
    for (ty, payload) in Attrs(attrs) {
        if ty == IFLA_IFNAME {
            let end = payload
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(payload.len());
            link.name = Some(String::from_utf8_lossy(&payload[..end]).into_owned());
        }
    }
    Some(link)
}

fn parse_address(removed: bool, body: &[u8]) -> Option<Address> {
    let attrs = body.get(IFADDRMSG_LEN..)?;
    let family = body[0];
    let mut addr = Address {
        removed,
        index: u32_at(body, 4)?,
        prefix_len: body[1],
        addr: None,
        flags: u32::from(body[2]),
    };
    let (mut local, mut address) = (None, None);
    for (ty, payload) in Attrs(attrs) {
        match ty {
            IFA_LOCAL => local = ip(family, payload),
            IFA_ADDRESS => address = ip(family, payload),
            IFA_FLAGS => addr.flags = u32_at(payload, 0).unwrap_or(addr.flags),
            _ => {}
        }
    }
    addr.addr = local.or(address);
    Some(addr)
}

fn parse_route(removed: bool, body: &[u8]) -> Option<Route> {
    let attrs = body.get(RTMSG_LEN..)?;
    let family = body[0];
    let mut route = Route {
        removed,
        family,
        table: u32::from(body[4]),
        kind: body[7],
        flags: u32_at(body, 8)?,
        dst: None,
        dst_len: body[1],
        gateway: None,
        oif: None,
    };
    for (ty, payload) in Attrs(attrs) {
        match ty {
            RTA_DST => route.dst = ip(family, payload),
            RTA_GATEWAY => route.gateway = ip(family, payload),
            RTA_OIF => route.oif = u32_at(payload, 0),
            RTA_TABLE => route.table = u32_at(payload, 0).unwrap_or(route.table),
            _ => {}
        }
    }
    Some(route)
}

fn ip(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// What the watcher asks the kernel to dump when it (re)starts, to learn the
/// current state without reporting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dump {
    Links,
    Addresses,
}

/// An RTM_GETLINK or RTM_GETADDR dump request for every family. The body is
/// a zeroed ifinfomsg / ifaddrmsg rather than the legacy one-byte rtgenmsg,
/// which kernels with NETLINK_GET_STRICT_CHK would refuse.
fn dump_request(dump: Dump, seq: u32) -> Vec<u8> {
    let (ty, body) = match dump {
        Dump::Links => (libc::RTM_GETLINK, IFINFOMSG_LEN),
        Dump::Addresses => (libc::RTM_GETADDR, IFADDRMSG_LEN),
    };
    let len = NLMSG_HDRLEN + body;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: filled in by the kernel
    msg.resize(len, 0);
    msg
}

// ---------------------------------------------------------------------------
// Decisions.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Link,
    Address,
    Route,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Link, Kind::Address, Kind::Route];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Link => "link",
            Kind::Address => "address",
            Kind::Route => "route",
        }
    }
}

/// One relevant change, before coalescing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    kind: Kind,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LinkState {
    name: Option<String>,
    flags: u32,
}

/// The link flags a push cares about: administratively up, operationally
/// up (RUNNING follows operstate), and carrier.
const LINK_STATE_FLAGS: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

/// Knows the current links and addresses and decides which messages are a
/// change worth reconnecting for.
///
/// Reported: a link appearing up, going up or down, losing or regaining
/// carrier, being renamed or removed; a usable address added or removed; any
/// route added or removed in a table other than `local`.
///
/// Ignored as noise, and why:
/// - RTM_NEWLINK that leaves UP/RUNNING/LOWER_UP and the name unchanged:
///   statistics, MTU, alias, qdisc and wireless events (IFLA_WIRELESS scan
///   results arrive as RTM_NEWLINK every few seconds on Wi-Fi).
/// - A link that appears administratively down: it carries nothing yet; it
///   is reported when it comes up.
/// - AF_BRIDGE link messages: bridge port state, sent in addition to the
///   device's own message; an RTM_DELLINK of this family means "left the
///   bridge", not "gone".
/// - Anything on loopback (IFF_LOOPBACK, 127.0.0.0/8, ::1): pushes do not
///   leave through it.
/// - RTM_NEWADDR for an address already known with the same usability: the
///   kernel re-sends the address whenever a router advertisement refreshes
///   its lifetimes, which on IPv6 mobile networks is every few minutes.
/// - IPv6 addresses that are tentative (duplicate address detection running,
///   RFC 4862 section 5.4) or whose DAD failed: the kernel will not use them
///   as a source (RFC 6724 section 4). The address is reported when DAD
///   completes, which is the moment it becomes usable.
/// - IPv6 link-local addresses and routes (fe80::/10): not a path to an
///   ingest server, and they come and go with every link event already
///   reported.
/// - Routes in table `local` (255): the kernel's host and broadcast routes
///   for each address, mirrors of the address messages.
/// - Cloned routes (RTM_F_CLONED): PMTU and redirect exceptions, not
///   configuration.
/// - Unicast routes through loopback.
///
/// Routes are deliberately not de-duplicated, and tables other than `local`
/// are all watched: multi-WAN policy routing keeps each uplink's default
/// route in its own table, and the kernel flushes IPv4 routes silently when
/// a link goes down, so a cache of routes would go stale and could hide the
/// very re-add a WAN switch consists of. The cost is that a DHCP client that
/// re-applies an identical route on renewal causes one reconnect.
struct Tracker {
    links: HashMap<u32, LinkState>,
    /// (interface index, address, prefix length) → usable.
    addrs: HashMap<(u32, IpAddr, u8), bool>,
    /// Name of an interface the tracker has not seen (if_indextoname in the
    /// daemon, a stub in tests).
    resolve: fn(u32) -> Option<String>,
}

impl Tracker {
    fn new(resolve: fn(u32) -> Option<String>) -> Self {
        Self {
            links: HashMap::new(),
            addrs: HashMap::new(),
            resolve,
        }
    }

    /// Forgets everything, after messages were lost.
    fn clear(&mut self) {
        self.links.clear();
        self.addrs.clear();
    }

    /// Updates the state from one message and says whether it was a change
    /// worth reporting. Dump replies go through here too, with the answer
    /// dropped: they describe the state as it is, not a change.
    fn observe(&mut self, what: &What) -> Option<Change> {
        match what {
            What::Link(l) => self.link(l),
            What::Address(a) => self.address(a),
            What::Route(r) => self.route(r),
            What::Done | What::Error(_) | What::Overrun => None,
        }
    }

    fn name(&self, index: u32) -> String {
        self.links
            .get(&index)
            .and_then(|l| l.name.clone())
            .or_else(|| (self.resolve)(index))
            .unwrap_or_else(|| format!("if#{index}"))
    }

    fn is_loopback(&self, index: u32) -> bool {
        self.links
            .get(&index)
            .is_some_and(|l| l.flags & IFF_LOOPBACK != 0)
    }

    fn link(&mut self, l: &Link) -> Option<Change> {
        if l.family == AF_BRIDGE {
            return None;
        }
        let change = |text: String| {
            Some(Change {
                kind: Kind::Link,
                text,
            })
        };
        if l.removed {
            let name = l.name.clone().unwrap_or_else(|| self.name(l.index));
            let prev = self.links.remove(&l.index);
            self.addrs.retain(|(index, _, _), _| *index != l.index);
            let loopback = (l.flags | prev.map_or(0, |p| p.flags)) & IFF_LOOPBACK != 0;
            return if loopback {
                None
            } else {
                change(format!("link {name} removed"))
            };
        }
        // Every RTM_NEWLINK carries IFLA_IFNAME; keep the old name should
        // one not.
        let name = l
            .name
            .clone()
            .or_else(|| self.links.get(&l.index)?.name.clone());
        let prev = self.links.insert(
            l.index,
            LinkState {
                name,
                flags: l.flags,
            },
        );
        if l.flags & IFF_LOOPBACK != 0 {
            return None;
        }
        let name = self.name(l.index);
        let state = link_state(l.flags);
        match prev {
            None if l.flags & IFF_UP != 0 => change(format!("link {name} added, {state}")),
            None => None,
            Some(p) if p.flags & LINK_STATE_FLAGS != l.flags & LINK_STATE_FLAGS => {
                change(format!("link {name} {state}"))
            }
            Some(LinkState {
                name: Some(old), ..
            }) if l.name.as_ref().is_some_and(|new| *new != old) => {
                change(format!("link {old} renamed to {name}"))
            }
            Some(_) => None,
        }
    }

    fn address(&mut self, a: &Address) -> Option<Change> {
        let addr = a.addr?;
        if addr.is_loopback() || is_v6_link_local(addr) || self.is_loopback(a.index) {
            return None;
        }
        let key = (a.index, addr, a.prefix_len);
        let on = self.name(a.index);
        let shown = format!("{addr}/{}", a.prefix_len);
        let change = |text: String| {
            Some(Change {
                kind: Kind::Address,
                text,
            })
        };
        if a.removed {
            // Unknown is reported too: better one reconnect too many than a
            // push left on a source address that is gone.
            return match self.addrs.remove(&key) {
                Some(false) => None,
                _ => change(format!("address {shown} removed from {on}")),
            };
        }
        let usable = address_usable(a.flags);
        match (self.addrs.insert(key, usable), usable) {
            (Some(true), true) | (None | Some(false), false) => None,
            (None | Some(false), true) => change(format!("address {shown} added on {on}")),
            (Some(true), false) => change(format!("address {shown} no longer usable on {on}")),
        }
    }

    fn route(&self, r: &Route) -> Option<Change> {
        if r.table == RT_TABLE_LOCAL
            || r.flags & RTM_F_CLONED != 0
            || !(r.family == AF_INET || r.family == AF_INET6)
            || (r.dst_len >= 10 && r.dst.is_some_and(is_v6_link_local))
            || (r.kind == RTN_UNICAST && r.oif.is_some_and(|i| self.is_loopback(i)))
        {
            return None;
        }
        let mut text = match r.dst {
            _ if r.dst_len == 0 => "default route".to_string(),
            Some(dst) => format!("route {dst}/{}", r.dst_len),
            None => format!("route ?/{}", r.dst_len),
        };
        if let Some(gw) = r.gateway {
            text.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = r.oif {
            text.push_str(&format!(" dev {}", self.name(oif)));
        }
        if r.table != RT_TABLE_MAIN {
            text.push_str(&format!(" table {}", r.table));
        }
        text.push_str(if r.removed { " removed" } else { " added" });
        Some(Change {
            kind: Kind::Route,
            text,
        })
    }
}

fn link_state(flags: u32) -> &'static str {
    if flags & IFF_UP == 0 {
        "down"
    } else if flags & IFF_RUNNING == 0 {
        "up, no carrier"
    } else {
        "up"
    }
}

/// An address the kernel will use as a source: not failed DAD, and not
/// tentative unless optimistic (RFC 4429 lets an optimistic address be used
/// while DAD runs).
fn address_usable(flags: u32) -> bool {
    flags & libc::IFA_F_DADFAILED == 0
        && (flags & libc::IFA_F_TENTATIVE == 0 || flags & libc::IFA_F_OPTIMISTIC != 0)
}

/// fe80::/10 (RFC 4291 section 2.5.6).
fn is_v6_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// At most this many change descriptions in one summary; the rest are
/// counted. The daemon acts on `kinds`; the summary is for the log.
const MAX_SUMMARY_PARTS: usize = 8;

/// Coalesces the changes of one burst.
struct Batch {
    debounce: Duration,
    /// When the first and the latest change of the pending burst came.
    window: Option<(Instant, Instant)>,
    kinds: Vec<Kind>,
    parts: Vec<String>,
    more: usize,
}

impl Batch {
    fn new(debounce: Duration) -> Self {
        Self {
            debounce,
            window: None,
            kinds: Vec::new(),
            parts: Vec::new(),
            more: 0,
        }
    }

    fn push(&mut self, change: Change, now: Instant) {
        self.window = Some(match self.window {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
        if !self.kinds.contains(&change.kind) {
            self.kinds.push(change.kind);
        }
        if !self.parts.contains(&change.text) {
            if self.parts.len() < MAX_SUMMARY_PARTS {
                self.parts.push(change.text);
            } else {
                self.more += 1;
            }
        }
    }

    /// When the pending burst is due: `debounce` after its latest change, but
    /// no later than ten debounces after its first.
    fn deadline(&self) -> Option<Instant> {
        self.window
            .map(|(first, last)| (last + self.debounce).min(first + self.debounce * 10))
    }

    fn take(&mut self) -> NetChange {
        self.kinds.sort();
        let mut summary = self.parts.join("; ");
        if self.more > 0 {
            summary.push_str(&format!("; and {} more", self.more));
        }
        let change = NetChange {
            kinds: self.kinds.iter().map(|k| k.as_str()).collect(),
            summary,
        };
        *self = Self::new(self.debounce);
        change
    }

    /// Puts back a change the daemon had no room for, to be merged with
    /// whatever comes next and offered again after `debounce`.
    fn restore(&mut self, change: NetChange, now: Instant) {
        for kind in Kind::ALL {
            if change.kinds.contains(&kind.as_str()) {
                self.push(
                    Change {
                        kind,
                        text: change.summary.clone(),
                    },
                    now,
                );
            }
        }
        self.window = Some((now, now));
    }
}

// ---------------------------------------------------------------------------
// The shell: socket, thread, loop.

/// Runs the dumps that teach the tracker the current state, one at a time
/// (a netlink socket runs one dump at a time; a second request is refused
/// with EBUSY while one is in progress).
#[derive(Default)]
struct Resync {
    pending: Vec<Dump>,
    /// Sequence number of the dump in progress, if any.
    active: Option<u32>,
    seq: u32,
}

impl Resync {
    fn start(&mut self, sock: &Socket) {
        self.pending = vec![Dump::Addresses, Dump::Links]; // popped from the back
        if self.active.is_none() {
            self.next(sock);
        }
    }

    /// After the dump in progress ended, sends the next request. A failed
    /// send only leaves the tracker without a baseline: it then reports the
    /// first sighting of each thing, erring on the side of a reconnect.
    fn next(&mut self, sock: &Socket) {
        self.active = None;
        if let Some(dump) = self.pending.pop() {
            self.seq = self.seq.wrapping_add(1).max(1);
            match sock.send(&dump_request(dump, self.seq)) {
                Ok(()) => self.active = Some(self.seq),
                Err(e) => {
                    tracing::warn!(error = %e, ?dump, "network watcher: dump request failed");
                    self.pending.clear();
                }
            }
        }
    }
}

fn run(
    sock: &Socket,
    stop: &OwnedFd,
    tx: &mpsc::Sender<NetChange>,
    debounce: Duration,
) -> io::Result<()> {
    let mut tracker = Tracker::new(interface_name);
    let mut batch = Batch::new(debounce);
    let mut resync = Resync::default();
    let mut buf = vec![0u8; RECV_BUF];
    resync.start(sock);
    loop {
        let timeout = batch
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let (readable, stopped) = wait(sock, stop, timeout)?;
        if stopped {
            return Ok(());
        }
        if readable {
            for _ in 0..MAX_DATAGRAMS_PER_WAKE {
                let n = match sock.recv(&mut buf)? {
                    Recv::Empty => break,
                    Recv::Lost => {
                        lost(&mut tracker, &mut batch, &mut resync, sock);
                        continue;
                    }
                    Recv::Data(n) => n,
                };
                let now = Instant::now();
                for obs in classify(&buf[..n]) {
                    if obs.port == sock.port {
                        // A reply to our own dump request; replies to an
                        // earlier, abandoned dump are dropped.
                        if resync.active == Some(obs.seq) {
                            match obs.what {
                                What::Done | What::Error(_) => resync.next(sock),
                                // The state as it is, not a change.
                                what => {
                                    tracker.observe(&what);
                                }
                            }
                        }
                    } else if obs.what == What::Overrun {
                        lost(&mut tracker, &mut batch, &mut resync, sock);
                    } else if let Some(change) = tracker.observe(&obs.what) {
                        batch.push(change, now);
                    }
                }
            }
        }
        let now = Instant::now();
        if batch.deadline().is_some_and(|d| d <= now) {
            match tx.try_send(batch.take()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(change)) => batch.restore(change, now),
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            }
        }
    }
}

/// Messages were lost (ENOBUFS, see netlink(7)): anything may have changed,
/// so say so, and relearn the state. Dump replies themselves are not lost:
/// the kernel produces them as the reader drains the socket.
fn lost(tracker: &mut Tracker, batch: &mut Batch, resync: &mut Resync, sock: &Socket) {
    tracing::debug!("network watcher: netlink receive buffer overran; resynchronising");
    tracker.clear();
    let now = Instant::now();
    for kind in Kind::ALL {
        batch.push(
            Change {
                kind,
                text: "netlink messages lost; assuming everything changed".into(),
            },
            now,
        );
    }
    resync.start(sock);
}

/// Blocks until the socket is readable, the stop pipe is closed, or the
/// timeout passes. Returns (readable, stopped).
fn wait(sock: &Socket, stop: &OwnedFd, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
    let timeout_ms = match timeout {
        None => -1,
        // Rounded up: waking a millisecond early would only spin once more.
        Some(t) => libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX),
    };
    let mut fds = [
        libc::pollfd {
            fd: sock.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the
    // call, and its length is passed alongside.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(context("poll on the netlink socket", e));
    }
    // POLLERR on the netlink socket is a pending ENOBUFS; recv reports it.
    let readable = fds[0].revents & (libc::POLLIN | libc::POLLERR) != 0;
    let stopped = fds[1].revents != 0;
    Ok((readable, stopped))
}

struct Socket {
    fd: OwnedFd,
    /// The port id (nl_pid) the kernel assigned at bind.
    port: u32,
}

enum Recv {
    Data(usize),
    /// Nothing more to read for now.
    Empty,
    /// Messages were dropped (ENOBUFS) or a datagram did not fit.
    Lost,
}

impl Socket {
    fn open() -> io::Result<Self> {
        // SAFETY: plain syscall with constant arguments.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(context(
                "opening an rtnetlink socket",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a freshly opened descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let rcvbuf = SO_RCVBUF_BYTES;
        // SAFETY: the option value points at a c_int that outlives the call,
        // and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(context(
                "setting SO_RCVBUF on the rtnetlink socket",
                io::Error::last_os_error(),
            ));
        }

        // SAFETY: sockaddr_nl is plain old data; all zeroes is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = 0; // let the kernel assign a unique port id
        addr.nl_groups = (libc::RTMGRP_LINK
            | libc::RTMGRP_IPV4_IFADDR
            | libc::RTMGRP_IPV6_IFADDR
            | libc::RTMGRP_IPV4_ROUTE
            | libc::RTMGRP_IPV6_ROUTE) as u32;
        let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                len,
            )
        };
        if rc < 0 {
            return Err(context(
                "binding the rtnetlink socket to the link, address and route groups",
                io::Error::last_os_error(),
            ));
        }

        let mut bound: libc::sockaddr_nl = addr;
        let mut bound_len = len;
        // SAFETY: `bound` has room for `bound_len` bytes, which the kernel
        // updates.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut bound as *mut libc::sockaddr_nl).cast(),
                &mut bound_len,
            )
        };
        if rc < 0 {
            return Err(context(
                "reading the rtnetlink socket's port id",
                io::Error::last_os_error(),
            ));
        }
        Ok(Self {
            fd,
            port: bound.nl_pid,
        })
    }

    /// Sends one request to the kernel (port 0, the default destination of
    /// an unconnected netlink socket).
    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is valid for `msg.len()` bytes.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            return Err(context(
                "sending a dump request on the rtnetlink socket",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Recv> {
        loop {
            // MSG_TRUNC makes netlink return the datagram's real length, so
            // a datagram larger than `buf` is noticed instead of parsed
            // half (netlink(7)).
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n >= 0 {
                let n = n as usize;
                return Ok(if n > buf.len() {
                    Recv::Lost
                } else {
                    Recv::Data(n)
                });
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(Recv::Empty),
                Some(libc::ENOBUFS) => return Ok(Recv::Lost),
                _ => return Err(context("receiving from the rtnetlink socket", e)),
            }
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(context(
            "creating the network watcher's stop pipe",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// if_indextoname(3), for interfaces the tracker has not seen a message for.
fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // -- Message builders: what the kernel would send, byte by byte. --------

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((RTA_HDRLEN + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align4(a.len()), 0);
        a
    }

    fn msg(ty: u16, seq: u32, port: u32, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&port.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize(align4(m.len()), 0);
        m
    }

    fn link_msg(ty: u16, index: u32, flags: u32, name: Option<&str>) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body[8..12].copy_from_slice(&flags.to_ne_bytes());
        if let Some(name) = name {
            let mut z = name.as_bytes().to_vec();
            z.push(0);
            body.extend(attr(IFLA_IFNAME, &z));
        }
        msg(ty, 0, 0, &body)
    }

    fn addr4_msg(ty: u16, index: u32, addr: [u8; 4], prefix: u8) -> Vec<u8> {
        let mut body = vec![AF_INET, prefix, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend(attr(IFA_ADDRESS, &addr));
        body.extend(attr(IFA_LOCAL, &addr));
        msg(ty, 0, 0, &body)
    }

    fn route4_msg(ty: u16, table: u8, gateway: Option<[u8; 4]>, oif: u32) -> Vec<u8> {
        let mut body = vec![AF_INET, 0, 0, 0, table, 3, 0, RTN_UNICAST];
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend(attr(RTA_TABLE, &u32::from(table).to_ne_bytes()));
        if let Some(gw) = gateway {
            body.extend(attr(RTA_GATEWAY, &gw));
        }
        body.extend(attr(RTA_OIF, &oif.to_ne_bytes()));
        msg(ty, 0, 0, &body)
    }

    fn link(removed: bool, index: u32, flags: u32, name: &str) -> What {
        What::Link(Link {
            removed,
            family: 0,
            index,
            flags,
            name: Some(name.into()),
        })
    }

    fn addr(removed: bool, index: u32, a: &str, prefix_len: u8, flags: u32) -> What {
        What::Address(Address {
            removed,
            index,
            prefix_len,
            addr: Some(a.parse().unwrap()),
            flags,
        })
    }

    fn route(table: u32, dst: Option<&str>, dst_len: u8, gw: Option<&str>, oif: u32) -> Route {
        let family = match dst.or(gw) {
            Some(s) if s.contains(':') => AF_INET6,
            _ => AF_INET,
        };
        Route {
            removed: false,
            family,
            table,
            kind: RTN_UNICAST,
            flags: 0,
            dst: dst.map(|d| d.parse().unwrap()),
            dst_len,
            gateway: gw.map(|g| g.parse().unwrap()),
            oif: Some(oif),
        }
    }

    const UP: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

    fn tracker() -> Tracker {
        Tracker::new(|_| None)
    }

    // -- classify -----------------------------------------------------------

    #[test]
    fn parses_a_link_message_with_its_name() {
        let buf = link_msg(libc::RTM_NEWLINK, 3, UP, Some("wlan0"));
        assert_eq!(
            classify(&buf),
            vec![Observed {
                seq: 0,
                port: 0,
                what: link(false, 3, UP, "wlan0"),
            }]
        );
    }

    #[test]
    fn parses_an_ipv4_address_preferring_ifa_local_and_ifa_flags() {
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
        let mut body = vec![AF_INET, 32, 0x40, 0];
        body.extend_from_slice(&7u32.to_ne_bytes());
        body.extend(attr(IFA_ADDRESS, &[10, 64, 64, 64]));
        body.extend(attr(IFA_LOCAL, &[100, 64, 0, 2]));
        body.extend(attr(IFA_FLAGS, &0x80u32.to_ne_bytes()));
        let buf = msg(libc::RTM_DELADDR, 5, 9, &body);
        assert_eq!(
            classify(&buf),
            vec![Observed {
                seq: 5,
                port: 9,
                what: addr(true, 7, "100.64.0.2", 32, 0x80),
            }]
        );
    }

    #[test]
    fn parses_an_ipv6_address_from_ifa_address() {
        let v6: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let mut body = vec![AF_INET6, 64, 0, 0];
        body.extend_from_slice(&2u32.to_ne_bytes());
        body.extend(attr(IFA_ADDRESS, &v6.octets()));
        let buf = msg(libc::RTM_NEWADDR, 0, 0, &body);
        assert_eq!(classify(&buf)[0].what, addr(false, 2, "2001:db8::5", 64, 0));
    }

    #[test]
    fn parses_a_default_route_with_table_gateway_and_device() {
        let buf = route4_msg(libc::RTM_NEWROUTE, 254, Some([192, 168, 1, 1]), 4);
        assert_eq!(
            classify(&buf)[0].what,
            What::Route(route(254, None, 0, Some("192.168.1.1"), 4))
        );
    }

    #[test]
    fn rta_table_overrides_rtm_table_compat() {
        let mut buf = route4_msg(libc::RTM_DELROUTE, 252, None, 4);
        // RTA_TABLE is the first attribute: header + rtmsg + rta header.
        let at = NLMSG_HDRLEN + RTMSG_LEN + RTA_HDRLEN;
        buf[at..at + 4].copy_from_slice(&1000u32.to_ne_bytes());
        let What::Route(r) = &classify(&buf)[0].what else {
            panic!("not a route")
        };
        assert_eq!((r.table, r.removed), (1000, true));
    }

    #[test]
    fn parses_several_messages_and_control_messages_in_one_datagram() {
        // "eth10" plus NUL is 6 bytes: the attribute needs padding, which
        // the next attribute and message must be aligned past.
        let mut buf = link_msg(libc::RTM_NEWLINK, 2, 0, Some("eth10"));
        buf.extend(msg(0x7777, 0, 0, &[1, 2, 3, 4])); // unknown type: skipped
        buf.extend(addr4_msg(libc::RTM_NEWADDR, 2, [10, 0, 0, 1], 8));
        buf.extend(msg(NLMSG_ERROR, 4, 1, &(-16i32).to_ne_bytes()));
        buf.extend(msg(NLMSG_DONE, 4, 1, &0i32.to_ne_bytes()));
        buf.extend(msg(NLMSG_OVERRUN, 0, 0, &[]));
        let whats: Vec<What> = classify(&buf).into_iter().map(|o| o.what).collect();
        assert_eq!(
            whats,
            vec![
                link(false, 2, 0, "eth10"),
                addr(false, 2, "10.0.0.1", 8, 0),
                What::Error(16),
                What::Done,
                What::Overrun,
            ]
        );
    }

    #[test]
    fn a_short_body_skips_that_message_only() {
        // A NEWLINK with only 8 of the 16 ifinfomsg bytes.
        let mut buf = msg(libc::RTM_NEWLINK, 0, 0, &[0; 8]);
        buf.extend(link_msg(libc::RTM_DELLINK, 5, 0, None));
        let whats: Vec<What> = classify(&buf).into_iter().map(|o| o.what).collect();
        assert_eq!(
            whats,
            vec![What::Link(Link {
                removed: true,
                family: 0,
                index: 5,
                flags: 0,
                name: None,
            })]
        );
    }

    #[test]
    fn truncated_datagrams_yield_only_whole_messages() {
        let mut buf = link_msg(libc::RTM_NEWLINK, 2, UP, Some("wwan0"));
        buf.extend(addr4_msg(libc::RTM_NEWADDR, 2, [10, 0, 0, 1], 8));
        buf.extend(route4_msg(
            libc::RTM_NEWROUTE,
            254,
            Some([10, 0, 0, 254]),
            2,
        ));
        let full = classify(&buf);
        assert_eq!(full.len(), 3);
        for cut in 0..buf.len() {
            let part = classify(&buf[..cut]);
            assert!(full.starts_with(&part), "cut at {cut}: {part:?}");
        }
    }

    #[test]
    fn bad_lengths_stop_the_parse_without_panicking() {
        // nlmsg_len smaller than the header, then larger than the buffer.
        for len in [0u32, 4, 15, 1 << 31, u32::MAX] {
            let mut buf = link_msg(libc::RTM_NEWLINK, 1, 0, Some("x"));
            buf[..4].copy_from_slice(&len.to_ne_bytes());
            assert_eq!(classify(&buf), vec![], "nlmsg_len {len}");
        }
        // An attribute claiming more than the message holds, and one shorter
        // than its own header: the link is still reported, without a name.
        for rta_len in [0u16, 3, 200, u16::MAX] {
            let mut buf = link_msg(libc::RTM_NEWLINK, 1, 0, Some("x"));
            let at = NLMSG_HDRLEN + IFINFOMSG_LEN;
            buf[at..at + 2].copy_from_slice(&rta_len.to_ne_bytes());
            let whats: Vec<What> = classify(&buf).into_iter().map(|o| o.what).collect();
            assert_eq!(
                whats,
                vec![What::Link(Link {
                    removed: false,
                    family: 0,
                    index: 1,
                    flags: 0,
                    name: None,
                })],
                "rta_len {rta_len}"
            );
        }
        // An address of the wrong size for its family is left out.
        let mut body = vec![AF_INET, 24, 0, 0];
        body.extend_from_slice(&1u32.to_ne_bytes());
        body.extend(attr(IFA_LOCAL, &[10, 0, 0]));
        let What::Address(a) = &classify(&msg(libc::RTM_NEWADDR, 0, 0, &body))[0].what else {
            panic!("not an address")
        };
        assert_eq!(a.addr, None);
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = classify(&bytes);
        }

        #[test]
        fn garbage_after_a_valid_message_keeps_the_message(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let mut buf = link_msg(libc::RTM_NEWLINK, 9, UP, Some("eth0"));
            buf.extend(bytes);
            let out = classify(&buf);
            proptest::prop_assert_eq!(&out[0].what, &link(false, 9, UP, "eth0"));
        }
    }

    #[test]
    fn dump_requests_are_well_formed() {
        let req = dump_request(Dump::Addresses, 7);
        assert_eq!(req.len(), NLMSG_HDRLEN + IFADDRMSG_LEN);
        assert_eq!(u32_at(&req, 0), Some(req.len() as u32));
        assert_eq!(u16_at(&req, 4), Some(libc::RTM_GETADDR));
        assert_eq!(
            u16_at(&req, 6),
            Some((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16)
        );
        assert_eq!(u32_at(&req, 8), Some(7));
        assert!(req[NLMSG_HDRLEN..].iter().all(|&b| b == 0));
        assert_eq!(
            dump_request(Dump::Links, 1).len(),
            NLMSG_HDRLEN + IFINFOMSG_LEN
        );
    }

    // -- Tracker ------------------------------------------------------------

    fn texts(t: &mut Tracker, whats: &[What]) -> Vec<String> {
        whats
            .iter()
            .filter_map(|w| t.observe(w))
            .map(|c| c.text)
            .collect()
    }

    #[test]
    fn link_statistics_and_repeats_are_noise_but_state_changes_are_not() {
        let mut t = tracker();
        t.observe(&link(false, 3, UP, "wlan0")); // as from the dump
        assert_eq!(
            texts(&mut t, &[link(false, 3, UP, "wlan0")]),
            Vec::<String>::new()
        );
        // Other flags (e.g. IFF_PROMISC) are not a path change either.
        let promisc = libc::IFF_PROMISC as u32;
        assert!(t.observe(&link(false, 3, UP | promisc, "wlan0")).is_none());
        assert_eq!(
            texts(
                &mut t,
                &[
                    link(false, 3, IFF_UP, "wlan0"),
                    link(false, 3, 0, "wlan0"),
                    link(false, 3, UP, "wlan0"),
                    link(false, 3, UP, "wan"),
                    link(true, 3, UP, "wan"),
                ]
            ),
            [
                "link wlan0 up, no carrier",
                "link wlan0 down",
                "link wlan0 up",
                "link wlan0 renamed to wan",
                "link wan removed",
            ]
        );
    }

    #[test]
    fn a_new_link_counts_once_it_is_up() {
        let mut t = tracker();
        assert_eq!(
            texts(
                &mut t,
                &[link(false, 4, 0, "veth0"), link(false, 4, UP, "veth0")]
            ),
            ["link veth0 up"]
        );
        assert_eq!(
            texts(&mut t, &[link(false, 5, UP, "usb0")]),
            ["link usb0 added, up"]
        );
    }

    #[test]
    fn loopback_and_bridge_port_messages_are_ignored() {
        let mut t = tracker();
        let lo = IFF_LOOPBACK;
        assert_eq!(
            texts(
                &mut t,
                &[
                    link(false, 1, lo, "lo"),
                    link(false, 1, lo | UP, "lo"),
                    addr(false, 1, "127.0.0.1", 8, 0),
                    addr(false, 1, "10.9.9.9", 32, 0), // an anycast /32 on lo
                    What::Route(route(254, Some("::1"), 128, None, 1)),
                    link(true, 1, lo, "lo"),
                ]
            ),
            Vec::<String>::new()
        );
        let bridge_port = What::Link(Link {
            removed: true,
            family: AF_BRIDGE,
            index: 6,
            flags: UP,
            name: Some("eth1".into()),
        });
        assert!(t.observe(&bridge_port).is_none());
    }

    #[test]
    fn address_refreshes_are_noise_and_tentative_addresses_count_when_usable() {
        let mut t = tracker();
        t.observe(&link(false, 2, UP, "wwan0"));
        let tentative = libc::IFA_F_TENTATIVE;
        assert_eq!(
            texts(
                &mut t,
                &[
                    addr(false, 2, "192.0.2.7", 24, 0),
                    addr(false, 2, "192.0.2.7", 24, 0), // lifetime refresh
                    addr(false, 2, "2001:db8::7", 64, tentative),
                    addr(false, 2, "2001:db8::7", 64, 0), // DAD done
                    addr(false, 2, "2001:db8::7", 64, libc::IFA_F_DEPRECATED),
                    addr(
                        false,
                        2,
                        "2001:db8::8",
                        64,
                        tentative | libc::IFA_F_DADFAILED
                    ),
                    addr(true, 2, "2001:db8::8", 64, libc::IFA_F_DADFAILED),
                    addr(false, 2, "fe80::1", 64, 0),
                    addr(true, 2, "192.0.2.7", 24, 0),
                    addr(true, 2, "198.51.100.1", 24, 0), // never seen: still reported
                ]
            ),
            [
                "address 192.0.2.7/24 added on wwan0",
                "address 2001:db8::7/64 added on wwan0",
                "address 192.0.2.7/24 removed from wwan0",
                "address 198.51.100.1/24 removed from wwan0",
            ]
        );
    }

    #[test]
    fn removing_a_link_forgets_its_addresses() {
        let mut t = tracker();
        t.observe(&link(false, 2, UP, "eth0"));
        t.observe(&addr(false, 2, "192.0.2.7", 24, 0));
        t.observe(&link(true, 2, 0, "eth0"));
        // Same index reused by a new interface with the same address.
        t.observe(&link(false, 2, UP, "eth0"));
        assert_eq!(
            texts(&mut t, &[addr(false, 2, "192.0.2.7", 24, 0)]),
            ["address 192.0.2.7/24 added on eth0"]
        );
    }

    #[test]
    fn routes_in_main_and_policy_tables_count_local_and_cloned_do_not() {
        let mut t = tracker();
        t.observe(&link(false, 3, UP, "wlan0"));
        let mut removed = route(254, None, 0, Some("192.168.1.1"), 3);
        removed.removed = true;
        let mut cloned = route(254, Some("203.0.113.9"), 32, None, 3);
        cloned.flags = RTM_F_CLONED;
        let mut blackhole = route(254, Some("2001:db8::"), 32, None, 1);
        blackhole.kind = libc::RTN_BLACKHOLE;
        t.observe(&link(false, 1, IFF_LOOPBACK | UP, "lo"));
        assert_eq!(
            texts(
                &mut t,
                &[
                    What::Route(route(254, None, 0, Some("192.168.1.1"), 3)),
                    What::Route(route(254, Some("192.168.1.0"), 24, None, 3)),
                    What::Route(route(100, None, 0, Some("fe80::1"), 9)),
                    What::Route(route(255, Some("192.168.1.20"), 32, None, 3)),
                    What::Route(route(254, Some("fe80::"), 64, None, 3)),
                    What::Route(cloned),
                    What::Route(blackhole),
                    What::Route(removed),
                ]
            ),
            [
                "default route via 192.168.1.1 dev wlan0 added",
                "route 192.168.1.0/24 dev wlan0 added",
                "default route via fe80::1 dev if#9 table 100 added",
                "route 2001:db8::/32 dev lo added",
                "default route via 192.168.1.1 dev wlan0 removed",
            ]
        );
    }

    // -- Batch --------------------------------------------------------------

    fn change(kind: Kind, text: &str) -> Change {
        Change {
            kind,
            text: text.into(),
        }
    }

    #[test]
    fn a_burst_is_one_change_due_a_debounce_after_its_last_message() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Batch::new(ms(300));
        assert_eq!(b.deadline(), None);
        b.push(change(Kind::Route, "default route removed"), t0);
        assert_eq!(b.deadline(), Some(t0 + ms(300)));
        b.push(change(Kind::Link, "link wwan0 down"), t0 + ms(100));
        b.push(change(Kind::Route, "default route removed"), t0 + ms(150));
        assert_eq!(b.deadline(), Some(t0 + ms(450)));
        assert_eq!(
            b.take(),
            NetChange {
                kinds: vec!["link", "route"],
                summary: "default route removed; link wwan0 down".into(),
            }
        );
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn a_burst_that_never_settles_is_delivered_after_ten_debounces() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Batch::new(ms(100));
        for i in 0..50 {
            b.push(
                change(Kind::Link, &format!("link x{i} up")),
                t0 + ms(i * 50),
            );
        }
        assert_eq!(b.deadline(), Some(t0 + ms(1000)));
        let c = b.take();
        assert_eq!(c.kinds, ["link"]);
        assert!(c.summary.ends_with("; and 42 more"), "{}", c.summary);
    }

    #[test]
    fn a_change_the_daemon_had_no_room_for_is_merged_and_retried() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Batch::new(ms(300));
        b.push(change(Kind::Address, "address a added"), t0);
        let first = b.take();
        b.restore(first, t0 + ms(300));
        b.push(change(Kind::Route, "route r added"), t0 + ms(400));
        assert_eq!(b.deadline(), Some(t0 + ms(700)));
        assert_eq!(
            b.take(),
            NetChange {
                kinds: vec!["address", "route"],
                summary: "address a added; route r added".into(),
            }
        );
    }

    // -- Shell --------------------------------------------------------------

    #[tokio::test]
    async fn netwatch_spawns_and_stops_promptly() {
        let (mut rx, watch) = match spawn(Duration::from_millis(50)) {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("skipping: {e}");
                return;
            }
        };
        let t = Instant::now();
        watch.stop();
        assert!(t.elapsed() < Duration::from_secs(1));
        // The thread is gone, and with it the sender. (This watches the
        // host's namespace, so a change on the host may come first.)
        let drained = tokio::time::timeout(Duration::from_secs(1), async {
            while rx.recv().await.is_some() {}
        });
        assert!(drained.await.is_ok(), "channel still open after stop");
    }
}

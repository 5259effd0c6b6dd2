//! Bringing a network link up with one rtnetlink request, the way `ip link set lo up` does,
//! without unsafe code: the message bytes are built and parsed here, and sent through nix's
//! socket wrappers.
//!
//! A fresh network namespace has only `lo`, and it is down, so even 127.0.0.1 is unreachable
//! (network_namespaces(7)). The request is `RTM_NEWLINK` on an existing link with `IFF_UP` in
//! both `ifi_flags` and `ifi_change` (rtnetlink(7): `ifi_change` says which flags to change);
//! `NLM_F_ACK` asks the kernel to answer with an `NLMSG_ERROR` message whose error is 0 on
//! success or a negative errno (netlink(7)). It needs `CAP_NET_ADMIN` in the user namespace
//! that owns the network namespace.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

/// The loopback device's index in every network namespace: the kernel registers `lo` first
/// and requires it to get index 1 (`LOOPBACK_IFINDEX`, include/net/net_namespace.h).
pub const LOOPBACK_IFINDEX: i32 = 1;

/// `struct nlmsghdr`: length, type, flags, sequence number, port id (netlink(7)).
const NLMSG_HDRLEN: usize = 16;
/// `struct ifinfomsg`: family, padding, type, index, flags, change (rtnetlink(7)).
const IFINFOMSG_LEN: usize = 16;
/// `struct nlmsgerr` starts with `int error`.
const NLMSGERR_ERROR_LEN: usize = 4;

/// The `RTM_NEWLINK` request that sets `IFF_UP` on link `ifindex` and asks for an ACK.
pub fn link_up_request(ifindex: i32, seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + IFINFOMSG_LEN) as u32;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    let up = libc::IFF_UP as u32;
    let mut msg = Vec::with_capacity(len as usize);
    // struct nlmsghdr, in the host's byte order (netlink(7)).
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    // Port id 0: the kernel fills in ours.
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg: AF_UNSPEC, padding, type 0 (any), index, flags, change.
    msg.push(libc::AF_UNSPEC as u8);
    msg.push(0);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&ifindex.to_ne_bytes());
    msg.extend_from_slice(&up.to_ne_bytes());
    msg.extend_from_slice(&up.to_ne_bytes());
    msg
}

/// Reads the kernel's answer to request `seq`: `Ok` for an ACK (error 0), the errno the kernel
/// reported, or `EBADMSG` for anything that is not an ACK of this request.
pub fn parse_ack(reply: &[u8], seq: u32) -> nix::Result<()> {
    let u32_at = |at: usize| -> Option<u32> {
        let bytes = reply.get(at..at + 4)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?))
    };
    let u16_at = |at: usize| -> Option<u16> {
        let bytes = reply.get(at..at + 2)?;
        Some(u16::from_ne_bytes(bytes.try_into().ok()?))
    };
    let len = u32_at(0).ok_or(Errno::EBADMSG)? as usize;
    let kind = u16_at(4).ok_or(Errno::EBADMSG)?;
    let reply_seq = u32_at(8).ok_or(Errno::EBADMSG)?;
    let ack_len = NLMSG_HDRLEN + NLMSGERR_ERROR_LEN;
    if len < ack_len || len > reply.len() || i32::from(kind) != libc::NLMSG_ERROR {
        return Err(Errno::EBADMSG);
    }
    if reply_seq != seq {
        return Err(Errno::EBADMSG);
    }
    let error = u32_at(NLMSG_HDRLEN).ok_or(Errno::EBADMSG)? as i32;
    match error {
        0 => Ok(()),
        // The kernel sends the negated errno.
        e if e < 0 => Err(Errno::from_raw(-e)),
        _ => Err(Errno::EBADMSG),
    }
}

/// Sets `IFF_UP` on link `ifindex` of the caller's network namespace.
pub fn set_link_up(ifindex: i32) -> nix::Result<()> {
    const SEQ: u32 = 1;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let kernel = NetlinkAddr::new(0, 0);
    bind(sock.as_raw_fd(), &kernel)?;
    let request = link_up_request(ifindex, SEQ);
    let sent = sendto(sock.as_raw_fd(), &request, &kernel, MsgFlags::empty())?;
    if sent != request.len() {
        return Err(Errno::EMSGSIZE);
    }
    // An error ACK echoes our request after the error code; 4 KiB holds any answer to it.
    let mut reply = [0u8; 4096];
    let n = recv(sock.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    parse_ack(&reply[..n], SEQ)
}

#[cfg(test)]
mod tests {
    use nix::errno::Errno;

    use super::{link_up_request, parse_ack, LOOPBACK_IFINDEX};

    fn ack(seq: u32, error: i32) -> Vec<u8> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&36u32.to_ne_bytes());
        msg.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        msg.extend_from_slice(&0x100u16.to_ne_bytes()); // NLM_F_CAPPED
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&4242u32.to_ne_bytes());
        msg.extend_from_slice(&error.to_ne_bytes());
        // The echoed request header (capped).
        msg.extend_from_slice(&link_up_request(LOOPBACK_IFINDEX, seq)[..16]);
        msg
    }

    #[test]
    fn the_request_is_an_rtm_newlink_setting_iff_up_with_an_ack() {
        let msg = link_up_request(LOOPBACK_IFINDEX, 7);
        let words = |at: usize| u32::from_ne_bytes(msg[at..at + 4].try_into().unwrap());
        let halves = |at: usize| u16::from_ne_bytes(msg[at..at + 2].try_into().unwrap());
        assert_eq!(msg.len(), 32);
        assert_eq!(words(0), 32, "nlmsg_len covers header and ifinfomsg");
        assert_eq!(halves(4), 16, "RTM_NEWLINK");
        assert_eq!(halves(6), 1 | 4, "NLM_F_REQUEST | NLM_F_ACK");
        assert_eq!(words(8), 7, "sequence number");
        assert_eq!(words(12), 0, "port id: the kernel's to fill");
        assert_eq!(
            (msg[16], msg[17], halves(18)),
            (0, 0, 0),
            "AF_UNSPEC, pad, type"
        );
        assert_eq!(words(20), 1, "ifi_index of lo");
        assert_eq!(
            (words(24), words(28)),
            (1, 1),
            "ifi_flags = ifi_change = IFF_UP"
        );
    }

    #[test]
    fn an_ack_is_success_and_an_error_ack_carries_the_errno() {
        assert_eq!(parse_ack(&ack(3, 0), 3), Ok(()));
        assert_eq!(parse_ack(&ack(3, -libc::EPERM), 3), Err(Errno::EPERM));
        assert_eq!(parse_ack(&ack(3, -libc::ENODEV), 3), Err(Errno::ENODEV));
    }

    #[test]
    fn anything_but_an_ack_of_our_request_is_a_bad_message() {
        assert_eq!(parse_ack(&ack(4, 0), 3), Err(Errno::EBADMSG), "other seq");
        assert_eq!(parse_ack(&[], 3), Err(Errno::EBADMSG), "empty");
        assert_eq!(parse_ack(&ack(3, 0)[..18], 3), Err(Errno::EBADMSG), "short");
        let mut not_error = ack(3, 0);
        not_error[4..6].copy_from_slice(&16u16.to_ne_bytes()); // RTM_NEWLINK, not an ACK
        assert_eq!(parse_ack(&not_error, 3), Err(Errno::EBADMSG));
        let mut too_long = ack(3, 0);
        too_long[..4].copy_from_slice(&200u32.to_ne_bytes()); // beyond what was received
        assert_eq!(parse_ack(&too_long, 3), Err(Errno::EBADMSG));
        assert_eq!(
            parse_ack(&ack(3, 5), 3),
            Err(Errno::EBADMSG),
            "positive error"
        );
    }
}

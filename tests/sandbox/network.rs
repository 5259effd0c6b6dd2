//! An isolated network: only `lo`, and it is up, so programs can talk to themselves over
//! 127.0.0.1 (a fresh network namespace starts with `lo` down).

use std::path::Path;

use super::{lower, ready, skip, text, Scratch};

#[test]
fn lo_is_up_in_an_isolated_network() {
    if !ready("lo_is_up") {
        return;
    }
    let scratch = Scratch::new();
    // /proc/net is the program's own network namespace (unlike the host's /sys, bound read
    // only). The kernel adds the local route of 127.0.0.1 when `lo` goes up.
    let mut spec = scratch.spec(&["cat", "/proc/net/fib_trie"]);
    spec.isolate_net = true;
    let out = scratch.run(&spec);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("127.0.0.1"),
        "no route to 127.0.0.1:\n{stdout}"
    );
}

/// A listener on 127.0.0.1, a client connecting to it and one line across (perl-base is in
/// every Debian image, and has IO::Socket::INET).
const TCP_ROUND_TRIP: &str = r#"
use IO::Socket::INET;
my $l = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0,
    Proto => "tcp") or die "listen: $@\n";
my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $l->sockport,
    Proto => "tcp") or die "connect: $@\n";
my $s = $l->accept or die "accept: $!\n";
print $c "ping\n";
$c->flush;
print "got " . <$s>;
"#;

#[test]
fn a_tcp_connection_to_127_0_0_1_works_in_an_isolated_network() {
    let test = "tcp_on_lo";
    if !ready(test) {
        return;
    }
    if !Path::new(lower()).join("usr/bin/perl").exists() {
        let why = "the test root file system has no perl; set KARAPACE_TEST_ROOTFS_TARBALL to \
                   a Debian image (.ci/run makes one)";
        skip(test, why);
        return;
    }
    let scratch = Scratch::new();
    let mut spec = scratch.spec(&["perl", "-e", TCP_ROUND_TRIP]);
    spec.isolate_net = true;
    let out = scratch.run(&spec);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(0), "got ping\n"),
        "{}",
        text(&out.stderr)
    );
}

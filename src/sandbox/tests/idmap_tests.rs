//! Detection of the id mapping: subuid/subgid parsing and range choice against fixture files,
//! judging newuidmap/newgidmap binaries, and the decision with its reasons.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::sandbox::builder::IdMapping;
use crate::sandbox::idmap::{
    choose, choose_range, find_tool, parse_subid, tool_problem, Host, IdMapTools, SubidRange,
    ToolFile,
};
use crate::sandbox::plan::IdRange;

const SUBUID: &str = include_str!("subid/subuid");
const SUBGID: &str = include_str!("subid/subgid");

fn range(start: u32, count: u32) -> SubidRange {
    SubidRange { start, count }
}

#[test]
fn lines_are_matched_by_name_or_numeric_uid_in_file_order() {
    assert_eq!(
        parse_subid(SUBUID, Some("alice"), 1001),
        [(4, Ok(range(100_000, 65536)))]
    );
    assert_eq!(
        parse_subid(SUBUID, Some("bob"), 1003),
        [
            (5, Ok(range(165_536, 1000))),
            (6, Ok(range(231_072, 65536)))
        ]
    );
    // A user known only by number, and a name that is only a prefix of another.
    assert_eq!(
        parse_subid(SUBUID, None, 1002),
        [(7, Ok(range(300_000, 70000)))]
    );
    assert_eq!(parse_subid(SUBUID, Some("ali"), 1), []);
    // Commented lines do not count.
    assert_eq!(
        parse_subid(SUBGID, Some("bob"), 1003),
        [(2, Ok(range(165_536, 65536)))]
    );
}

#[test]
fn malformed_lines_say_what_is_wrong() {
    assert_eq!(
        parse_subid(SUBUID, Some("carol"), 5),
        [
            (8, Err("start is not a number")),
            (9, Err("not `name:start:count`"))
        ]
    );
    assert_eq!(
        parse_subid(SUBUID, Some("dave"), 5),
        [(10, Err("the range ends past the largest id"))]
    );
    assert_eq!(
        parse_subid(SUBUID, Some("erin"), 5),
        [(11, Err("count is 0"))]
    );
}

#[test]
fn the_first_range_that_is_big_enough_is_mapped_whole_from_inside_id_1() {
    let bob = parse_subid(SUBUID, Some("bob"), 1003);
    assert_eq!(
        choose_range("/etc/subuid", &bob),
        Ok(IdRange {
            inside: 1,
            outside: 231_072,
            count: 65536
        })
    );
    let numeric = parse_subid(SUBUID, None, 1002);
    assert_eq!(choose_range("/etc/subuid", &numeric).unwrap().count, 70000);
    // 65534 is enough (nobody/nogroup is mapped), 65533 is not.
    for (count, ok) in [(65534, true), (65533, false)] {
        let lines = [(1, Ok(range(100_000, count)))];
        assert_eq!(choose_range("f", &lines).is_ok(), ok, "{count}");
    }
}

#[test]
fn no_usable_range_is_explained() {
    let none = choose_range("/etc/subuid", &parse_subid(SUBUID, Some("zed"), 9)).unwrap_err();
    assert_eq!(none, "/etc/subuid grants this user no range");
    let carol = parse_subid(SUBUID, Some("carol"), 5);
    let small = [(3, Ok(range(1, 1000)))];
    let err = choose_range("/etc/subuid", &[&carol[..], &small].concat()).unwrap_err();
    assert_eq!(
        err,
        "/etc/subuid grants this user no range of at least 65534 ids (line 8: start is not a \
         number, line 9: not `name:start:count`, line 3: 1000 ids)"
    );
}

fn tool(mode: u32, owner: u32, capability: Option<Vec<u8>>) -> ToolFile {
    ToolFile {
        path: PathBuf::from("/usr/bin/newuidmap"),
        owner,
        mode,
        capability,
        nosuid_mount: false,
    }
}

/// A `security.capability` value: magic (revision | effective flag), then permitted and
/// inheritable words, then (revision 3) the root id.
fn caps(revision: u32, effective: bool, permitted: u32, rootid: Option<u32>) -> Vec<u8> {
    let mut words = vec![revision | u32::from(effective), permitted, 0];
    if revision >= 0x0200_0000 {
        words.extend([0, 0]);
    }
    words.extend(rootid);
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

const SETUID_BIT: u32 = 1 << 7;

#[test]
fn a_helper_must_be_setuid_root_or_carry_the_capability() {
    assert_eq!(tool_problem(&tool(0o104755, 0, None), 7), None);
    let plain = tool_problem(&tool(0o100755, 0, None), 7).unwrap();
    assert!(
        plain.contains("neither setuid root nor has file capabilities"),
        "{plain}"
    );
    // setuid, but owned by someone else: no privilege to gain.
    assert!(tool_problem(&tool(0o104755, 1000, None), 7).is_some());
    assert!(tool_problem(&tool(0o104644, 0, None), 7)
        .unwrap()
        .contains("not executable"));
    let mut nosuid = tool(0o104755, 0, None);
    nosuid.nosuid_mount = true;
    assert!(tool_problem(&nosuid, 7).unwrap().contains("nosuid"));
}

#[test]
fn file_capabilities_are_read_from_the_xattr() {
    let with = |raw| tool_problem(&tool(0o100755, 0, Some(raw)), 7);
    // Fedora: `cap_setuid=ep`, revisions 2 and 3 (root id 0 on the host).
    assert_eq!(with(caps(0x0200_0000, true, SETUID_BIT, None)), None);
    assert_eq!(with(caps(0x0300_0000, true, SETUID_BIT, Some(0))), None);
    assert_eq!(with(caps(0x0100_0000, true, SETUID_BIT, None)), None);
    // Not effective, the wrong capability, another namespace's root, or a broken value.
    assert!(with(caps(0x0200_0000, false, SETUID_BIT, None)).is_some());
    assert!(with(caps(0x0200_0000, true, 1 << 6, None)).is_some());
    assert!(with(caps(0x0300_0000, true, SETUID_BIT, Some(100_000))).is_some());
    assert!(with(vec![1, 2, 3]).is_some());
    assert!(with(caps(0x0400_0000, true, SETUID_BIT, None)).is_some());
}

#[test]
fn helpers_are_found_on_path_and_a_plain_binary_is_not_enough() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("newuidmap");
    std::fs::write(&fake, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("relative:{}:/nonexistent", dir.path().display());
    let err = find_tool("newuidmap", Some(OsStr::new(&path)), 7).unwrap_err();
    assert!(err.contains(&fake.display().to_string()), "{err}");
    assert!(err.contains("neither setuid root"), "{err}");
    let err = find_tool("newgidmap", Some(OsStr::new(&path)), 6).unwrap_err();
    assert_eq!(err, "newgidmap is not on PATH");
    // Relative PATH entries are never searched.
    let err = find_tool("newuidmap", Some(OsStr::new(".")), 7).unwrap_err();
    assert_eq!(err, "newuidmap is not on PATH");
}

fn host() -> Host {
    Host {
        euid: 1003,
        uid: 1003,
        gid: 1004,
        user: Some("bob".into()),
        subuid: Ok(SUBUID.into()),
        subgid: Ok(SUBGID.into()),
        tools: Ok(IdMapTools {
            newuidmap: "/usr/bin/newuidmap".into(),
            newgidmap: "/usr/bin/newgidmap".into(),
        }),
        no_new_privs: false,
    }
}

#[test]
fn everything_present_gives_the_full_range() {
    let choice = choose(&host());
    assert_eq!(choice.fallback, None);
    assert_eq!(choice.warning(), None);
    let expect = |outside| IdRange {
        inside: 1,
        outside,
        count: 65536,
    };
    assert_eq!(
        choice.mapping,
        IdMapping::Subordinate {
            uid: 1003,
            gid: 1004,
            sub_uid: expect(231_072),
            sub_gid: expect(165_536),
        }
    );
    assert_eq!(
        choice.describe(),
        "ids: full range (uids 231072-296607, gids 165536-231071, written by \
         newuidmap/newgidmap)"
    );
}

#[test]
fn real_root_keeps_the_host_ids() {
    let root = Host {
        euid: 0,
        tools: Err("newuidmap and newgidmap are not on PATH".into()),
        ..host()
    };
    let choice = choose(&root);
    assert_eq!(choice.mapping, IdMapping::HostRoot);
    assert_eq!(choice.warning(), None);
}

#[test]
fn anything_missing_falls_back_to_the_callers_ids_with_every_reason() {
    let single = IdMapping::SingleId {
        uid: 1003,
        gid: 1004,
    };
    let missing = Host {
        subgid: Err("/etc/subgid: No such file or directory (os error 2)".into()),
        tools: Err("newuidmap and newgidmap are not on PATH".into()),
        ..host()
    };
    let choice = choose(&missing);
    assert_eq!(choice.mapping, single);
    let fallback = choice.fallback.clone().unwrap();
    assert_eq!(
        fallback.why,
        "/etc/subgid: No such file or directory (os error 2); newuidmap and newgidmap are not \
         on PATH"
    );
    assert!(
        fallback.fix.contains("usermod --add-subuids"),
        "{}",
        fallback.fix
    );
    assert!(fallback.fix.contains(" bob`"), "{}", fallback.fix);
    assert!(fallback.fix.contains("uidmap package"), "{}", fallback.fix);
    let warning = choice.warning().unwrap();
    assert!(
        warning.starts_with("namespace backend: only your own uid and gid are mapped"),
        "{warning}"
    );
    assert!(!warning.contains('\n'), "one line: {warning}");
    assert!(choice
        .describe()
        .contains("programs that switch users will fail"));

    let small = Host {
        user: Some("alice".into()),
        subgid: Ok("alice:100000:1000\n".into()),
        ..host()
    };
    let choice = choose(&small);
    assert_eq!(choice.mapping, single);
    assert!(choice.fallback.unwrap().why.contains("at least 65534"));

    let nnp = Host {
        no_new_privs: true,
        ..host()
    };
    let fallback = choose(&nnp).fallback.unwrap();
    assert!(fallback.why.contains("no_new_privs"), "{}", fallback.why);

    // Unknown to passwd: only numeric lines count, and the fix names the uid.
    let unnamed = Host {
        user: None,
        ..host()
    };
    let fallback = choose(&unnamed).fallback.unwrap();
    assert!(fallback.fix.contains(" 1003`"), "{}", fallback.fix);
}

#[test]
fn a_warning_comes_only_with_a_fallback_and_the_tools_only_with_a_range() {
    let full = choose(&host());
    assert!(matches!(full.mapping, IdMapping::Subordinate { .. }));
    assert_eq!(full.warning(), None);
    assert_eq!(
        full.tools,
        host().tools.ok(),
        "the tools found are kept for the maps"
    );
    let no_tools = Host {
        tools: Err("newuidmap is not on PATH".into()),
        ..host()
    };
    let single = choose(&no_tools);
    assert!(matches!(single.mapping, IdMapping::SingleId { .. }));
    assert!(single
        .warning()
        .is_some_and(|w| w.contains("newuidmap is not on PATH")));
    assert_eq!(single.tools, None);
    let no_range = Host {
        subuid: Ok(String::new()),
        ..host()
    };
    assert_eq!(
        choose(&no_range).tools,
        None,
        "tools without a range write nothing"
    );
}

//! Each fixture distribution: detected from its os-release, and its fixes written with its own
//! package manager, package names and boot configuration.

use super::{check, FakeHost};
use crate::prereq::distro::{Distro, Family};
use crate::prereq::Status;
use crate::sandbox::check::FuseProblem;

#[test]
fn every_fixture_distribution_is_detected() {
    for (fixture, id, family, manager, name) in [
        (
            "debian",
            "debian",
            Family::Debian,
            "apt",
            "Debian GNU/Linux 12 (bookworm)",
        ),
        (
            "ubuntu",
            "ubuntu",
            Family::Debian,
            "apt",
            "Ubuntu 24.04.1 LTS",
        ),
        (
            "fedora",
            "fedora",
            Family::Fedora,
            "dnf",
            "Fedora Linux 41 (Workstation Edition)",
        ),
        (
            "opensuse",
            "opensuse-tumbleweed",
            Family::Suse,
            "zypper",
            "openSUSE Tumbleweed",
        ),
        ("arch", "arch", Family::Arch, "pacman", "Arch Linux"),
        // Only /usr/lib/os-release there: the fallback os-release(5) names.
        (
            "alpine",
            "alpine",
            Family::Alpine,
            "apk",
            "Alpine Linux v3.20",
        ),
    ] {
        let distro = Distro::detect(&FakeHost::new(fixture));
        assert_eq!(distro.id, id, "{fixture}");
        assert_eq!(distro.family, family, "{fixture}");
        assert_eq!(distro.package_manager, Some(manager), "{fixture}");
        assert_eq!(distro.name, name, "{fixture}");
        assert_eq!(distro.is_ubuntu(), fixture == "ubuntu", "{fixture}");
    }
}

#[test]
fn derivatives_follow_id_like_and_unknown_ones_get_generic_advice() {
    let mint =
        Distro::from_os_release("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nNAME='Linux Mint'\n");
    assert_eq!((mint.family, mint.is_ubuntu()), (Family::Debian, true));
    assert_eq!(mint.name, "Linux Mint");
    let rocky = Distro::from_os_release("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"");
    assert_eq!(rocky.family, Family::Fedora);
    let none = Distro::from_os_release("");
    assert_eq!((none.id.as_str(), none.family), ("linux", Family::Unknown));
    assert_eq!(none.package_manager, None);
    let escaped = Distro::from_os_release("PRETTY_NAME=\"Say \\\"hi\\\"\"\nID=nixos");
    assert_eq!(escaped.name, "Say \"hi\"");
    assert_eq!(escaped.family, Family::Unknown);
}

/// A host where kernel overlayfs is refused and fuse-overlayfs and newuidmap are missing:
/// the fixes install packages.
fn missing_packages(fixture: &str) -> FakeHost {
    let mut host = FakeHost::new(fixture);
    host.kernel_overlay = Err("mount: Operation not permitted".into());
    host.fuse = Err(FuseProblem::NotInstalled);
    host.tools = Err("newuidmap and newgidmap are not on PATH".into());
    host.programs.clear();
    host
}

#[test]
fn package_fixes_use_each_distributions_manager_and_names() {
    for (fixture, fuse, uidmap, runc) in [
        (
            "debian",
            "sudo apt-get install -y fuse-overlayfs",
            "sudo apt-get install -y uidmap",
            "sudo apt-get install -y runc",
        ),
        (
            "ubuntu",
            "sudo apt-get install -y fuse-overlayfs",
            "sudo apt-get install -y uidmap",
            "sudo apt-get install -y runc",
        ),
        (
            "fedora",
            "sudo dnf install -y fuse-overlayfs",
            "sudo dnf install -y shadow-utils",
            "sudo dnf install -y runc",
        ),
        (
            "opensuse",
            "sudo zypper install -y fuse-overlayfs",
            "sudo zypper install -y shadow",
            "sudo zypper install -y runc",
        ),
        (
            "arch",
            "sudo pacman -S --needed fuse-overlayfs",
            "sudo pacman -S --needed shadow",
            "sudo pacman -S --needed runc",
        ),
        (
            "alpine",
            "sudo apk add fuse-overlayfs",
            "sudo apk add shadow-uidmap",
            "sudo apk add runc",
        ),
    ] {
        let report = missing_packages(fixture).run();
        let fix = |id: &str| check(&report, id).fix.clone().unwrap_or_default();
        assert_eq!(check(&report, "namespace.overlay").status, Status::Fail);
        assert!(
            fix("namespace.overlay").starts_with(fuse),
            "{fixture}: {}",
            fix("namespace.overlay")
        );
        assert_eq!(check(&report, "namespace.fuse").status, Status::Fail);
        assert_eq!(fix("namespace.fuse"), fuse, "{fixture}");
        assert_eq!(check(&report, "namespace.idmap").status, Status::Warn);
        assert!(
            fix("namespace.idmap").starts_with(uidmap),
            "{fixture}: {}",
            fix("namespace.idmap")
        );
        assert_eq!(check(&report, "oci.runtime").status, Status::Fail);
        assert_eq!(fix("oci.runtime"), runc, "{fixture}");
    }
}

#[test]
fn as_root_the_fixes_need_no_sudo() {
    let report = missing_packages("debian").root_user().run();
    assert_eq!(
        check(&report, "namespace.fuse").fix.as_deref(),
        Some("apt-get install -y fuse-overlayfs")
    );
}

#[test]
fn the_unified_cgroup_fix_names_each_boot_loader() {
    for (fixture, expected) in [
        ("debian", "`sudo update-grub`"),
        ("ubuntu", "`sudo update-grub`"),
        (
            "fedora",
            "`sudo grubby --update-kernel=ALL --args=systemd.unified_cgroup_hierarchy=1`",
        ),
        ("opensuse", "`sudo grub2-mkconfig -o /boot/grub2/grub.cfg`"),
        ("arch", "`sudo grub-mkconfig -o /boot/grub/grub.cfg`"),
        ("alpine", "rc_cgroup_mode=\"unified\" in /etc/rc.conf"),
    ] {
        let report = FakeHost::new(fixture).hybrid().run();
        let cgroup = check(&report, "namespace.cgroup");
        assert_eq!(cgroup.status, Status::Warn, "{fixture}");
        assert!(
            cgroup.meaning.contains("hybrid"),
            "{fixture}: {}",
            cgroup.meaning
        );
        let fix = cgroup.fix.as_deref().unwrap_or_default();
        assert!(fix.contains(expected), "{fixture}: {fix}");
    }
}

#[test]
fn kernel_settings_get_sysctl_lines_and_ubuntus_apparmor_a_profile() {
    let arch = FakeHost::new("arch").run();
    let userns = check(&arch, "namespace.userns");
    assert_eq!(userns.status, Status::Fail);
    assert!(
        userns
            .meaning
            .contains("kernel.unprivileged_userns_clone = 0"),
        "{}",
        userns.meaning
    );
    assert_eq!(
        userns.fix.as_deref(),
        Some(
            "sudo sysctl -w kernel.unprivileged_userns_clone=1 && echo \
             'kernel.unprivileged_userns_clone = 1' | sudo tee -a /etc/sysctl.d/90-karapace.conf"
        )
    );

    let opensuse = FakeHost::new("opensuse").run();
    let userns = check(&opensuse, "namespace.userns");
    assert_eq!(userns.status, Status::Fail);
    assert!(userns.meaning.contains("user.max_user_namespaces = 0"));
    assert!(userns
        .fix
        .as_deref()
        .unwrap_or_default()
        .starts_with("sudo sysctl -w user.max_user_namespaces=65536 && "));

    let ubuntu = FakeHost::new("ubuntu").run();
    let userns = check(&ubuntu, "namespace.userns");
    assert_eq!(userns.status, Status::Fail);
    assert!(userns
        .meaning
        .contains("kernel.apparmor_restrict_unprivileged_userns = 1"));
    let fix = userns.fix.as_deref().unwrap_or_default();
    assert!(
        fix.contains("profile karapace-tui /usr/bin/karapace-tui flags=(unconfined)")
            && fix.contains("userns,")
            && fix.contains("sudo apparmor_parser -r /etc/apparmor.d/karapace-tui")
            && fix.contains("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
        "{fix}"
    );
    // The kernel settings decide: no namespace is created to find out.
    for host in [FakeHost::new("ubuntu"), FakeHost::new("arch")] {
        host.run();
        assert!(
            !host.probes.borrow().contains(&"userns"),
            "{:?}",
            host.probes
        );
    }
}

#[test]
fn debian_and_fedora_allow_user_namespaces_after_the_probe() {
    for fixture in ["debian", "fedora", "alpine"] {
        let host = FakeHost::new(fixture);
        let report = host.run();
        assert_eq!(
            check(&report, "namespace.userns").status,
            Status::Pass,
            "{fixture}"
        );
        assert!(host.probes.borrow().contains(&"userns"), "{fixture}");
    }
}

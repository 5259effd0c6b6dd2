use super::*;

const PREFIX: &[&str] = &["/opt/karapace tui/bin/karapace-tui", "exec", "abc", "--"];

fn prefix() -> Vec<String> {
    PREFIX.iter().map(|s| s.to_string()).collect()
}

fn host(source: &str) -> Result<String, DesktopError> {
    let parsed = DesktopFile::parse(source.as_bytes())?;
    let prefix = prefix();
    host_copy(
        &parsed,
        &HostEntry {
            prefix: &prefix,
            name_suffix: " (on dev)",
            env_id: "abc",
            icon: Some("gedit"),
        },
    )
}

/// Undo a value's escapes and split its Exec line, independently of the code under test
/// (a reader as a launcher would be).
fn argv_of(copy: &str, group: &str) -> Vec<String> {
    let mut in_group = false;
    let mut exec = None;
    for line in copy.lines() {
        if line.starts_with('[') {
            in_group = line == format!("[{group}]");
        } else if in_group {
            if let Some(v) = line.strip_prefix("Exec=") {
                assert!(exec.is_none(), "two Exec lines in [{group}]:\n{copy}");
                exec = Some(v.to_string());
            }
        }
    }
    let raw = exec.expect("an Exec line");
    let mut value = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next().expect("escape") {
                's' => value.push(' '),
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                '\\' => value.push('\\'),
                other => panic!("unexpected escape \\{other}"),
            }
        } else {
            value.push(c);
        }
    }
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if quoted => cur.push(chars.next().expect("escaped")),
            // `%%` is a literal percent sign; field codes stay visible as `%X`.
            '%' => {
                let next = chars.next().expect("field code");
                cur.push('%');
                if next != '%' {
                    cur.push(next);
                }
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    args.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    assert!(!quoted, "unterminated quote in {value:?}");
    if started {
        args.push(cur);
    }
    args
}

#[test]
fn a_plain_entry_keeps_its_keys_and_runs_through_exec() {
    let copy = host(
        "# comment\n[Desktop Entry]\nType=Application\nName=Text Editor\nName[de]=Texteditor\n\
         GenericName=Editor\nComment=Edit\\stext\nIcon=org.gnome.gedit\nExec=gedit %U\n\
         Categories=GNOME;Utility;\nMimeType=text/plain;\nKeywords[de]=Text;Notiz;\n\
         Terminal=false\nStartupWMClass=gedit\n",
    )
    .expect("host copy");
    assert!(copy.contains("\nName=Text Editor (on dev)\n"), "{copy}");
    assert!(copy.contains("\nName[de]=Texteditor (on dev)\n"), "{copy}");
    assert!(copy.contains("\nComment=Edit text\n"), "{copy}");
    assert!(copy.contains("\nCategories=GNOME;Utility;\n"), "{copy}");
    assert!(copy.contains("\nKeywords[de]=Text;Notiz;\n"), "{copy}");
    assert!(
        copy.contains("\nIcon=gedit\n"),
        "the exported icon name: {copy}"
    );
    assert!(copy.contains("\nX-Karapace-Env=abc\n"), "{copy}");
    let mut want = prefix();
    want.extend(["gedit".to_string(), "%U".to_string()]);
    assert_eq!(argv_of(&copy, "Desktop Entry"), want);
    assert!(
        copy.starts_with("[Desktop Entry]\nType=Application\n"),
        "{copy}"
    );
    // The program's path has a space: it is quoted.
    assert!(
        copy.contains("Exec=\"/opt/karapace tui/bin/karapace-tui\" exec abc -- gedit %U\n"),
        "{copy}"
    );
}

#[test]
fn a_hostile_entry_cannot_add_keys_groups_or_commands() {
    let source = "[Desktop Entry]\n\
        Type=Application\n\
        Name=Evil\\nExec=rm -rf ~\\n[Desktop Entry]\\nX-GNOME-Autostart-enabled=true\n\
        Comment=\\r\\nTryExec=/bin/sh\n\
        Exec=evil \"$(curl x|sh)\" \"`id`\" \"\\\\\\\\\" ; rm %F %f %i %c %k %d\n\
        TryExec=/bin/true\n\
        DBusActivatable=true\n\
        X-GNOME-Autostart-enabled=true\n\
        X-KDE-autostart-after=panel\n\
        Path=/\n\
        Hidden=false\n\
        Actions=evil;missing;bad name;\n\
        \n\
        [Desktop Action evil]\n\
        Name=Evil action\n\
        Exec=sh -c \"rm -rf \\\\$HOME\"\n\
        TryExec=/bin/sh\n\
        \n\
        [Autostart]\n\
        Exec=/bin/sh\n";
    let copy = host(source).expect("host copy");
    // Every line is one of ours: a known key, a group header, or empty.
    let allowed = [
        "Type=",
        "Name=",
        "Comment=",
        "Icon=",
        "Exec=",
        "Actions=",
        "X-Karapace-Env=",
    ];
    for line in copy.lines() {
        assert!(
            line.is_empty()
                || line == "[Desktop Entry]"
                || line == "[Desktop Action evil]"
                || allowed.iter().any(|k| line.starts_with(k)),
            "unexpected line {line:?} in:\n{copy}"
        );
    }
    assert_eq!(
        copy.lines().filter(|l| l.starts_with('[')).count(),
        2,
        "[Desktop Entry] and the one action: {copy}"
    );
    for key in [
        "TryExec",
        "DBusActivatable",
        "X-GNOME",
        "X-KDE",
        "Path",
        "Hidden",
    ] {
        assert!(!copy.lines().any(|l| l.starts_with(key)), "{key}: {copy}");
    }
    assert!(!copy.contains("[Autostart]"), "{copy}");
    assert!(copy.contains("\nComment=\\r\\nTryExec=/bin/sh\n"), "{copy}");
    assert!(copy.contains("\nActions=evil;\n"), "{copy}");
    // The injected text is one escaped value.
    assert!(
        copy.contains("\nName=Evil\\nExec=rm -rf ~\\n[Desktop Entry]\\nX-GNOME-Autostart-enabled=true (on dev)\n"),
        "{copy}"
    );
    // The command's words arrive as words: nothing in them is run by the launcher, %F is
    // passed, the second file code and %i %c %k %d are dropped.
    let mut want = prefix();
    want.extend(
        ["evil", "$(curl x|sh)", "`id`", "\\", ";", "rm", "%F"]
            .iter()
            .map(|s| s.to_string()),
    );
    assert_eq!(argv_of(&copy, "Desktop Entry"), want);
    let mut want = prefix();
    want.extend(["sh", "-c", "rm -rf $HOME"].iter().map(|s| s.to_string()));
    assert_eq!(argv_of(&copy, "Desktop Action evil"), want);
}

#[test]
fn malformed_files_are_refused() {
    for (source, what) in [
        ("Name=x\n[Desktop Entry]\n", "key before group"),
        ("[Other]\nName=x\n", "first group"),
        ("[Desktop Entry]\nName=a\nName=b\n", "duplicate key"),
        ("[Desktop Entry]\n[Desktop Entry]\n", "duplicate group"),
        ("[Desktop Entry]\nName\n", "no ="),
        ("[Desktop Entry]\nNa me=x\n", "bad key"),
        ("[Desktop Entry]\nName[de/x]=x\n", "bad locale"),
        ("[Desktop Entry]\nName=a\u{1b}b\n", "control character"),
        ("[Desktop Entry\n", "unterminated header"),
    ] {
        assert!(DesktopFile::parse(source.as_bytes()).is_err(), "{what}");
    }
    assert!(DesktopFile::parse(b"[Desktop Entry]\nName=\xff\n").is_err());
    // Parsed, but not exportable.
    for (source, what) in [
        (
            "[Desktop Entry]\nType=Link\nName=x\nURL=http://x\n",
            "not an application",
        ),
        ("[Desktop Entry]\nType=Application\nName=x\n", "no Exec"),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=\n",
            "empty Exec",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=a \"b\n",
            "open quote",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=a \\\\b\n",
            "bare backslash",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=a %z\n",
            "unknown code",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=%f\n",
            "code as program",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=a\\q\n",
            "unknown escape",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=a\nTerminal=yes\n",
            "bool",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=x\nExec=a\nHidden=true\n",
            "hidden",
        ),
    ] {
        assert!(host(source).is_err(), "{what}");
    }
}

#[test]
fn exec_quoting_round_trips() {
    let tricky = [
        "plain",
        "",
        "two words",
        "quote\"d",
        "back\\slash",
        "dollar$HOME",
        "`tick`",
        "100%",
        "semi;colon",
        "new\nline",
        "tab\there",
        "ünïcödé ✓",
        "'single'",
        "~tilde",
        "%f",
    ];
    let args: Vec<Arg> = tricky.iter().map(|t| literal(*t)).collect();
    let joined = join_exec(&args).expect("join");
    let back = split_exec(&joined).expect("split");
    assert_eq!(back, args, "{joined}");
    // And through the file format's escaping as a launcher reads it.
    let line = format!(
        "[Desktop Entry]\nExec={}\n",
        escape_value(&joined).expect("escape")
    );
    let strings: Vec<String> = tricky.iter().map(|s| s.to_string()).collect();
    assert_eq!(argv_of(&line, "Desktop Entry"), strings);
}

#[test]
fn field_codes_follow_the_spec() {
    let args = split_exec("app --url=%u %U %% \"%%\" %i").expect("split");
    assert_eq!(
        args,
        vec![
            literal("app"),
            vec![Piece::Text("--url=".into()), Piece::Field('u')],
            vec![Piece::Field('U')],
            literal("%"),
            literal("%"),
            vec![Piece::Field('i')],
        ]
    );
    // One file code per command line: the first is kept, later ones dropped; %% stays literal.
    assert_eq!(
        join_exec(&args).expect("join"),
        "app --url=%u %% %%",
        "%U after %u is dropped, %i too"
    );
    assert_eq!(
        join_exec(&split_exec("app %F %f").expect("split")).expect("join"),
        "app %F"
    );
    // A list code inside an argument is not passed; a code inside quotes neither.
    assert_eq!(
        join_exec(&split_exec("app --x=%F").expect("split")).expect("join"),
        "app --x="
    );
    assert_eq!(
        join_exec(&split_exec("app \"a b%f\"").expect("split")).expect("join"),
        "app \"a b\""
    );
    assert!(join_exec(&[literal("bell\u{7}")]).is_err());
}

#[test]
fn values_are_escaped_onto_one_line() {
    assert_eq!(
        escape_value(" a\\b\nc\td").expect("escape"),
        "\\sa\\\\b\\nc\\td"
    );
    assert!(escape_value("a\u{0}b").is_err());
    assert_eq!(
        escape_list(&["a;b".to_string(), "c\\".to_string()]).expect("list"),
        "a\\;b;c\\\\;"
    );
    assert_eq!(
        split_list("a\\;b;c\\\\;", 1).expect("split"),
        ["a;b", "c\\"]
    );
}

#[test]
fn our_marker_is_recognised() {
    let copy = host("[Desktop Entry]\nType=Application\nName=x\nExec=x\n").expect("copy");
    assert_eq!(marker_of(copy.as_bytes()).as_deref(), Some("abc"));
    assert_eq!(marker_of(b"[Desktop Entry]\nName=x\n"), None);
    // A marker outside [Desktop Entry] does not count.
    assert_eq!(
        marker_of(b"[Desktop Entry]\nName=x\n[Other]\nX-Karapace-Env=abc\n"),
        None
    );
}

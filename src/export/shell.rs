//! Host wrapper scripts (`export --bin`): POSIX sh that runs one program inside an environment
//! with the caller's arguments.
//!
//! Every string that comes from outside the script (the binary's path, the store, the
//! environment, the program's path) is written single-quoted: inside single quotes the shell
//! interprets nothing at all, not `$`, not a backquote, not a backslash, not a newline
//! (POSIX.1-2017, XCU 2.2.2), and a single quote itself is written as `'\''` (end the quoted
//! part, an escaped quote, start a new one). The caller's arguments pass through `"$@"`, which
//! expands to each positional parameter as one field, unsplit and unglobbed (XCU 2.5.2). A NUL
//! byte cannot be part of an argument or a file's text that sh reads as a string, so it is
//! refused rather than silently cut.

/// The comment line that marks a wrapper as ours; the environment id follows it.
pub const MARKER: &str = "# karapace-tui export --bin: environment ";

/// Why a wrapper cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} contains a NUL byte, which no shell word can hold")]
pub struct NulByte {
    pub what: String,
}

/// `s` as one single-quoted POSIX shell word.
pub fn quote(s: &str, what: &str) -> Result<String, NulByte> {
    if s.contains('\0') {
        return Err(NulByte {
            what: what.to_string(),
        });
    }
    Ok(format!("'{}'", s.replace('\'', "'\\''")))
}

/// The text of a wrapper that runs `command` (already the full argv: the karapace-tui binary,
/// its options, `exec`, the environment, `--`, the program) followed by the caller's
/// arguments. `env_id` goes into the marker line, which holds only hex digits.
pub fn wrapper(env_id: &str, command: &[&str]) -> Result<String, NulByte> {
    let mut words = Vec::with_capacity(command.len());
    for (i, word) in command.iter().enumerate() {
        words.push(quote(word, &format!("argument {i} of the wrapper"))?);
    }
    let id: String = env_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    Ok(format!(
        "#!/bin/sh\n{MARKER}{id}\n# Generated: `karapace-tui unexport` removes it.\nexec {} \"$@\"\n",
        words.join(" ")
    ))
}

/// The environment a host file was exported for, when it is one of our wrappers.
pub fn marker_of(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "#!/bin/sh" {
        return None;
    }
    lines.next()?.strip_prefix(MARKER).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use proptest::prelude::*;

    use super::*;

    /// What `sh` makes of `word`: `printf %s WORD` prints the word's value unchanged.
    fn through_sh(word: &str) -> Vec<u8> {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf %s {word}"))
            .output()
            .expect("run /bin/sh");
        assert!(out.status.success(), "sh failed for {word:?}: {out:?}");
        out.stdout
    }

    #[test]
    fn quoting_escapes_single_quotes_only() {
        let q = |s: &str| quote(s, "t").expect("quote");
        assert_eq!(q("plain"), "'plain'");
        assert_eq!(q(""), "''");
        assert_eq!(q("it's"), "'it'\\''s'");
        assert_eq!(q("$HOME `id` \\n"), "'$HOME `id` \\n'");
    }

    #[test]
    fn nul_bytes_are_refused() {
        let e = quote("a\0b", "the program").expect_err("NUL");
        assert_eq!(e.what, "the program");
    }

    #[test]
    fn hostile_words_survive_sh() {
        for word in [
            "'",
            "''",
            "'\\''",
            "a\nb",
            "$(touch /tmp/x)",
            "`id`",
            "\\",
            "\"",
            "*",
            "-n",
            "ü ñ 日本",
            "\t\r",
        ] {
            let quoted = quote(word, "t").expect("quote");
            assert_eq!(through_sh(&quoted), word.as_bytes(), "{word:?}");
        }
    }

    #[test]
    fn the_marker_names_the_environment() {
        let text = wrapper("abc123", &["/bin/echo"]).expect("wrapper");
        assert_eq!(marker_of(text.as_bytes()).as_deref(), Some("abc123"));
        assert_eq!(marker_of(b"#!/bin/sh\necho hi\n"), None);
    }

    proptest! {
        // Each case starts a shell; a few hundred cases cover the quoting rules without
        // making the unit tests slow.
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_string_round_trips_through_sh(s in "[^\0]*") {
            let quoted = quote(&s, "t").expect("quote");
            prop_assert_eq!(through_sh(&quoted), s.as_bytes().to_vec());
        }

        #[test]
        fn shell_metacharacters_round_trip(s in proptest::collection::vec(
            prop_oneof![
                Just("'".to_string()), Just("\"".to_string()), Just("$".to_string()),
                Just("`".to_string()), Just("\\".to_string()), Just("\n".to_string()),
                Just(" ".to_string()), Just("é".to_string()), Just("*".to_string()),
                Just("$(".to_string()), "[a-z]{0,3}",
            ], 0..24).prop_map(|v| v.concat())) {
            let quoted = quote(&s, "t").expect("quote");
            prop_assert_eq!(through_sh(&quoted), s.as_bytes().to_vec());
        }
    }
}

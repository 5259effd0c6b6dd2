//! Wiping the host's environment (and the runtime's command line) out of the memory of a
//! sandbox's PID 1.
//!
//! PID 1 is a fork of stage 1, itself a fork of `karapace-tui` (or of the executed helper), so
//! it never executes anything and keeps the block of `NAME=value` strings the kernel copied
//! onto the stack when the runtime itself was executed. `/proc/PID/environ` shows exactly that
//! block, between the addresses of fields 50 and 51 of `/proc/PID/stat` (`env_start`,
//! `env_end`, proc(5)), whatever the process did to its `environ` array since: clearing the
//! variables (as stage 1 does) moves pointers, not those bytes. Inside the sandbox PID 1 is
//! `/proc/1`, readable by the program, which runs as the same user: without this, `cat
//! /proc/1/environ` showed the host's SSH_AUTH_SOCK, tokens and keys that the policy keeps out
//! of the program's own environment.
//!
//! A forked stage 1 wipes its block first thing too: a joining session's program is forked from
//! it inside the environment, where that child's `/proc/PID/environ` is readable until it has
//! executed the program.
//!
//! The block is PID 1's own copy (fork(2) duplicates the stack), so PID 1 overwrites it with
//! zero bytes through `/proc/self/mem` (which a process may always write for itself, in a
//! writable mapping such as the stack), from the start of the first string to the end of the
//! last. `PR_SET_MM_ENV_START` would need CAP_SYS_RESOURCE in the initial user namespace.
//! Afterwards every entry of the C library's `environ` points at an empty string, which
//! `std::env` skips: the variables a caller needs are read before, and set again after if
//! needed (a set variable lives on the heap, not in the block).
//!
//! The command line is the same kind of block (fields 48 and 49, `arg_start` and `arg_end`),
//! shown by `/proc/1/cmdline` and `ps`: the `karapace-tui` arguments, store path included.
//! PID 1 rewrites it to [`INIT_NAME`] followed by zero bytes, which is also what `ps` inside
//! shows for it, as container inits name themselves (its `comm` is set to the same).

/// What `/proc/1/cmdline` says inside a sandbox.
pub const INIT_NAME: &str = "karapace-init";
/// The same, for prctl(PR_SET_NAME).
pub const INIT_COMM: &std::ffi::CStr = c"karapace-init";

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

/// `env_start` and `env_end` (fields 50 and 51) of a `/proc/PID/stat` line; `None` if the
/// line has fewer fields (Linux before 3.5) or they do not parse.
pub fn env_range(stat: &str) -> Option<(u64, u64)> {
    field_range(stat, 50)
}

/// `arg_start` and `arg_end` (fields 48 and 49), as [`env_range`].
pub fn arg_range(stat: &str) -> Option<(u64, u64)> {
    field_range(stat, 48)
}

/// Fields `first` and `first + 1` (numbered from 1, as in proc(5)) as a range.
fn field_range(stat: &str, first: usize) -> Option<(u64, u64)> {
    // Field 2, the command name, is in parentheses and may hold spaces and `)`: the fields
    // are counted after the last `)`, from field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start = fields.get(first - 3)?.parse().ok()?;
    let end = fields.get(first + 1 - 3)?.parse().ok()?;
    (start <= end).then_some((start, end))
}

/// Overwrites this process's initial environment block with zero bytes (see the module doc).
pub fn wipe_environment_block() -> io::Result<()> {
    overwrite(&[(env_range, b"")])
}

/// [`wipe_environment_block`], and rewrites this process's command line to [`INIT_NAME`]
/// (see the module doc).
pub fn wipe_and_rename() -> io::Result<()> {
    overwrite(&[(env_range, b""), (arg_range, INIT_NAME.as_bytes())])
}

/// The range of a block in a `/proc/PID/stat` line.
type Block = fn(&str) -> Option<(u64, u64)>;

/// Writes each text and zero bytes over its block, found in one read of `/proc/self/stat`.
fn overwrite(blocks: &[(Block, &[u8])]) -> io::Result<()> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let mem = OpenOptions::new().write(true).open("/proc/self/mem")?;
    for (range, text) in blocks {
        let block = range(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no arg_start/arg_end/env_start/env_end fields in /proc/self/stat",
            )
        })?;
        mem.write_all_at(&replacement(block, text)?, block.0)?;
    }
    Ok(())
}

/// `text` padded with zero bytes to the length of `range`; only zeros if it is shorter than
/// `text` and its terminating zero.
fn replacement((start, end): (u64, u64), text: &[u8]) -> io::Result<Vec<u8>> {
    let len = usize::try_from(end - start)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "block too large"))?;
    let mut bytes = vec![0u8; len];
    if text.len() < len {
        bytes[..text.len()].copy_from_slice(text);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::{arg_range, env_range, replacement};

    /// A line of Linux 6.x (52 fields), its command name holding a space and a `)`.
    const STAT: &str = "4242 (kt ) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
        36613497 11485184 712 18446744073709551615 94014347845072 94014350000000 \
        140721046391221 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94014350100000 94014350200000 \
        94014360000000 140721046393000 140721046393100 140721046393100 140721046397000 0";

    #[test]
    fn the_blocks_are_found_after_the_last_parenthesis() {
        assert_eq!(env_range(STAT), Some((140721046393100, 140721046397000)));
        assert_eq!(arg_range(STAT), Some((140721046393000, 140721046393100)));
    }

    #[test]
    fn the_init_has_one_name() {
        assert_eq!(super::INIT_COMM.to_str(), Ok(super::INIT_NAME));
        assert!(
            super::INIT_NAME.len() <= 15,
            "prctl(PR_SET_NAME) keeps 15 bytes"
        );
    }

    #[test]
    fn a_replacement_fills_the_whole_block() {
        assert_eq!(replacement((10, 16), b"init").unwrap(), b"init\0\0");
        assert_eq!(
            replacement((10, 14), b"init").unwrap(),
            [0; 4],
            "no room for the zero"
        );
        assert_eq!(replacement((10, 10), b"").unwrap(), b"");
    }

    #[test]
    fn a_short_or_malformed_line_gives_nothing() {
        let short = STAT.rsplit_once(' ').map(|(head, _)| head).unwrap_or(STAT);
        let short = short
            .rsplit_once(' ')
            .map(|(head, _)| head)
            .unwrap_or(short);
        assert_eq!(env_range(short), None, "fields 50 and 51 missing");
        assert_eq!(env_range("4242 kt S 1"), None, "no parenthesis");
        let reversed = STAT.replace("140721046393100 140721046397000", "9 8");
        assert_eq!(env_range(&reversed), None, "end before start");
    }

    #[test]
    fn this_process_has_an_environment_block() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let (start, end) = env_range(&stat).expect("env_start and env_end");
        assert!(start < end, "{start}..{end}");
    }
}

//! The `:` command palette: the CLI's verbs, typed as on the command line.
//!
//! Parsing is pure: a line becomes a [`Command`] or a usage message. An omitted ENV means the
//! selected environment; `dialogs.rs` fills it in and asks for confirmation where a key would.

/// A verb with its usage, for completion, errors and the help text.
pub struct Verb {
    pub name: &'static str,
    pub usage: &'static str,
}

pub const VERBS: &[Verb] = &[
    Verb {
        name: "build",
        usage: "build [--name NAME] PATH",
    },
    Verb {
        name: "rebuild",
        usage: "rebuild [PATH]",
    },
    Verb {
        name: "new",
        usage: "new [--template T] DIR",
    },
    Verb {
        name: "edit",
        usage: "edit [--template T] [PATH|ENV]",
    },
    Verb {
        name: "stop",
        usage: "stop [ENV]",
    },
    Verb {
        name: "destroy",
        usage: "destroy [--force] [ENV]",
    },
    Verb {
        name: "freeze",
        usage: "freeze [ENV]",
    },
    Verb {
        name: "unfreeze",
        usage: "unfreeze [ENV]",
    },
    Verb {
        name: "archive",
        usage: "archive [ENV]",
    },
    Verb {
        name: "unarchive",
        usage: "unarchive [ENV]",
    },
    Verb {
        name: "rename",
        usage: "rename [ENV] NAME",
    },
    Verb {
        name: "export",
        usage: "export [--bin] [ENV] APP|PATH",
    },
    Verb {
        name: "unexport",
        usage: "unexport [--bin] [ENV] APP|NAME",
    },
    Verb {
        name: "gc",
        usage: "gc [--dry-run]",
    },
    Verb {
        name: "verify-store",
        usage: "verify-store",
    },
    Verb {
        name: "doctor",
        usage: "doctor",
    },
    Verb {
        name: "refresh",
        usage: "refresh",
    },
    Verb {
        name: "help",
        usage: "help",
    },
    Verb {
        name: "quit",
        usage: "quit",
    },
];

/// Short forms people type from habit (the CLI's aliases, vim's `:q`).
const ALIASES: &[(&str, &str)] = &[
    ("rm", "destroy"),
    ("verify", "verify-store"),
    ("q", "quit"),
    ("exit", "quit"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Build {
        path: String,
        name: Option<String>,
    },
    Rebuild {
        path: Option<String>,
    },
    New {
        dir: String,
        template: String,
    },
    /// The manifest editor: a new manifest from `template` in the directory `target`, or the
    /// manifest at `target` (a path, or an environment), or the selection's.
    Edit {
        template: Option<String>,
        target: Option<String>,
    },
    Stop(Option<String>),
    Destroy {
        env: Option<String>,
        force: bool,
    },
    Freeze(Option<String>),
    Unfreeze(Option<String>),
    Archive(Option<String>),
    Unarchive(Option<String>),
    Rename {
        env: Option<String>,
        name: String,
    },
    /// `export`: an application to the desktop, or with `bin` a program as a host command.
    Export {
        env: Option<String>,
        app: String,
        bin: bool,
    },
    Unexport {
        env: Option<String>,
        app: String,
        bin: bool,
    },
    Gc {
        dry_run: bool,
    },
    Verify,
    Doctor,
    Refresh,
    Help,
    Quit,
}

/// Parse a palette line (without the `:`).
pub fn parse(line: &str) -> Result<Command, String> {
    let words = split(line)?;
    let Some((verb, rest)) = words.split_first() else {
        return Err("type a command, e.g. build PATH; Tab completes".into());
    };
    let verb = ALIASES
        .iter()
        .find(|(alias, _)| alias == verb)
        .map_or(verb.as_str(), |(_, full)| full);
    let Some(spec) = VERBS.iter().find(|v| v.name == verb) else {
        return Err(format!("unknown command `{verb}`; Tab lists the commands"));
    };
    let usage = || format!("usage: {}", spec.usage);
    let mut args = Args::new(rest);
    let command = match verb {
        "build" => {
            let name = args.value("--name").map_err(|_| usage())?;
            Command::Build {
                path: args.one().ok_or_else(usage)?,
                name,
            }
        }
        "rebuild" => Command::Rebuild { path: args.opt() },
        "new" => {
            let template = args.value("--template").map_err(|_| usage())?;
            Command::New {
                template: template.unwrap_or_else(|| "minimal".into()),
                dir: args.one().ok_or_else(usage)?,
            }
        }
        "edit" => {
            let template = args.value("--template").map_err(|_| usage())?;
            let target = args.opt();
            if template.is_some() && target.is_none() {
                return Err(usage());
            }
            Command::Edit { template, target }
        }
        "stop" => Command::Stop(args.opt()),
        "destroy" => Command::Destroy {
            force: args.flag("--force"),
            env: args.opt(),
        },
        "freeze" => Command::Freeze(args.opt()),
        "unfreeze" => Command::Unfreeze(args.opt()),
        "archive" => Command::Archive(args.opt()),
        "unarchive" => Command::Unarchive(args.opt()),
        "rename" => match args.rest.len() {
            1 => Command::Rename {
                env: None,
                name: args.rest.remove(0),
            },
            2 => Command::Rename {
                name: args.rest.remove(1),
                env: Some(args.rest.remove(0)),
            },
            _ => return Err(usage()),
        },
        "export" | "unexport" => {
            let bin = args.flag("--bin");
            let (env, app) = match args.rest.len() {
                1 => (None, args.rest.remove(0)),
                2 => {
                    let app = args.rest.remove(1);
                    (Some(args.rest.remove(0)), app)
                }
                _ => return Err(usage()),
            };
            if verb == "export" {
                Command::Export { env, app, bin }
            } else {
                Command::Unexport { env, app, bin }
            }
        }
        "gc" => Command::Gc {
            dry_run: args.flag("--dry-run"),
        },
        "verify-store" => Command::Verify,
        "doctor" => Command::Doctor,
        "refresh" => Command::Refresh,
        "help" => Command::Help,
        _ => Command::Quit,
    };
    if args.rest.is_empty() {
        Ok(command)
    } else {
        Err(format!("unexpected `{}`; {}", args.rest.join(" "), usage()))
    }
}

/// The verbs that start with the typed word (all of them for an empty line).
pub fn completions(line: &str) -> Vec<&'static Verb> {
    let word = line.trim_start();
    if word.contains(char::is_whitespace) {
        // Past the verb: show its usage only.
        let verb = word.split_whitespace().next().unwrap_or("");
        return VERBS.iter().filter(|v| v.name == verb).collect();
    }
    VERBS.iter().filter(|v| v.name.starts_with(word)).collect()
}

/// Split on spaces; single or double quotes keep spaces inside a word.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("missing closing {q}"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The words after the verb, consumed by the parser above.
struct Args {
    rest: Vec<String>,
}

impl Args {
    fn new(rest: &[String]) -> Args {
        Args {
            rest: rest.to_vec(),
        }
    }

    fn flag(&mut self, flag: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|w| w != flag);
        self.rest.len() != before
    }

    /// `--opt VALUE` or `--opt=VALUE`; an error when the value is missing.
    fn value(&mut self, opt: &str) -> Result<Option<String>, ()> {
        let prefix = format!("{opt}=");
        if let Some(i) = self.rest.iter().position(|w| w.starts_with(&prefix)) {
            let word = self.rest.remove(i);
            return Ok(Some(word[prefix.len()..].to_string()));
        }
        match self.rest.iter().position(|w| w == opt) {
            Some(i) if i + 1 < self.rest.len() => {
                self.rest.remove(i);
                Ok(Some(self.rest.remove(i)))
            }
            Some(_) => Err(()),
            None => Ok(None),
        }
    }

    fn opt(&mut self) -> Option<String> {
        (!self.rest.is_empty()).then(|| self.rest.remove(0))
    }

    fn one(&mut self) -> Option<String> {
        self.opt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap_or_else(|e| panic!("`{line}`: {e}"))
    }

    #[test]
    fn verbs_parse_as_on_the_command_line() {
        assert_eq!(
            ok("build ./proj"),
            Command::Build {
                path: "./proj".into(),
                name: None
            }
        );
        assert_eq!(
            ok("build --name web 'my project/karapace.toml'"),
            Command::Build {
                path: "my project/karapace.toml".into(),
                name: Some("web".into())
            }
        );
        assert_eq!(
            ok("destroy --force web"),
            Command::Destroy {
                env: Some("web".into()),
                force: true
            }
        );
        assert_eq!(
            ok("rm"),
            Command::Destroy {
                env: None,
                force: false
            }
        );
        assert_eq!(
            ok("rename web api"),
            Command::Rename {
                env: Some("web".into()),
                name: "api".into()
            }
        );
        assert_eq!(
            ok("rename api"),
            Command::Rename {
                env: None,
                name: "api".into()
            }
        );
        assert_eq!(
            ok("export web org.gnome.gedit"),
            Command::Export {
                env: Some("web".into()),
                app: "org.gnome.gedit".into(),
                bin: false
            }
        );
        assert_eq!(
            ok("export --bin /usr/bin/rg"),
            Command::Export {
                env: None,
                app: "/usr/bin/rg".into(),
                bin: true
            }
        );
        assert_eq!(
            ok("unexport --bin web rg"),
            Command::Unexport {
                env: Some("web".into()),
                app: "rg".into(),
                bin: true
            }
        );
        assert!(parse("export").unwrap_err().contains("usage: export"));
        assert_eq!(ok("  gc   --dry-run "), Command::Gc { dry_run: true });
        assert_eq!(ok("verify"), Command::Verify);
        assert_eq!(ok("q"), Command::Quit);
        assert_eq!(
            ok("new --template=rust-dev ~/src/x"),
            Command::New {
                dir: "~/src/x".into(),
                template: "rust-dev".into()
            }
        );
    }

    #[test]
    fn mistakes_get_a_usage_message() {
        assert_eq!(
            parse("build").unwrap_err(),
            "usage: build [--name NAME] PATH"
        );
        assert_eq!(
            parse("build --name").unwrap_err(),
            "usage: build [--name NAME] PATH"
        );
        assert!(parse("frobnicate").unwrap_err().contains("unknown command"));
        assert!(parse("stop a b").unwrap_err().contains("unexpected `b`"));
        assert!(parse("build 'open")
            .unwrap_err()
            .contains("missing closing"));
        assert!(parse("   ").is_err());
    }

    #[test]
    fn completion_lists_matching_verbs() {
        let names = |line| -> Vec<&str> { completions(line).iter().map(|v| v.name).collect() };
        assert_eq!(names("re"), ["rebuild", "rename", "refresh"]);
        assert_eq!(names("un"), ["unfreeze", "unarchive", "unexport"]);
        assert_eq!(names("destroy we"), ["destroy"]);
        assert_eq!(names("").len(), VERBS.len());
    }
}

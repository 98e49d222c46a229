//! `%(name)s` expansion, as supervisor does it with Python's `%` operator.
//!
//! Owns: the placeholder grammar (`%(name)` + optional `-`/`0` flags and width + `s` or `d`),
//! `%%`, `%(here)s` (the ini file's absolute directory), `%(ENV_X)s`, and the per-section set
//! of known names. Must never: guess — an unknown name, a missing variable or a lone `%` is an
//! error naming the key.

use std::path::{Component, Path, PathBuf};

use super::syntax::{Entry, Section};
use super::{at, ConfigError};

/// Widest `%(name)NNs` field accepted; keeps a typo from asking for a huge string.
const MAX_WIDTH: usize = 64;

/// What a name expands to.
pub(crate) enum Lookup {
    /// Text, formatted with `s` (width pads with spaces).
    Text(String),
    /// A number, formatted with `s` or `d` (a `0` flag pads with zeros).
    Number(u32),
    /// Leave the placeholder as written, for a later pass (`%(process_num)d` at parse time).
    Keep,
}

/// Expands every placeholder of `input` through `lookup`.
///
/// With `partial`, `%%` stays `%%` and `%` in looked-up text becomes `%%`, so the result can
/// be expanded again (by [`super::Program::processes`]) without changing its meaning.
pub(crate) fn expand(
    input: &str,
    partial: bool,
    lookup: &mut dyn FnMut(&str) -> Result<Lookup, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some((before, after)) = rest.split_once('%') {
        out.push_str(before);
        if let Some(tail) = after.strip_prefix('%') {
            out.push_str(if partial { "%%" } else { "%" });
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('(') else {
            return Err("a lone '%' must be written '%%'".to_string());
        };
        let Some((name, spec_and_tail)) = body.split_once(')') else {
            return Err(format!("'%({body}' has no closing ')'"));
        };
        let (spec, tail) = Spec::parse(spec_and_tail)
            .ok_or_else(|| format!("'%({name})' must be followed by s or d, as in %({name})s"))?;
        let placeholder = spec_and_tail
            .get(..spec_and_tail.len().saturating_sub(tail.len()))
            .unwrap_or_default();
        if spec.width > MAX_WIDTH {
            return Err(format!(
                "width of '%({name}){placeholder}' is above {MAX_WIDTH}"
            ));
        }
        match lookup(name)? {
            Lookup::Keep => {
                out.push('%');
                out.push('(');
                out.push_str(name);
                out.push(')');
                out.push_str(placeholder);
            }
            Lookup::Text(text) => {
                if spec.number {
                    return Err(format!(
                        "%({name}) is text: write %({name})s, not %({name}){placeholder}"
                    ));
                }
                let padded = spec.pad(&text, false);
                if partial {
                    out.push_str(&padded.replace('%', "%%"));
                } else {
                    out.push_str(&padded);
                }
            }
            Lookup::Number(n) => out.push_str(&spec.pad(&n.to_string(), true)),
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The conversion after `%(name)`: flags, width and type.
struct Spec {
    left: bool,
    zero: bool,
    width: usize,
    number: bool,
}

impl Spec {
    /// Parses `-`/`0` flags, a width and `s`, `d` or `i`; returns the rest of the text.
    fn parse(text: &str) -> Option<(Spec, &str)> {
        let mut spec = Spec {
            left: false,
            zero: false,
            width: 0,
            number: false,
        };
        let mut chars = text.char_indices();
        let mut width_digits = 0usize;
        loop {
            let (i, c) = chars.next()?;
            match c {
                '-' if width_digits == 0 => spec.left = true,
                '0' if width_digits == 0 => spec.zero = true,
                '0'..='9' => {
                    width_digits = width_digits.saturating_add(1);
                    let digit = c.to_digit(10).unwrap_or(0) as usize;
                    // Saturates far above MAX_WIDTH, which the caller rejects.
                    spec.width = spec
                        .width
                        .saturating_mul(10)
                        .saturating_add(digit)
                        .min(10_000);
                }
                's' | 'd' | 'i' => {
                    spec.number = c != 's';
                    return Some((spec, text.get(i.saturating_add(1)..)?));
                }
                _ => return None,
            }
        }
    }

    /// Pads `body` to the width: left-aligned with `-`, zero-filled numbers with `0`, else
    /// right-aligned with spaces (Python's rules).
    fn pad(&self, body: &str, numeric: bool) -> String {
        let width = self.width;
        if self.left {
            format!("{body:<width$}")
        } else if self.zero && numeric {
            format!("{body:0>width$}")
        } else {
            format!("{body:>width$}")
        }
    }
}

/// The absolute directory of the ini file, lexically normalised like Python's `abspath`
/// (no symlinks resolved). An error message when it cannot be known.
pub(crate) fn here_dir(file: &Path) -> Result<String, String> {
    let absolute = if file.is_absolute() {
        file.to_path_buf()
    } else {
        let cwd = std::env::current_dir()
            .map_err(|e| format!("cannot find the current directory for %(here)s: {e}"))?;
        cwd.join(file)
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in absolute.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    // The last part is the file itself.
    if parts.pop().is_none() {
        return Err(format!(
            "'{}' names no file, so %(here)s is unknown",
            file.display()
        ));
    }
    let mut dir = PathBuf::from("/");
    dir.extend(parts);
    dir.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("the directory of '{}' is not UTF-8", file.display()))
}

/// The expansion context of one file: `%(here)s` and the environment.
pub(crate) struct Vars<'a> {
    /// The ini file's directory, or why it is unknown (an error only when used).
    pub here: Result<String, String>,
    /// `%(ENV_X)s` looks up `X` here.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Resolves the host names of `uwsgi_pass`, `syslog = udp:` and `ready = tcp:`. Not an
    /// expansion, but it travels with the file's other outside inputs to every section builder.
    pub resolve: super::Resolve<'a>,
}

impl Vars<'_> {
    /// Expands an entry of `[uwgate]`, `[server]` or `[location:*]`.
    pub(crate) fn expand(&self, section: &Section, entry: &Entry) -> Result<String, ConfigError> {
        self.expand_with(
            section,
            entry,
            &mut |name| {
                Err(format!(
                    "unknown name '%({name})': known are %(here)s, %(ENV_NAME)s and %%"
                ))
            },
            false,
        )
    }

    /// Expands an entry of `[program:NAME]`. `%(program_name)s` and `%(group_name)s` become
    /// `program`. `%(process_num)d` is kept for [`super::Program::processes`] in `command`
    /// and `process_name` (`partial`), and refused elsewhere: a key has one value, not one
    /// per process.
    pub(crate) fn expand_program(
        &self,
        section: &Section,
        entry: &Entry,
        program: &str,
        partial: bool,
    ) -> Result<String, ConfigError> {
        self.expand_with(section, entry, &mut |name| match name {
            "program_name" | "group_name" => Ok(Lookup::Text(program.to_string())),
            "process_num" if partial => Ok(Lookup::Keep),
            "process_num" => Err(
                "%(process_num)d is expanded only in command and process_name".to_string(),
            ),
            _ => Err(format!(
                "unknown name '%({name})': known are %(here)s, %(ENV_NAME)s, %(program_name)s, %(group_name)s, %(process_num)d and %%"
            )),
        }, partial)
    }

    fn expand_with(
        &self,
        section: &Section,
        entry: &Entry,
        more: &mut dyn FnMut(&str) -> Result<Lookup, String>,
        partial: bool,
    ) -> Result<String, ConfigError> {
        let mut lookup = |name: &str| {
            if name == "here" {
                return self.here.clone().map(Lookup::Text);
            }
            if let Some(var) = name.strip_prefix("ENV_") {
                return (self.env)(var)
                    .map(Lookup::Text)
                    .ok_or_else(|| format!("environment variable '{var}' is not set"));
            }
            more(name)
        };
        expand(&entry.value, partial, &mut lookup).map_err(|why| {
            at(
                entry.line,
                format!(
                    "cannot expand '{}' in [{}]: {why}",
                    entry.key, section.title
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(input: &str) -> Result<String, String> {
        expand(input, false, &mut |name| match name {
            "here" => Ok(Lookup::Text("/etc/uw%gate".into())),
            "n" => Ok(Lookup::Number(7)),
            "keep" => Ok(Lookup::Keep),
            _ => Err(format!("unknown {name}")),
        })
    }

    fn partial(input: &str) -> Result<String, String> {
        expand(input, true, &mut |name| match name {
            "here" => Ok(Lookup::Text("/a%b".into())),
            _ => Ok(Lookup::Keep),
        })
    }

    #[test]
    fn text_without_percent_is_unchanged() {
        assert_eq!(full("plain text").unwrap(), "plain text");
    }

    #[test]
    fn double_percent_is_a_literal_percent() {
        assert_eq!(full("100%% sure %%s").unwrap(), "100% sure %s");
    }

    #[test]
    fn names_expand_with_s_and_d() {
        assert_eq!(full("%(here)s/x").unwrap(), "/etc/uw%gate/x");
        assert_eq!(full("n=%(n)d %(n)s %(n)i").unwrap(), "n=7 7 7");
    }

    #[test]
    fn width_and_flags_follow_python() {
        assert_eq!(full("%(n)02d").unwrap(), "07");
        assert_eq!(full("%(n)03d").unwrap(), "007");
        assert_eq!(full("[%(n)3d]").unwrap(), "[  7]");
        assert_eq!(full("[%(n)-3d]").unwrap(), "[7  ]");
        assert_eq!(full("%(n)1d").unwrap(), "7");
        assert_eq!(full("[%(here)14s]").unwrap(), "[  /etc/uw%gate]");
    }

    #[test]
    fn lone_percent_is_an_error() {
        assert_eq!(
            full("date +%s").unwrap_err(),
            "a lone '%' must be written '%%'"
        );
        assert_eq!(full("50%").unwrap_err(), "a lone '%' must be written '%%'");
    }

    #[test]
    fn unclosed_name_is_an_error() {
        assert_eq!(full("%(here").unwrap_err(), "'%(here' has no closing ')'");
    }

    #[test]
    fn missing_conversion_is_an_error() {
        assert_eq!(
            full("%(here)/x").unwrap_err(),
            "'%(here)' must be followed by s or d, as in %(here)s"
        );
        assert!(full("%(here)").is_err());
        assert!(full("%(n)02").is_err());
    }

    #[test]
    fn text_with_d_is_an_error() {
        assert_eq!(
            full("%(here)d").unwrap_err(),
            "%(here) is text: write %(here)s, not %(here)d"
        );
    }

    #[test]
    fn huge_width_is_an_error() {
        assert!(full("%(n)65d").unwrap_err().contains("above 64"));
        assert!(full("%(n)99999999999999999999999d").is_err());
        assert!(full("%(n)64d").is_ok());
    }

    #[test]
    fn unknown_name_error_comes_from_lookup() {
        assert_eq!(full("%(nope)s").unwrap_err(), "unknown nope");
    }

    #[test]
    fn keep_leaves_the_placeholder_as_written() {
        assert_eq!(full("a%(keep)02db").unwrap(), "a%(keep)02db");
    }

    #[test]
    fn partial_keeps_double_percent_and_escapes_text() {
        assert_eq!(
            partial("%(here)s %% %(process_num)-3d").unwrap(),
            "/a%%b %% %(process_num)-3d"
        );
        // Expanding the result again gives what one full pass would have given.
        let again = expand("/a%%b %% x", false, &mut |_| Ok(Lookup::Keep)).unwrap();
        assert_eq!(again, "/a%b % x");
    }

    #[test]
    fn here_is_the_absolute_normalised_directory() {
        assert_eq!(here_dir(Path::new("/etc/uwgate.ini")).unwrap(), "/etc");
        assert_eq!(
            here_dir(Path::new("/etc/./uwgate/../uwgate.ini")).unwrap(),
            "/etc"
        );
        assert_eq!(here_dir(Path::new("/uwgate.ini")).unwrap(), "/");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            here_dir(Path::new("conf/uwgate.ini")).unwrap(),
            cwd.join("conf").to_str().unwrap()
        );
        assert_eq!(
            here_dir(Path::new("uwgate.ini")).unwrap(),
            cwd.to_str().unwrap()
        );
    }

    #[test]
    fn here_of_no_file_is_an_error() {
        assert!(here_dir(Path::new("/")).is_err());
    }
}

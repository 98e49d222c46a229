//! The ini syntax: text → sections of `key = value` entries, each with its line number.
//!
//! Owns comments (`;`/`#` lines, `;` after whitespace), section headers and their kinds,
//! skipping `[uwsgi]`/`[uwsgi:*]`, and the section-level error helpers (duplicate and unknown
//! keys, invalid values) so every message reads the same. Must never: interpret a value — no
//! expansion, no typing; the section builders do that.

use super::{at, ConfigError};

/// What a section header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SectionKind {
    /// `[uwgate]`
    Global,
    /// `[server]`
    Server,
    /// `[location:PREFIX]`
    Location(String),
    /// `[program:NAME]`
    Program(String),
}

/// One section with its entries, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub kind: SectionKind,
    /// As shown in messages, without brackets: `location:/static/`.
    pub title: String,
    /// Line of the header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// One `key = value` line, trimmed, comment removed, not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Splits `text` into sections. `[uwsgi]` and `[uwsgi:*]` sections (uWSGI's own) are dropped
/// with all their lines unread.
pub(crate) fn split(text: &str) -> Result<Vec<Section>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<Section> = Vec::new();
    // Whether lines belong to a skipped [uwsgi] section.
    let mut skipping = false;
    for (raw, line) in text.lines().zip(1usize..) {
        if raw.contains('\0') {
            return Err(at(line, "NUL byte in line".to_string()));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        let content = strip_inline_comment(trimmed).trim_end();
        if let Some(header) = content.strip_prefix('[') {
            let Some(inner) = header.strip_suffix(']') else {
                return Err(at(
                    line,
                    format!("section header '{content}' must end with ']'"),
                ));
            };
            match classify(inner.trim()).map_err(|message| at(line, message))? {
                None => skipping = true,
                Some((kind, title)) => {
                    skipping = false;
                    sections.push(Section {
                        kind,
                        title,
                        line,
                        entries: Vec::new(),
                    });
                }
            }
            continue;
        }
        if skipping {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(at(
                line,
                format!("expected 'key = value' or '[section]', found '{content}'"),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(at(line, format!("missing key before '=' in '{content}'")));
        }
        let Some(section) = sections.last_mut() else {
            return Err(at(
                line,
                format!("'{key}' is outside any section; put it under [uwgate], [server], [location:PREFIX] or [program:NAME]"),
            ));
        };
        section.entries.push(Entry {
            key: key.to_string(),
            value: value.trim().to_string(),
            line,
        });
    }
    Ok(sections)
}

/// Cuts a value at the first `;` that follows whitespace (supervisor's inline comment rule).
/// A `;` glued to the text before it (`a;b`) is part of the value; `#` never starts an inline
/// comment, so URLs with fragments and colours survive.
fn strip_inline_comment(line: &str) -> &str {
    let mut after_space = false;
    for (i, c) in line.char_indices() {
        if c == ';' && after_space {
            return line.get(..i).unwrap_or(line);
        }
        after_space = c == ' ' || c == '\t';
    }
    line
}

/// The kind and title of a header's inner text; `Ok(None)` for sections that are skipped.
fn classify(inner: &str) -> Result<Option<(SectionKind, String)>, String> {
    match inner {
        "uwgate" => return Ok(Some((SectionKind::Global, inner.to_string()))),
        "server" => return Ok(Some((SectionKind::Server, inner.to_string()))),
        "uwsgi" => return Ok(None),
        "location" => return Err("[location] needs a prefix: [location:/path/]".to_string()),
        "program" => return Err("[program] needs a name: [program:NAME]".to_string()),
        _ => {}
    }
    if inner.starts_with("uwsgi:") {
        return Ok(None);
    }
    if let Some(prefix) = inner.strip_prefix("location:") {
        let prefix = prefix.trim();
        if !prefix.starts_with('/') {
            return Err(format!(
                "location prefix '{prefix}' must start with '/' in [{inner}]"
            ));
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "location prefix '{prefix}' must not contain spaces or control characters"
            ));
        }
        return Ok(Some((
            SectionKind::Location(prefix.to_string()),
            format!("location:{prefix}"),
        )));
    }
    if let Some(name) = inner.strip_prefix("program:") {
        let name = name.trim();
        if !is_program_name(name) {
            return Err(format!(
                "program name '{name}' must be non-empty and use only letters, digits, '_', '.' and '-'"
            ));
        }
        return Ok(Some((
            SectionKind::Program(name.to_string()),
            format!("program:{name}"),
        )));
    }
    Err(format!(
        "unknown section [{inner}]; uwgate reads [uwgate], [server], [location:PREFIX] and [program:NAME], and skips [uwsgi]"
    ))
}

/// A program name as supervisor allows it in a section header and `depends_on`.
pub(crate) fn is_program_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Section {
    /// `unknown key 'K' in [SECTION]` at the entry's line.
    pub(crate) fn unknown(&self, entry: &Entry) -> ConfigError {
        at(
            entry.line,
            format!("unknown key '{}' in [{}]", entry.key, self.title),
        )
    }

    /// `invalid value 'V' for 'K' in [SECTION]: WHY` at the entry's line; `why` says what was
    /// expected (`expected a size like 8k`).
    pub(crate) fn invalid(&self, entry: &Entry, value: &str, why: &str) -> ConfigError {
        at(
            entry.line,
            format!(
                "invalid value '{value}' for '{}' in [{}]: {why}",
                entry.key, self.title
            ),
        )
    }
}

/// Tracks keys already given in one section, to refuse a second non-repeatable one.
#[derive(Default)]
pub(crate) struct Seen<'a> {
    keys: Vec<(&'a str, usize)>,
}

impl<'a> Seen<'a> {
    /// Records `entry`; an error naming both lines when its key was given before and is not
    /// in `repeatable`.
    pub(crate) fn once(
        &mut self,
        section: &Section,
        entry: &'a Entry,
        repeatable: &[&str],
    ) -> Result<(), ConfigError> {
        if repeatable.contains(&entry.key.as_str()) {
            return Ok(());
        }
        if let Some((_, first)) = self.keys.iter().find(|(key, _)| *key == entry.key) {
            return Err(at(
                entry.line,
                format!(
                    "'{}' given twice in [{}] (lines {} and {})",
                    entry.key, section.title, first, entry.line
                ),
            ));
        }
        self.keys.push((&entry.key, entry.line));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, usize)> {
        split(text)
            .unwrap()
            .into_iter()
            .flat_map(|s| s.entries)
            .map(|e| (e.key, e.value, e.line))
            .collect()
    }

    fn message(text: &str) -> String {
        let e = split(text).unwrap_err();
        format!("{}: {}", e.line, e.message)
    }

    #[test]
    fn empty_text_has_no_sections() {
        assert_eq!(split("").unwrap(), vec![]);
        assert_eq!(
            split("\n  \n; only a comment\n# another\n").unwrap(),
            vec![]
        );
    }

    #[test]
    fn keys_and_values_are_trimmed_and_numbered() {
        assert_eq!(
            entries("[uwgate]\n  user   =  nginx  \n\ngroup=www\n"),
            vec![
                ("user".into(), "nginx".into(), 2),
                ("group".into(), "www".into(), 4)
            ]
        );
    }

    #[test]
    fn semicolon_after_whitespace_ends_the_value() {
        assert_eq!(
            entries("[uwgate]\nuser = nginx ; the user\ngroup = a;b\npidfile = /x\t; tab\n"),
            vec![
                ("user".into(), "nginx".into(), 2),
                ("group".into(), "a;b".into(), 3),
                ("pidfile".into(), "/x".into(), 4)
            ]
        );
    }

    #[test]
    fn hash_inside_a_value_is_kept() {
        assert_eq!(
            entries("[uwgate]\nuser = a #b\n"),
            vec![("user".into(), "a #b".into(), 2)]
        );
    }

    #[test]
    fn comment_lines_may_be_indented() {
        assert_eq!(entries("[uwgate]\n   ; x = 1\n\t# y = 2\n"), vec![]);
    }

    #[test]
    fn empty_value_is_kept_empty() {
        assert_eq!(
            entries("[uwgate]\nuser =\n"),
            vec![("user".into(), "".into(), 2)]
        );
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        assert_eq!(
            entries("[program:a]\nenvironment = A=1,B=2\n"),
            vec![("environment".into(), "A=1,B=2".into(), 2)]
        );
    }

    #[test]
    fn crlf_line_endings_and_bom_are_accepted() {
        assert_eq!(
            entries("\u{feff}[uwgate]\r\nuser = nginx\r\n"),
            vec![("user".into(), "nginx".into(), 2)]
        );
    }

    #[test]
    fn section_headers_take_comments_and_inner_spaces() {
        let sections =
            split("[ location:/static/ ]   ; longest prefix wins\n[program: web ]\n").unwrap();
        assert_eq!(sections[0].kind, SectionKind::Location("/static/".into()));
        assert_eq!(sections[0].title, "location:/static/");
        assert_eq!(sections[1].kind, SectionKind::Program("web".into()));
        assert_eq!(sections[1].line, 2);
    }

    #[test]
    fn uwsgi_sections_are_skipped_unread() {
        let text = "[uwsgi]\nsocket = 1\nnot an ini line at all\n%(weird)\n[uwsgi:prod]\nx\n[server]\nlisten = 80\n";
        let sections = split(text).unwrap();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].kind, SectionKind::Server);
        assert_eq!(sections[0].entries.len(), 1);
    }

    #[test]
    fn unknown_section_is_an_error_with_its_line() {
        assert!(message("\n[supervisord]\n").starts_with("2: unknown section [supervisord];"));
        assert!(message("[UWGATE]\n").starts_with("1: unknown section [UWGATE];"));
    }

    #[test]
    fn location_without_prefix_is_an_error() {
        assert_eq!(
            message("[location]\n"),
            "1: [location] needs a prefix: [location:/path/]"
        );
        assert_eq!(
            message("[location:static/]\n"),
            "1: location prefix 'static/' must start with '/' in [location:static/]"
        );
        assert_eq!(
            message("[location:/a b/]\n"),
            "1: location prefix '/a b/' must not contain spaces or control characters"
        );
    }

    #[test]
    fn program_name_must_be_simple() {
        assert_eq!(
            message("[program]\n"),
            "1: [program] needs a name: [program:NAME]"
        );
        assert!(message("[program:]\n").starts_with("1: program name '' must be non-empty"));
        assert!(message("[program:a/b]\n").starts_with("1: program name 'a/b' must"));
        assert!(split("[program:My_app-2.0]\n").is_ok());
    }

    #[test]
    fn unclosed_header_is_an_error() {
        assert_eq!(
            message("[server\n"),
            "1: section header '[server' must end with ']'"
        );
    }

    #[test]
    fn key_outside_a_section_is_an_error() {
        assert!(message("; c\nuser = x\n").starts_with("2: 'user' is outside any section;"));
    }

    #[test]
    fn line_without_equals_is_an_error() {
        assert_eq!(
            message("[uwgate]\nuser nginx\n"),
            "2: expected 'key = value' or '[section]', found 'user nginx'"
        );
        assert_eq!(
            message("[uwgate]\n= x\n"),
            "2: missing key before '=' in '= x'"
        );
    }

    #[test]
    fn nul_byte_is_an_error() {
        assert_eq!(message("[uwgate]\nuser = a\0b\n"), "2: NUL byte in line");
    }

    #[test]
    fn second_non_repeatable_key_names_both_lines() {
        let sections = split("[server]\nlisten = 80\nserver_name = a\nserver_name = b\n").unwrap();
        let section = &sections[0];
        let mut seen = Seen::default();
        for (i, entry) in section.entries.iter().enumerate() {
            let result = seen.once(section, entry, &["listen"]);
            if i < 2 {
                assert!(result.is_ok());
            } else {
                let e = result.unwrap_err();
                assert_eq!(e.line, 4);
                assert_eq!(
                    e.message,
                    "'server_name' given twice in [server] (lines 3 and 4)"
                );
            }
        }
    }

    #[test]
    fn repeatable_keys_may_repeat() {
        let sections = split("[server]\nlisten = 80\nlisten = 81\n").unwrap();
        let mut seen = Seen::default();
        for entry in &sections[0].entries {
            assert!(seen.once(&sections[0], entry, &["listen"]).is_ok());
        }
    }
}

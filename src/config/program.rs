//! `[program:NAME]`: supervisor's program section, and one program's expansion into processes.
//!
//! Owns: program keys with supervisor's meanings and defaults, `environment` parsing,
//! POSIX (shlex) command splitting, per-process `%(process_num)d` expansion, and the checks
//! that span programs (depends_on names and cycles, duplicate process names). Must never:
//! spawn, signal, look up users or search PATH — the watchdog does that at start.

use std::collections::HashMap;

use super::expand::{expand, Lookup, Vars};
use super::syntax::{is_program_name, Entry, Section, Seen};
use super::{at, values, AutoRestart, ConfigError, ProcessSpec, Program};

/// Keys `[program:x]` implements; none repeats.
const KEYS: &[&str] = &[
    "command",
    "process_name",
    "numprocs",
    "numprocs_start",
    "directory",
    "umask",
    "priority",
    "autostart",
    "startsecs",
    "startretries",
    "autorestart",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "stopasgroup",
    "killasgroup",
    "user",
    "environment",
    "redirect_stderr",
    "depends_on",
    "ready",
    "ready_timeout",
    "required_for_health",
    "output_buffer_size",
    "reloadsignal",
    "stdout_syslog_priority",
    "stderr_syslog_priority",
];

/// Supervisor keys accepted and ignored, each with a warning saying why.
const IGNORED: &[&str] = &[
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stdout_capture_maxbytes",
    "stdout_events_enabled",
    "stdout_syslog",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "stderr_capture_maxbytes",
    "stderr_events_enabled",
    "stderr_syslog",
    "serverurl",
];

/// Largest `output_buffer_size` (per stream, per process).
const MAX_OUTPUT_BUFFER: u64 = 16 << 20;

/// Most processes one program may have.
pub(crate) const MAX_NUMPROCS: u32 = 1024;

/// A built program with what the file-wide checks need.
pub(crate) struct BuiltProgram {
    pub program: Program,
    /// Every expanded process name, in process order.
    pub process_names: Vec<String>,
    /// Line of `depends_on`, or of the header when absent.
    pub depends_on_line: usize,
}

/// Builds a [`Program`] named `name` from its section, checking that every process expands
/// and splits. `warnings` receives `(line, message)` for ignored supervisor keys.
pub(crate) fn build_program(
    section: &Section,
    name: &str,
    vars: &Vars<'_>,
    warnings: &mut Vec<(usize, String)>,
) -> Result<BuiltProgram, ConfigError> {
    let mut program = Program::new(name, "");
    program.line = section.line;
    let mut lines = KeyLines::new(section.line);
    let mut seen = Seen::default();

    for entry in &section.entries {
        let key = entry.key.as_str();
        if IGNORED.contains(&key) {
            seen.once(section, entry, &[])?;
            warn_ignored(section, entry, warnings);
            continue;
        }
        if !KEYS.contains(&key) {
            return Err(section.unknown(entry));
        }
        seen.once(section, entry, &[])?;
        let per_process = key == "command" || key == "process_name";
        let value = vars.expand_program(section, entry, name, per_process)?;
        let read = read_process_key(&mut program, &mut lines, key, &value, entry.line)
            .or_else(|| read_lifecycle_key(&mut program, key, &value))
            .or_else(|| read_readiness_key(&mut program, &mut lines, key, &value, entry.line, vars))
            .or_else(|| read_output_key(&mut program, key, &value));
        match read {
            Some(read) => read.map_err(|why| section.invalid(entry, &value, &why))?,
            None => return Err(section.unknown(entry)),
        }
    }
    // supervisor: stopasgroup implies killasgroup.
    if program.stopasgroup {
        program.killasgroup = true;
    }
    let command_line = check_program(section, &program, &lines)?;
    let process_names = expand_processes(section, &program, command_line, lines.process_name)?;
    Ok(BuiltProgram {
        program,
        process_names,
        depends_on_line: lines.depends_on,
    })
}

/// The lines of the keys that later checks point at, the section's header line when absent.
struct KeyLines {
    command: Option<usize>,
    process_name: Option<usize>,
    numprocs: usize,
    numprocs_start: usize,
    depends_on: usize,
}

impl KeyLines {
    fn new(header: usize) -> Self {
        KeyLines {
            command: None,
            process_name: None,
            numprocs: header,
            numprocs_start: header,
            depends_on: header,
        }
    }
}

/// Warns that a supervisor key is accepted and ignored, and why.
fn warn_ignored(section: &Section, entry: &Entry, warnings: &mut Vec<(usize, String)>) {
    let key = entry.key.as_str();
    let why = if key == "serverurl" {
        "uwgate ctl finds the socket through control_socket (or -s)"
    } else {
        "output goes to syslog"
    };
    warnings.push((
        entry.line,
        format!("'{key}' ignored in [{}]: {why}", section.title),
    ));
}

/// What runs and as whom: command, process_name, numprocs, numprocs_start, directory, umask,
/// priority, user, environment. `None` for any other key.
fn read_process_key(
    program: &mut Program,
    lines: &mut KeyLines,
    key: &str,
    value: &str,
    line: usize,
) -> Option<Result<(), String>> {
    Some(match key {
        "command" => {
            if value.trim().is_empty() {
                return Some(Err("expected a command line".to_string()));
            }
            program.command = value.to_string();
            lines.command = Some(line);
            Ok(())
        }
        "process_name" => {
            program.process_name = value.to_string();
            lines.process_name = Some(line);
            Ok(())
        }
        "numprocs" => u32_in(value, 1, MAX_NUMPROCS).map(|n| {
            program.numprocs = n;
            lines.numprocs = line;
        }),
        "numprocs_start" => u32_in(value, 0, u32::MAX).map(|n| {
            program.numprocs_start = n;
            lines.numprocs_start = line;
        }),
        "directory" => values::absolute_path(value).map(|v| program.directory = Some(v)),
        "umask" => values::umask(value).map(|v| program.umask = Some(v)),
        "priority" => values::signed_in(value, i64::from(i32::MIN), i64::from(i32::MAX))
            .map(|n| program.priority = i32::try_from(n).unwrap_or(i32::MAX)),
        "user" => values::account(value).map(|v| program.user = Some(v)),
        "environment" => parse_environment(value).map(|v| program.environment = v),
        _ => return None,
    })
}

/// How processes start, restart and stop: autostart, startsecs, startretries, autorestart,
/// exitcodes, stopsignal, stopwaitsecs, stopasgroup, killasgroup, reloadsignal. `None` for
/// any other key.
fn read_lifecycle_key(program: &mut Program, key: &str, value: &str) -> Option<Result<(), String>> {
    Some(match key {
        "autostart" => values::boolean(value).map(|v| program.autostart = v),
        "startsecs" => values::duration(value, true).map(|v| program.startsecs = v),
        "startretries" => u32_in(value, 0, u32::MAX).map(|v| program.startretries = v),
        "autorestart" => values::autorestart(value).map(|v| program.autorestart = v),
        "exitcodes" => values::exitcodes(value).map(|v| program.exitcodes = v),
        "stopsignal" => values::signal(value).map(|v| program.stopsignal = v),
        "stopwaitsecs" => values::duration(value, true).map(|v| program.stopwaitsecs = v),
        "stopasgroup" => values::boolean(value).map(|v| program.stopasgroup = v),
        "killasgroup" => values::boolean(value).map(|v| program.killasgroup = v),
        "reloadsignal" => values::signal(value).map(|v| program.reloadsignal = v),
        _ => return None,
    })
}

/// When a program counts as up: depends_on, ready, ready_timeout, required_for_health.
/// `None` for any other key.
fn read_readiness_key(
    program: &mut Program,
    lines: &mut KeyLines,
    key: &str,
    value: &str,
    line: usize,
    vars: &Vars<'_>,
) -> Option<Result<(), String>> {
    Some(match key {
        "depends_on" => depends_on(value).map(|names| {
            program.depends_on = names;
            lines.depends_on = line;
        }),
        "ready" => values::ready(value, vars.resolve).map(|v| program.ready = Some(v)),
        "ready_timeout" => values::duration(value, false).map(|v| program.ready_timeout = v),
        "required_for_health" => values::boolean(value).map(|v| program.required_for_health = v),
        _ => return None,
    })
}

/// Where output goes: redirect_stderr, output_buffer_size, stdout_syslog_priority,
/// stderr_syslog_priority. `None` for any other key.
fn read_output_key(program: &mut Program, key: &str, value: &str) -> Option<Result<(), String>> {
    Some(match key {
        "redirect_stderr" => values::boolean(value).map(|v| program.redirect_stderr = v),
        "output_buffer_size" => values::size_in(value, 0, MAX_OUTPUT_BUFFER)
            .map(|n| program.output_buffer_size = usize::try_from(n).unwrap_or(0)),
        "stdout_syslog_priority" => {
            values::priority(value).map(|v| program.stdout_syslog_priority = v)
        }
        "stderr_syslog_priority" => {
            values::priority(value).map(|v| program.stderr_syslog_priority = v)
        }
        _ => return None,
    })
}

/// A number from `min` to `max`.
fn u32_in(value: &str, min: u32, max: u32) -> Result<u32, String> {
    values::number_in(value, u64::from(min), u64::from(max))
        .map(|n| u32::try_from(n).unwrap_or(max))
}

/// The rules between keys: a command is given, several processes have distinct names, and
/// the last process number fits. Returns the command's line.
fn check_program(
    section: &Section,
    program: &Program,
    lines: &KeyLines,
) -> Result<usize, ConfigError> {
    let Some(command_line) = lines.command else {
        return Err(at(
            section.line,
            format!("[{}] needs a command", section.title),
        ));
    };
    if program.numprocs > 1 && !program.process_name.contains("%(process_num)") {
        return Err(at(
            lines.numprocs,
            format!(
                "numprocs = {} in [{}] needs %(process_num)d in process_name (now '{}'), so that each process has its own name",
                program.numprocs, section.title, program.process_name
            ),
        ));
    }
    if program
        .numprocs_start
        .checked_add(program.numprocs.saturating_sub(1))
        .is_none()
    {
        return Err(at(
            lines.numprocs_start,
            format!(
                "numprocs_start + numprocs - 1 is above {} in [{}]",
                u32::MAX,
                section.title
            ),
        ));
    }
    Ok(command_line)
}

/// Expands every process now, so that `processes()` cannot fail at run time; the process
/// names in process order.
fn expand_processes(
    section: &Section,
    program: &Program,
    command_line: usize,
    process_name_line: Option<usize>,
) -> Result<Vec<String>, ConfigError> {
    let mut process_names = Vec::new();
    for offset in 0..program.numprocs {
        let num = program.numprocs_start.saturating_add(offset);
        let name = program.process_name_for(num).map_err(|why| {
            at(
                process_name_line.unwrap_or(section.line),
                format!("bad process_name in [{}]: {why}", section.title),
            )
        })?;
        program.argv_for(num).map_err(|why| {
            at(
                command_line,
                format!("bad command in [{}]: {why}", section.title),
            )
        })?;
        process_names.push(name);
    }
    Ok(process_names)
}

/// `depends_on`: program names separated by commas or spaces; duplicates dropped.
fn depends_on(value: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in value.split(|c: char| c == ',' || c.is_whitespace()) {
        if name.is_empty() {
            continue;
        }
        if !is_program_name(name) {
            return Err("expected program names separated by commas or spaces".to_string());
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    if names.is_empty() {
        return Err("expected program names separated by commas or spaces".to_string());
    }
    Ok(names)
}

/// The checks across programs: depends_on names exist and form no cycle, and no two
/// processes share a name.
pub(crate) fn check_programs(built: &[BuiltProgram]) -> Result<(), ConfigError> {
    let index: HashMap<&str, usize> = built
        .iter()
        .enumerate()
        .map(|(i, b)| (b.program.name.as_str(), i))
        .collect();
    for b in built {
        if let Some(unknown) = b
            .program
            .depends_on
            .iter()
            .find(|d| !index.contains_key(d.as_str()))
        {
            return Err(at(
                b.depends_on_line,
                format!(
                    "depends_on names unknown program '{unknown}' in [program:{}]",
                    b.program.name
                ),
            ));
        }
    }
    if let Some((line, cycle)) = find_cycle(built, &index) {
        return Err(at(
            line,
            format!("depends_on cycle: {}", cycle.join(" -> ")),
        ));
    }
    let mut owners: HashMap<&str, &BuiltProgram> = HashMap::new();
    for b in built {
        for name in &b.process_names {
            if let Some(other) = owners.insert(name, b) {
                return Err(at(
                    b.program.line,
                    format!(
                        "process name '{name}' of [program:{}] is also a process name of [program:{}] (line {})",
                        b.program.name, other.program.name, other.program.line
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The first depends_on cycle in file order, as the line of the depends_on that closes it and
/// the names along it (`a -> b -> a`). Iterative, so a long chain cannot overflow the stack.
fn find_cycle(
    built: &[BuiltProgram],
    index: &HashMap<&str, usize>,
) -> Option<(usize, Vec<String>)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; built.len()];
    for start in 0..built.len() {
        if marks.get(start) != Some(&Mark::New) {
            continue;
        }
        // (program, next dependency to visit)
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        if let Some(m) = marks.get_mut(start) {
            *m = Mark::OnPath;
        }
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            let deps = built
                .get(node)
                .map(|b| b.program.depends_on.as_slice())
                .unwrap_or_default();
            let Some(dep) = deps.get(*next) else {
                if let Some(m) = marks.get_mut(node) {
                    *m = Mark::Done;
                }
                path.pop();
                continue;
            };
            *next = next.saturating_add(1);
            let Some(&target) = index.get(dep.as_str()) else {
                continue;
            };
            match marks.get(target) {
                Some(Mark::New) => {
                    if let Some(m) = marks.get_mut(target) {
                        *m = Mark::OnPath;
                    }
                    path.push((target, 0));
                }
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|(n, _)| *n == target).unwrap_or(0);
                    let mut names: Vec<String> = path
                        .get(from..)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|(n, _)| built.get(*n).map(|b| b.program.name.clone()))
                        .collect();
                    names.push(dep.clone());
                    let line = built.get(node).map_or(0, |b| b.depends_on_line);
                    return Some((line, names));
                }
                _ => {}
            }
        }
    }
    None
}

impl Program {
    /// A program running `command` with every other key at supervisor's default; used by
    /// the parser and by tests of the watchdog.
    pub fn new(name: &str, command: &str) -> Program {
        Program {
            line: 0,
            name: name.to_string(),
            command: command.to_string(),
            process_name: "%(program_name)s".to_string(),
            numprocs: 1,
            numprocs_start: 0,
            directory: None,
            umask: None,
            priority: 999,
            autostart: true,
            startsecs: std::time::Duration::from_secs(1),
            startretries: 3,
            autorestart: AutoRestart::Unexpected,
            exitcodes: vec![0],
            stopsignal: libc::SIGTERM,
            stopwaitsecs: std::time::Duration::from_secs(10),
            stopasgroup: false,
            killasgroup: false,
            user: None,
            environment: Vec::new(),
            redirect_stderr: false,
            depends_on: Vec::new(),
            ready: None,
            ready_timeout: std::time::Duration::from_secs(60),
            required_for_health: false,
            output_buffer_size: 64 << 10,
            reloadsignal: libc::SIGHUP,
            stdout_syslog_priority: 6,
            stderr_syslog_priority: 3,
        }
    }

    /// The processes of this program, numbered from `numprocs_start`: `process_name` and
    /// `command` expanded (`%(program_name)s`, `%(group_name)s`, `%(process_num)d`, `%%`),
    /// and the command split like a POSIX shell. Called by the watchdog at start; never fails
    /// for a program that came from [`super::parse`].
    pub fn processes(&self) -> Result<Vec<ProcessSpec>, String> {
        if self.numprocs > MAX_NUMPROCS {
            return Err(format!("numprocs is above {MAX_NUMPROCS}"));
        }
        let mut specs = Vec::new();
        for offset in 0..self.numprocs {
            let num = self
                .numprocs_start
                .checked_add(offset)
                .ok_or_else(|| format!("numprocs_start + numprocs - 1 is above {}", u32::MAX))?;
            let name = self
                .process_name_for(num)
                .map_err(|why| format!("process_name: {why}"))?;
            let argv = self
                .argv_for(num)
                .map_err(|why| format!("command: {why}"))?;
            specs.push(ProcessSpec {
                name,
                argv,
                process_num: num,
            });
        }
        Ok(specs)
    }

    /// Expands the per-process names in `text` for process `num`.
    fn expand_for(&self, text: &str, num: u32) -> Result<String, String> {
        expand(text, false, &mut |name| {
            match name {
            "program_name" | "group_name" => Ok(Lookup::Text(self.name.clone())),
            "process_num" => Ok(Lookup::Number(num)),
            _ => Err(format!(
                "unknown name '%({name})': known are %(program_name)s, %(group_name)s, %(process_num)d and %%"
            )),
        }
        })
    }

    /// The name of process `num`: non-empty, no spaces, no '/' or ':'.
    fn process_name_for(&self, num: u32) -> Result<String, String> {
        let name = self.expand_for(&self.process_name, num)?;
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == ':')
        {
            return Err(format!(
                "process name '{name}' must be non-empty, without spaces, '/' or ':'"
            ));
        }
        Ok(name)
    }

    /// The argv of process `num`: never empty.
    fn argv_for(&self, num: u32) -> Result<Vec<String>, String> {
        let argv = split_command(&self.expand_for(&self.command, num)?)?;
        if argv.is_empty() {
            return Err("the command is empty".to_string());
        }
        Ok(argv)
    }
}

/// Splits a command line as Python's `shlex.split` (POSIX mode) does, as supervisor does:
/// whitespace separates words; `'...'` is literal; in `"..."` a backslash escapes only `"` and
/// `\`; elsewhere a backslash escapes any character; `''` is an empty word.
pub(crate) fn split_command(line: &str) -> Result<Vec<String>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Between,
        Word,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut state = State::Between;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match state {
            State::Between | State::Word => match c {
                ' ' | '\t' | '\n' | '\r' => {
                    if state == State::Word {
                        words.push(std::mem::take(&mut word));
                        state = State::Between;
                    }
                }
                '\'' => state = State::Single,
                '"' => state = State::Double,
                '\\' => {
                    let escaped = chars.next().ok_or("no character after a final backslash")?;
                    word.push(escaped);
                    state = State::Word;
                }
                _ => {
                    word.push(c);
                    state = State::Word;
                }
            },
            State::Single => match c {
                '\'' => state = State::Word,
                _ => word.push(c),
            },
            State::Double => match c {
                '"' => state = State::Word,
                '\\' => {
                    let escaped = chars.next().ok_or("no closing quotation")?;
                    if escaped != '"' && escaped != '\\' {
                        word.push('\\');
                    }
                    word.push(escaped);
                }
                _ => word.push(c),
            },
        }
    }
    match state {
        State::Single | State::Double => Err("no closing quotation".to_string()),
        State::Word => {
            words.push(word);
            Ok(words)
        }
        State::Between => Ok(words),
    }
}

/// Parses supervisor's `environment`: `KEY="val",KEY2=val2`. Quotes are optional; inside
/// quotes commas are kept; quoted and unquoted pieces join (`a"b,c"` is `ab,c`); unquoted
/// whitespace around a value is dropped. A key twice is an error.
pub(crate) fn parse_environment(text: &str) -> Result<Vec<(String, String)>, String> {
    let expected = "expected KEY=value pairs separated by commas, like A=\"1\",B=2";
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',') {
            key.push(c);
        }
        let key = key.trim().to_string();
        if chars.next() != Some('=') {
            return Err(format!("{expected} ('{key}' has no '=')"));
        }
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid_key {
            return Err(format!(
                "{expected} ('{key}' is not a variable name: letters, digits, '_', '.', '-')"
            ));
        }
        let mut value = String::new();
        // Unquoted whitespace is kept only between non-space parts of the value.
        let mut pending_space = String::new();
        let mut started = false;
        loop {
            match chars.next() {
                None | Some(',') => break,
                Some(quote @ ('"' | '\'')) => {
                    if started {
                        value.push_str(&pending_space);
                    }
                    pending_space.clear();
                    started = true;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(format!("{expected} (no closing {quote} in {key})"))
                            }
                            Some(c) if c == quote => break,
                            Some(c) => value.push(c),
                        }
                    }
                }
                Some(c) if c.is_whitespace() => {
                    if started {
                        pending_space.push(c);
                    }
                }
                Some(c) => {
                    value.push_str(&pending_space);
                    pending_space.clear();
                    value.push(c);
                    started = true;
                }
            }
        }
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(format!("{expected} ('{key}' is set twice)"));
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::super::{parse, Config, ReadyCheck};
    use super::*;

    fn config(text: &str) -> Config {
        let env = |name: &str| match name {
            "HOME" => Some("/home/app".to_string()),
            "PCT" => Some("50%".to_string()),
            _ => None,
        };
        parse(text, Path::new("/srv/app/uwgate.ini"), &env).unwrap()
    }

    fn program(body: &str) -> Program {
        config(&format!("[program:web]\n{body}")).programs[0].clone()
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("uwgate.ini"), &|_| None)
            .unwrap_err()
            .to_string()
    }

    fn program_error(body: &str) -> String {
        error(&format!("[program:web]\n{body}"))
    }

    fn words(line: &str) -> Vec<String> {
        split_command(line).unwrap()
    }

    #[test]
    fn every_listed_key_is_read() {
        for key in KEYS {
            if let Err(e) = parse(
                &format!("[program:web]\n{key} = ???\n"),
                Path::new("uwgate.ini"),
                &|_| None,
            ) {
                assert!(!e.to_string().contains("unknown key"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn required_for_health_defaults_off_and_is_read() {
        assert!(!Program::new("x", "/bin/true").required_for_health);
        let c = super::super::parse(
            "[program:django]\ncommand = /bin/true\nrequired_for_health = true\n",
            std::path::Path::new("/etc/uwgate.ini"),
            &|_| None,
        )
        .unwrap();
        assert!(c.programs[0].required_for_health);
    }

    #[test]
    fn program_defaults_are_supervisors() {
        let p = program("command = /bin/app\n");
        assert_eq!(p, {
            let mut want = Program::new("web", "/bin/app");
            want.line = 1;
            want
        });
        assert_eq!(p.name, "web");
        assert_eq!(p.process_name, "%(program_name)s");
        assert_eq!(p.numprocs, 1);
        assert_eq!(p.numprocs_start, 0);
        assert_eq!(p.directory, None);
        assert_eq!(p.umask, None);
        assert_eq!(p.priority, 999);
        assert!(p.autostart);
        assert_eq!(p.startsecs, Duration::from_secs(1));
        assert_eq!(p.startretries, 3);
        assert_eq!(p.autorestart, AutoRestart::Unexpected);
        assert_eq!(p.exitcodes, vec![0]);
        assert_eq!(p.stopsignal, libc::SIGTERM);
        assert_eq!(p.stopwaitsecs, Duration::from_secs(10));
        assert!(!p.stopasgroup);
        assert!(!p.killasgroup);
        assert_eq!(p.user, None);
        assert!(p.environment.is_empty());
        assert!(!p.redirect_stderr);
        assert!(p.depends_on.is_empty());
        assert_eq!(p.ready, None);
        assert_eq!(p.ready_timeout, Duration::from_secs(60));
    }

    #[test]
    fn every_key_is_read() {
        let c = config(
            "[program:db]\ncommand = /usr/sbin/mysqld\n\
             [program:web]\ncommand = /bin/app\nprocess_name = web_%(process_num)02d\nnumprocs = 2\n\
             numprocs_start = 1\ndirectory = %(here)s\numask = 022\npriority = -5\nautostart = false\n\
             startsecs = 10\nstartretries = 0\nautorestart = true\nexitcodes = 0,2\nstopsignal = QUIT\n\
             stopwaitsecs = 30\nstopasgroup = true\nuser = nginx\nenvironment = A=1\n\
             redirect_stderr = true\ndepends_on = db\nready = tcp:127.0.0.1:8000\nready_timeout = 2m\n",
        );
        let p = &c.programs[1];
        assert_eq!(p.line, 3);
        assert_eq!(p.process_name, "web_%(process_num)02d");
        assert_eq!(p.numprocs, 2);
        assert_eq!(p.numprocs_start, 1);
        assert_eq!(p.directory, Some(PathBuf::from("/srv/app")));
        assert_eq!(p.umask, Some(0o22));
        assert_eq!(p.priority, -5);
        assert!(!p.autostart);
        assert_eq!(p.startsecs, Duration::from_secs(10));
        assert_eq!(p.startretries, 0);
        assert_eq!(p.autorestart, AutoRestart::Always);
        assert_eq!(p.exitcodes, vec![0, 2]);
        assert_eq!(p.stopsignal, libc::SIGQUIT);
        assert_eq!(p.stopwaitsecs, Duration::from_secs(30));
        assert!(p.stopasgroup);
        assert!(p.killasgroup, "forced by stopasgroup");
        assert_eq!(p.user.as_deref(), Some("nginx"));
        assert_eq!(p.environment, vec![("A".to_string(), "1".to_string())]);
        assert!(p.redirect_stderr);
        assert_eq!(p.depends_on, vec!["db"]);
        assert_eq!(
            p.ready,
            Some(ReadyCheck::Tcp("127.0.0.1:8000".parse().unwrap()))
        );
        assert_eq!(p.ready_timeout, Duration::from_secs(120));
        let names: Vec<String> = p.processes().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["web_01", "web_02"]);
    }

    #[test]
    fn control_keys_have_their_defaults_and_are_read() {
        let p = program("command = /bin/app\n");
        assert_eq!(p.output_buffer_size, 64 << 10);
        assert_eq!(p.reloadsignal, libc::SIGHUP);
        assert_eq!(p.stdout_syslog_priority, 6, "info");
        assert_eq!(p.stderr_syslog_priority, 3, "err");
        let p = program(
            "command = /bin/app\noutput_buffer_size = 1m\nreloadsignal = USR1\n\
             stdout_syslog_priority = notice\nstderr_syslog_priority = info\n",
        );
        assert_eq!(p.output_buffer_size, 1 << 20);
        assert_eq!(p.reloadsignal, libc::SIGUSR1);
        assert_eq!(p.stdout_syslog_priority, 5);
        assert_eq!(p.stderr_syslog_priority, 6);
        assert_eq!(
            program("command = x\noutput_buffer_size = 0\n").output_buffer_size,
            0
        );
        assert!(program_error("command = x\noutput_buffer_size = 17m\n").contains("from 0 to 16m"));
        assert_eq!(
            program_error("command = x\nstderr_syslog_priority = loud\n"),
            "uwgate.ini:3: invalid value 'loud' for 'stderr_syslog_priority' in [program:web]: expected emerg, alert, crit, err, warning, notice, info or debug"
        );
    }

    #[test]
    fn killasgroup_alone_stays_as_given() {
        assert!(program("command = x\nkillasgroup = on\n").killasgroup);
        assert!(!program("command = x\nstopasgroup = off\n").killasgroup);
    }

    #[test]
    fn processes_expand_names_and_split_commands() {
        let p = program(
            "command = /bin/uwsgi --ini %(here)s/uwgate.ini --name %(program_name)s-%(process_num)d\n\
             process_name = %(group_name)s.%(process_num)03d\nnumprocs = 3\nnumprocs_start = 8\n",
        );
        let specs = p.processes().unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].name, "web.008");
        assert_eq!(specs[0].process_num, 8);
        assert_eq!(
            specs[0].argv,
            vec![
                "/bin/uwsgi",
                "--ini",
                "/srv/app/uwgate.ini",
                "--name",
                "web-8"
            ]
        );
        assert_eq!(specs[2].name, "web.010");
        assert_eq!(specs[2].argv[4], "web-10");
    }

    #[test]
    fn percent_survives_both_expansion_passes() {
        let p = program("command = /bin/date +%%s %(ENV_PCT)s\n");
        assert_eq!(p.command, "/bin/date +%%s 50%%");
        assert_eq!(
            p.processes().unwrap()[0].argv,
            vec!["/bin/date", "+%s", "50%"]
        );
    }

    #[test]
    fn program_name_expands_in_other_keys() {
        let p = program("command = x\ndirectory = /srv/%(program_name)s\nenvironment = HOME=\"%(ENV_HOME)s\",APP=%(group_name)s\n");
        assert_eq!(p.directory, Some(PathBuf::from("/srv/web")));
        assert_eq!(
            p.environment,
            vec![
                ("HOME".to_string(), "/home/app".to_string()),
                ("APP".to_string(), "web".to_string())
            ]
        );
    }

    #[test]
    fn process_num_outside_command_and_process_name_is_an_error() {
        assert_eq!(
            program_error("command = x\ndirectory = /srv/%(process_num)d\n"),
            "uwgate.ini:3: cannot expand 'directory' in [program:web]: %(process_num)d is expanded only in command and process_name"
        );
    }

    #[test]
    fn unknown_expansion_is_an_error() {
        assert!(program_error("command = x %(host_node_name)s\n").starts_with(
            "uwgate.ini:2: cannot expand 'command' in [program:web]: unknown name '%(host_node_name)'"
        ));
        assert!(error("[server]\nlisten = %(program_name)s\n").starts_with(
            "uwgate.ini:2: cannot expand 'listen' in [server]: unknown name '%(program_name)'"
        ));
    }

    #[test]
    fn lone_percent_in_command_is_an_error() {
        assert_eq!(
            program_error("command = date +%s\n"),
            "uwgate.ini:2: cannot expand 'command' in [program:web]: a lone '%' must be written '%%'"
        );
    }

    #[test]
    fn missing_command_is_an_error_at_the_header() {
        assert_eq!(
            error("[server]\n[program:web]\nnumprocs = 1\n"),
            "uwgate.ini:2: [program:web] needs a command"
        );
        assert_eq!(
            program_error("command =\n"),
            "uwgate.ini:2: invalid value '' for 'command' in [program:web]: expected a command line"
        );
    }

    #[test]
    fn numprocs_without_process_num_is_an_error() {
        assert_eq!(
            program_error("command = x\nnumprocs = 2\n"),
            "uwgate.ini:3: numprocs = 2 in [program:web] needs %(process_num)d in process_name (now '%(program_name)s'), so that each process has its own name"
        );
        assert!(program_error("command = x\nnumprocs = 0\n").contains("from 1 to 1024"));
        assert!(program_error("command = x\nnumprocs = 1025\n").contains("from 1 to 1024"));
    }

    #[test]
    fn numprocs_start_overflow_is_an_error() {
        assert_eq!(
            program_error("command = x\nprocess_name = p%(process_num)d\nnumprocs = 2\nnumprocs_start = 4294967295\n"),
            "uwgate.ini:5: numprocs_start + numprocs - 1 is above 4294967295 in [program:web]"
        );
        assert!(program("command = x\nnumprocs_start = 4294967295\n")
            .processes()
            .is_ok());
    }

    #[test]
    fn bad_process_name_is_an_error_at_its_line() {
        assert_eq!(
            program_error("command = x\nprocess_name = a b\n"),
            "uwgate.ini:3: bad process_name in [program:web]: process name 'a b' must be non-empty, without spaces, '/' or ':'"
        );
        assert!(program_error("command = x\nprocess_name = %(here)d\n")
            .starts_with("uwgate.ini:3: cannot expand 'process_name'"));
    }

    #[test]
    fn unsplittable_command_is_an_error_at_its_line() {
        assert_eq!(
            program_error("numprocs = 1\ncommand = sh -c 'echo\n"),
            "uwgate.ini:3: bad command in [program:web]: no closing quotation"
        );
        assert_eq!(
            program_error("command = ''x' \n")
                .split(": ")
                .last()
                .unwrap(),
            "no closing quotation"
        );
    }

    #[test]
    fn empty_user_is_an_error() {
        assert_eq!(
            program_error("command = x\nuser =\n"),
            "uwgate.ini:3: invalid value '' for 'user' in [program:web]: expected a user or group name"
        );
    }

    #[test]
    fn bad_program_values_name_key_and_form() {
        assert!(program_error("command = x\nautorestart = sometimes\n")
            .contains("'autorestart' in [program:web]: expected true, false or unexpected"));
        assert!(program_error("command = x\nstopsignal = STOP\n").contains("expected TERM, HUP"));
        assert!(program_error("command = x\numask = 999\n").contains("expected an octal umask"));
        assert!(program_error("command = x\nexitcodes = ok\n").contains("'exitcodes'"));
        assert!(program_error("command = x\ndirectory = relative\n").contains("'directory'"));
        assert!(program_error("command = x\npriority = high\n").contains("'priority'"));
        assert!(program_error("command = x\nstartsecs = 1.5\n").contains("'startsecs'"));
        assert!(program_error("command = x\nready = localhost\n").contains("'ready'"));
        assert!(program_error("command = x\nready_timeout = 0\n").contains("above 0"));
        assert!(program_error("command = x\ndepends_on = ,\n").contains("'depends_on'"));
        assert!(program_error("command = x\nenvironment = A\n").contains("'environment'"));
    }

    #[test]
    fn unknown_and_duplicate_program_keys_are_errors() {
        assert_eq!(
            program_error("command = x\nautostrat = true\n"),
            "uwgate.ini:3: unknown key 'autostrat' in [program:web]"
        );
        assert_eq!(
            program_error("command = x\ncommand = y\n"),
            "uwgate.ini:3: 'command' given twice in [program:web] (lines 2 and 3)"
        );
    }

    #[test]
    fn ignored_supervisor_keys_warn_once_each() {
        let c = config(
            "[program:web]\ncommand = x\nstdout_logfile = /var/log/web.log\nstderr_logfile_maxbytes = 1MB\nserverurl = AUTO\n",
        );
        assert_eq!(
            c.warnings,
            vec![
                "/srv/app/uwgate.ini:3: 'stdout_logfile' ignored in [program:web]: output goes to syslog",
                "/srv/app/uwgate.ini:4: 'stderr_logfile_maxbytes' ignored in [program:web]: output goes to syslog",
                "/srv/app/uwgate.ini:5: 'serverurl' ignored in [program:web]: uwgate ctl finds the socket through control_socket (or -s)",
            ]
        );
        for key in IGNORED {
            let c = config(&format!(
                "[program:web]\ncommand = x\n{key} = %(not_expanded)s\n"
            ));
            assert_eq!(c.warnings.len(), 1, "{key}");
        }
    }

    #[test]
    fn depends_on_takes_commas_and_spaces() {
        let c = config("[program:a]\ncommand = x\n[program:b]\ncommand = x\n[program:c]\ncommand = x\ndepends_on = a, b a\n");
        assert_eq!(c.programs[2].depends_on, vec!["a", "b"]);
    }

    #[test]
    fn depends_on_unknown_program_is_an_error() {
        assert_eq!(
            error("[program:web]\ncommand = x\ndepends_on = db\n"),
            "uwgate.ini:3: depends_on names unknown program 'db' in [program:web]"
        );
    }

    #[test]
    fn depends_on_cycle_is_an_error() {
        assert_eq!(
            error("[program:a]\ncommand = x\ndepends_on = b\n[program:b]\ncommand = x\ndepends_on = c\n[program:c]\ncommand = x\ndepends_on = a\n"),
            "uwgate.ini:9: depends_on cycle: a -> b -> c -> a"
        );
        assert_eq!(
            error("[program:a]\ncommand = x\ndepends_on = a\n"),
            "uwgate.ini:3: depends_on cycle: a -> a"
        );
    }

    #[test]
    fn depends_on_diamond_is_not_a_cycle() {
        let c = config("[program:d]\ncommand = x\ndepends_on = b c\n[program:b]\ncommand = x\ndepends_on = a\n[program:c]\ncommand = x\ndepends_on = a\n[program:a]\ncommand = x\n");
        assert_eq!(c.programs.len(), 4);
    }

    #[test]
    fn long_depends_on_chain_does_not_overflow_the_stack() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!(
                "[program:p{i}]\ncommand = x\ndepends_on = p{}\n",
                i + 1
            ));
        }
        text.push_str("[program:p20000]\ncommand = x\n");
        assert_eq!(config(&text).programs.len(), 20_001);
    }

    #[test]
    fn duplicate_process_names_are_an_error() {
        assert_eq!(
            error("[program:a]\ncommand = x\nprocess_name = web_%(process_num)d\nnumprocs = 2\n\n[program:b]\ncommand = x\nprocess_name = web_1\n"),
            "uwgate.ini:6: process name 'web_1' of [program:b] is also a process name of [program:a] (line 1)"
        );
    }

    #[test]
    fn duplicate_program_sections_are_an_error() {
        assert_eq!(
            error("[program:a]\ncommand = x\n[program:a]\ncommand = y\n"),
            "uwgate.ini:3: [program:a] given twice (lines 1 and 3)"
        );
    }

    #[test]
    fn processes_of_a_hand_made_program() {
        let mut p = Program::new("w", "run \"%(process_num)d\"");
        p.numprocs = 2;
        p.process_name = "w%(process_num)d".into();
        let specs = p.processes().unwrap();
        assert_eq!(
            specs[1],
            ProcessSpec {
                name: "w1".into(),
                argv: vec!["run".into(), "1".into()],
                process_num: 1
            }
        );
        p.command = "%(here)s".into();
        assert!(p
            .processes()
            .unwrap_err()
            .starts_with("command: unknown name '%(here)'"));
        p.numprocs = MAX_NUMPROCS + 1;
        assert!(p.processes().is_err());
        let mut p = Program::new("w", "x");
        p.numprocs_start = u32::MAX;
        p.numprocs = 2;
        assert!(p.processes().is_err());
        assert!(Program::new("w", "   ")
            .processes()
            .unwrap_err()
            .contains("empty"));
    }

    #[test]
    fn command_splitting_follows_posix_shlex() {
        assert_eq!(words("a b\tc"), vec!["a", "b", "c"]);
        assert_eq!(words("  a   b  "), vec!["a", "b"]);
        assert_eq!(words("'a b' \"c d\""), vec!["a b", "c d"]);
        assert_eq!(words("a'b c'd"), vec!["ab cd"]);
        assert_eq!(words("'' \"\" x"), vec!["", "", "x"]);
        assert_eq!(words(r"a\ b \'c\' \\"), vec!["a b", "'c'", "\\"]);
        assert_eq!(
            words(r#""a\"b" "c\\d" "e\nf" "$HOME""#),
            vec!["a\"b", "c\\d", "e\\nf", "$HOME"]
        );
        assert_eq!(words(r"'no \escape here'"), vec![r"no \escape here"]);
        assert_eq!(
            words(r#"sh -c "echo 'hi there'; exit 1""#),
            vec!["sh", "-c", "echo 'hi there'; exit 1"]
        );
        assert_eq!(words("#not-a-comment"), vec!["#not-a-comment"]);
        assert!(words("").is_empty());
    }

    #[test]
    fn command_splitting_errors() {
        assert_eq!(split_command("'a"), Err("no closing quotation".into()));
        assert_eq!(split_command("\"a"), Err("no closing quotation".into()));
        assert_eq!(split_command("\"a\\"), Err("no closing quotation".into()));
        assert_eq!(
            split_command("a\\"),
            Err("no character after a final backslash".into())
        );
    }

    #[test]
    fn environment_follows_supervisor_syntax() {
        let pairs = |text: &str| parse_environment(text).unwrap();
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            pairs("DJANGO_SETTINGS_MODULE=\"blog.settings\",LANG=\"en_US.UTF-8\""),
            vec![
                p("DJANGO_SETTINGS_MODULE", "blog.settings"),
                p("LANG", "en_US.UTF-8")
            ]
        );
        assert_eq!(pairs("A=1,B=two"), vec![p("A", "1"), p("B", "two")]);
        assert_eq!(
            pairs(" A = 1 , B = 'x, y' ,"),
            vec![p("A", "1"), p("B", "x, y")]
        );
        assert_eq!(pairs("A=\"a,b\",C=c"), vec![p("A", "a,b"), p("C", "c")]);
        assert_eq!(pairs("A=x\"y, z\"w"), vec![p("A", "xy, zw")]);
        assert_eq!(pairs("A=hello world"), vec![p("A", "hello world")]);
        assert_eq!(pairs("A=\"  padded  \""), vec![p("A", "  padded  ")]);
        assert_eq!(pairs("A=,B=\"\""), vec![p("A", ""), p("B", "")]);
        assert_eq!(
            pairs("PATH=/usr/bin:/bin,X=a=b"),
            vec![p("PATH", "/usr/bin:/bin"), p("X", "a=b")]
        );
        assert_eq!(pairs("Q='say \"hi\"'"), vec![p("Q", "say \"hi\"")]);
        assert_eq!(pairs(""), vec![]);
    }

    #[test]
    fn environment_errors() {
        let message = |text: &str| parse_environment(text).unwrap_err();
        assert!(message("A").contains("'A' has no '='"));
        assert!(message("A=1,B").contains("'B' has no '='"));
        assert!(message("=1").contains("'' is not a variable name"));
        assert!(message("A B=1").contains("'A B' is not a variable name"));
        assert!(message("A=\"open").contains("no closing \" in A"));
        assert!(message("A=1,A=2").contains("'A' is set twice"));
    }
}

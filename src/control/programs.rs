//! `reread` and `update` as pure functions over two lists of `[program:x]` sections: the
//! running set and the one in the file. supervisorctl's words: a program in the file only is
//! *available* (added), in both with other settings *changed*, in the running set only
//! *disappeared* (removed).
//!
//! Owns the diff and the set a partial `update NAME…` hands the watchdog. Never reads a file
//! or touches a process.

use crate::config::Program;

/// What differs between the running programs and the file, each list sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Diff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The same settings, wherever the section sits in the file.
fn same(a: &Program, b: &Program) -> bool {
    Program {
        line: b.line,
        ..a.clone()
    } == *b
}

/// The diff from `running` to `file`.
pub fn diff(running: &[&Program], file: &[Program]) -> Diff {
    let mut d = Diff::default();
    for f in file {
        match running.iter().find(|r| r.name == f.name) {
            None => d.added.push(f.name.clone()),
            Some(r) if !same(r, f) => d.changed.push(f.name.clone()),
            Some(_) => {}
        }
    }
    for r in running {
        if !file.iter().any(|f| f.name == r.name) {
            d.removed.push(r.name.clone());
        }
    }
    crate::sort::sort(&mut d.added);
    crate::sort::sort(&mut d.changed);
    crate::sort::sort(&mut d.removed);
    d
}

/// The program set after updating only the programs `selected` says (all when it says yes
/// to every name): selected ones take the file's version (or go), the others stay as they run.
pub fn updated_set(
    running: &[&Program],
    file: &[Program],
    selected: &dyn Fn(&str) -> bool,
) -> Vec<Program> {
    let mut out = Vec::new();
    for r in running {
        if !selected(&r.name) {
            out.push((*r).clone());
        } else if let Some(f) = file.iter().find(|f| f.name == r.name) {
            out.push(f.clone());
        }
    }
    for f in file {
        if selected(&f.name) && !running.iter().any(|r| r.name == f.name) {
            out.push(f.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(name: &str, command: &str, line: usize) -> Program {
        Program {
            line,
            ..Program::new(name, command)
        }
    }

    #[test]
    fn added_changed_and_removed_ignore_the_line() {
        let a = prog("a", "/bin/a", 1);
        let b = prog("b", "/bin/b", 2);
        let c = prog("c", "/bin/c", 3);
        let file = vec![
            prog("a", "/bin/a", 10),
            prog("b", "/bin/b2", 11),
            prog("d", "/bin/d", 12),
        ];
        let d = diff(&[&a, &b, &c], &file);
        assert_eq!(d.added, vec!["d"]);
        assert_eq!(d.changed, vec!["b"]);
        assert_eq!(d.removed, vec!["c"]);
        assert!(diff(&[&a], &[prog("a", "/bin/a", 7)]).is_empty());
    }

    #[test]
    fn a_partial_update_touches_only_the_named_programs() {
        let a = prog("a", "/bin/a", 1);
        let b = prog("b", "/bin/b", 2);
        let file = vec![prog("a", "/bin/a2", 1), prog("c", "/bin/c", 3)];
        let only_a = updated_set(&[&a, &b], &file, &|n| n == "a");
        assert_eq!(
            only_a
                .iter()
                .map(|p| p.command.as_str())
                .collect::<Vec<_>>(),
            vec!["/bin/a2", "/bin/b"]
        );
        let all = updated_set(&[&a, &b], &file, &|_| true);
        assert_eq!(
            all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["a", "c"]
        );
    }
}

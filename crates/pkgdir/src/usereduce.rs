//! USE-conditional evaluation of dependency-like strings, as Portage does for
//! the `Packages` index.
//!
//! `binarytree._eval_use_flags` runs every `*DEPEND`, `LICENSE`,
//! `PROPERTIES` and `RESTRICT` value of a package through
//! `portage.dep.use_reduce(value, uselist=USE, token_class=Atom or None)` and
//! writes the result back with `paren_enclose`. That is not a plain
//! "drop inactive conditionals": `use_reduce` also removes redundant
//! parentheses and simplifies any-of groups (`|| ( A )` → `A`,
//! `|| ( A || ( B C ) )` → `|| ( A B C )`, `( ( A ) )` → `A`, and a few
//! stranger rewrites), and for atoms it evaluates conditional USE
//! dependencies (`foo[bar?]` → `foo[bar]` or `foo`), rebuilding the atom
//! string without its `::repo` part when it does so. [`evaluate`]
//! reproduces all of that, including which strings are refused, for
//! Portage 3.0.83's pure-Python parser called with `eapi=None`.
//!
//! Atoms are validated with [`atom::Dep`], plus the three forms Portage's
//! `Atom(eapi=None)` accepts and the atom crate refuses on purpose (`~` with
//! a revision, a build id after the version, a repository name ending in a
//! version), minus the one it accepts and Portage refuses (one flag with
//! conflicting `(+)`/`(-)` defaults).

use std::collections::HashSet;
use std::fmt;

use atom::{Dep, ErrorKind, Operator, UseDepKind};

use crate::pystr::py_split;

/// Why a dependency string was refused (Portage's `InvalidDependString`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepStringError {
    message: String,
}

impl DepStringError {
    fn new(message: impl Into<String>) -> Self {
        DepStringError {
            message: message.into(),
        }
    }
}

impl fmt::Display for DepStringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DepStringError {}

/// What the tokens of a string are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Package atoms (`*DEPEND`): validated, conditional USE deps evaluated.
    Atoms,
    /// Plain words (`LICENSE`, `PROPERTIES`, `RESTRICT`).
    Words,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Token(String),
    Group(Vec<Node>),
}

impl Node {
    fn is(&self, s: &str) -> bool {
        matches!(self, Node::Token(t) if t == s)
    }
}

/// Evaluates `depstr` against the enabled flags `use_flags` and returns the
/// string Portage stores in the index (`paren_enclose(use_reduce(...))`).
pub fn evaluate(
    depstr: &str,
    use_flags: &HashSet<&str>,
    kind: TokenKind,
) -> Result<String, DepStringError> {
    let tree = reduce(depstr, use_flags, kind)?;
    let mut out = String::new();
    paren_enclose(&tree, &mut out);
    Ok(out)
}

fn paren_enclose(nodes: &[Node], out: &mut String) {
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match n {
            Node::Token(t) => out.push_str(t),
            Node::Group(g) => {
                out.push_str("( ");
                paren_enclose(g, out);
                out.push_str(" )");
            }
        }
    }
}

fn is_valid_flag(flag: &str) -> bool {
    let b = flag.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'_' | b'@' | b'-'))
}

/// Whether a `flag?` / `!flag?` conditional is active.
fn is_active(conditional: &str, use_flags: &HashSet<&str>) -> Result<bool, DepStringError> {
    // The caller guarantees the trailing '?'.
    let body = &conditional[..conditional.len() - 1];
    let (flag, negated) = match body.strip_prefix('!') {
        Some(f) => (f, true),
        None => (body, false),
    };
    if !is_valid_flag(flag) {
        return Err(DepStringError::new(format!(
            "invalid use flag '{flag}' in conditional '{conditional}'"
        )));
    }
    Ok(use_flags.contains(flag) != negated)
}

fn ends_in_any_of(stack: &[Vec<Node>], k: isize) -> bool {
    k >= 0 && stack[k as usize].last().is_some_and(|n| n.is("||"))
}

/// The level of the innermost `||` still in effect for level `k`, or -1.
fn last_any_of_level(stack: &[Vec<Node>], mut k: isize) -> isize {
    while k >= 0 {
        if let Some(Node::Token(t)) = stack[k as usize].last() {
            if t == "||" {
                return k;
            }
            if !t.ends_with('?') {
                return -1;
            }
        }
        k -= 1;
    }
    -1
}

/// Adds the finished group `l` to `stack[level]`, dropping brackets that
/// carry no meaning (Portage's `special_append`).
fn special_append(stack: &mut [Vec<Node>], level: usize, mut l: Vec<Node>, is_single: bool) {
    if !is_single {
        stack[level].push(Node::Group(l));
        return;
    }
    if l[0].is("||") && ends_in_any_of(stack, level as isize - 1) {
        // l = ["||", [..]]: the any-of merges into the enclosing one.
        match l.swap_remove(1) {
            Node::Group(g) => stack[level].extend(g),
            t => stack[level].push(t),
        }
    } else if l.len() == 1 && matches!(l[0], Node::Group(_)) {
        let Some(Node::Group(inner)) = l.pop() else {
            unreachable!("checked above")
        };
        if last_any_of_level(stack, level as isize - 1) == -1 {
            stack[level].extend(inner);
        } else {
            stack[level].push(Node::Group(inner));
        }
    } else {
        stack[level].extend(l);
    }
}

fn reduce(
    depstr: &str,
    use_flags: &HashSet<&str>,
    kind: TokenKind,
) -> Result<Vec<Node>, DepStringError> {
    let tokens: Vec<&str> = py_split(depstr).collect();
    let mut stack: Vec<Vec<Node>> = vec![Vec::new()];
    let mut level = 0usize;
    let mut need_bracket = false;
    let err = |msg: String| Err(DepStringError::new(msg));

    for (pos, &token) in tokens.iter().enumerate() {
        let n = pos + 1;
        match token {
            "(" => {
                if tokens.get(pos + 1) == Some(&")") {
                    return err(format!("expected: dependency string, got: ')', token {n}"));
                }
                need_bracket = false;
                stack.push(Vec::new());
                level += 1;
            }
            ")" => {
                if need_bracket {
                    return err(format!("expected: '(', got: ')', token {n}"));
                }
                if level == 0 {
                    return err(format!("no matching '(' for ')', token {n}"));
                }
                level -= 1;
                let mut l = stack.pop().expect("one list per open level");
                let is_single = l.len() == 1 || (l.len() == 2 && l[0].is("||"));
                let mut ignore = false;
                if let Some(Node::Token(last)) = stack[level].last() {
                    if last == "||" && l.is_empty() {
                        // `|| ( )` left empty by conditionals: Portage (with
                        // eapi=None) substitutes an atom that never matches.
                        l.push(Node::Token("__const__/empty-any-of".to_owned()));
                        stack[level].pop();
                    } else if last.ends_with('?') {
                        if !is_active(last, use_flags)? {
                            ignore = true;
                        }
                        stack[level].pop();
                    }
                }
                if !l.is_empty() && !ignore {
                    let here = ends_in_any_of(&stack, level as isize);
                    let above = ends_in_any_of(&stack, level as isize - 1);
                    if !above && !here {
                        // ( ( ... ) ) -> ( ... )
                        stack[level].extend(l);
                    } else if stack[level].is_empty() {
                        special_append(&mut stack, level, l, is_single);
                    } else if is_single && here {
                        // || ( A ) -> A, || ( || ( ... ) ) -> || ( ... )
                        stack[level].pop();
                        special_append(&mut stack, level, l, is_single);
                    } else if here && above {
                        // || ( A || ( B C ) ) -> || ( A B C )
                        stack[level].pop();
                        stack[level].extend(l);
                    } else {
                        special_append(&mut stack, level, l, is_single);
                    }
                }
            }
            "||" => {
                if need_bracket {
                    return err(format!("expected: '(', got: '||', token {n}"));
                }
                need_bracket = true;
                stack[level].push(Node::Token(token.to_owned()));
            }
            "->" => {
                return err(format!(
                    "SRC_URI arrow are only allowed in SRC_URI: token {n}"
                ));
            }
            _ => {
                if need_bracket {
                    return err(format!("expected: '(', got: '{token}', token {n}"));
                }
                if token.ends_with('?') {
                    need_bracket = true;
                    stack[level].push(Node::Token(token.to_owned()));
                } else if kind == TokenKind::Atoms {
                    let evaluated = evaluate_atom(token, use_flags).map_err(|e| {
                        DepStringError::new(format!("Invalid atom ({e}), token {n}"))
                    })?;
                    stack[level].push(Node::Token(evaluated));
                } else {
                    stack[level].push(Node::Token(token.to_owned()));
                }
            }
        }
    }
    if level != 0 {
        return err("Missing ')' at end of string".to_owned());
    }
    if need_bracket {
        return err("Missing '(' at end of string".to_owned());
    }
    Ok(stack.swap_remove(0))
}

/// Parses `token` as Portage's `Atom(token)` (eapi=None) would accept it.
fn parse_portage_atom(token: &str) -> Result<Dep, String> {
    let dep = match Dep::parse(token) {
        Ok(d) => d,
        Err(first) => relaxed_parse(token).ok_or_else(|| first.to_string())?,
    };
    // Portage refuses one flag with different default specifications.
    let uses = dep.use_deps();
    for (i, a) in uses.iter().enumerate() {
        if uses[..i]
            .iter()
            .any(|b| b.flag() == a.flag() && b.default() != a.default())
        {
            return Err(format!("Invalid use dep: '{token}'"));
        }
    }
    Ok(dep)
}

/// The forms Portage accepts and [`Dep::parse`] refuses, rewritten into an
/// equivalent form the atom crate accepts (only for validation and to learn
/// the slot and USE dependencies; the output keeps the original spelling).
fn relaxed_parse(token: &str) -> Option<Dep> {
    let blockers = token.len() - token.trim_start_matches('!').len();
    let (bang, rest) = token.split_at(blockers);
    // The CPV part ends at the slot, repository or USE part.
    let cpv_end = rest.find([':', '[']).unwrap_or(rest.len());
    let (mut cpv, tail) = (rest[..cpv_end].to_owned(), &rest[cpv_end..]);
    let has_op = cpv.starts_with(['<', '>', '=', '~']);
    // A build id after the version: `=cat/pkg-1-2`.
    if has_op {
        if let Some((head, id)) = cpv.rsplit_once('-') {
            let valid_id = id == "0"
                || (!id.is_empty()
                    && !id.starts_with('0')
                    && id.bytes().all(|b| b.is_ascii_digit()));
            let head_ok = match Dep::parse(head) {
                Ok(_) => true,
                Err(e) => e.kind() == ErrorKind::ApproxWithRevision,
            };
            if valid_id && head_ok {
                cpv = head.to_owned();
            }
        }
    }
    // A repository name ending in a version: `::repo-1`.
    let mut tail = tail.to_owned();
    if let Some(at) = tail.find("::") {
        let start = at + 2;
        let end = tail[start..].find('[').map_or(tail.len(), |i| start + i);
        let repo = &tail[start..end];
        if !repo.is_empty()
            && repo
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !repo.starts_with('-')
        {
            tail.replace_range(start..end, "r");
        }
    }
    let candidate = format!("{bang}{cpv}{tail}");
    match Dep::parse(&candidate) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == ErrorKind::ApproxWithRevision => {
            let eq = candidate.replacen('~', "=", 1);
            let d = Dep::parse(&eq).ok()?;
            // `~` never takes a `*`.
            (d.operator() != Some(Operator::EqualGlob)).then_some(d)
        }
        Err(_) => None,
    }
}

/// Portage's `Atom.evaluate_conditionals(use)` as a string.
fn evaluate_atom(token: &str, use_flags: &HashSet<&str>) -> Result<String, String> {
    let dep = parse_portage_atom(token)?;
    if !dep.use_deps().iter().any(|u| u.kind().is_conditional()) {
        return Ok(token.to_owned());
    }
    // remove_slot(): cut at the first ':' (slot or repository), else at '['.
    let cut = token
        .find(':')
        .or_else(|| token.find('['))
        .unwrap_or(token.len());
    let mut out = token[..cut].to_owned();
    if dep.slot().is_some() || dep.slot_operator().is_some() {
        out.push(':');
        if let Some(s) = dep.slot() {
            out.push_str(s);
        }
        if let Some(s) = dep.subslot() {
            out.push('/');
            out.push_str(s);
        }
        if let Some(op) = dep.slot_operator() {
            out.push_str(op.as_str());
        }
    }
    let mut flags: Vec<String> = Vec::new();
    for u in dep.use_deps() {
        let flag = u.flag();
        let default = u.default().map_or("", |d| d.as_str());
        let on = use_flags.contains(flag);
        let (enabled, disabled) = (format!("{flag}{default}"), format!("-{flag}{default}"));
        match u.kind() {
            UseDepKind::Enabled => flags.push(enabled),
            UseDepKind::Disabled => flags.push(disabled),
            UseDepKind::EnabledIf => {
                if on {
                    flags.push(enabled);
                }
            }
            UseDepKind::DisabledIf => {
                if !on {
                    flags.push(disabled);
                }
            }
            UseDepKind::Equal => flags.push(if on { enabled } else { disabled }),
            UseDepKind::NotEqual => flags.push(if on { disabled } else { enabled }),
        }
    }
    if !flags.is_empty() {
        out.push('[');
        out.push_str(&flags.join(","));
        out.push(']');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str, on: &[&str], kind: TokenKind) -> Result<String, DepStringError> {
        evaluate(s, &on.iter().copied().collect(), kind)
    }

    fn atoms(s: &str, on: &[&str]) -> String {
        ev(s, on, TokenKind::Atoms).unwrap_or_else(|e| format!("ERR {e}"))
    }

    // Expected values observed with Portage 3.0.83 (use_reduce + paren_enclose).
    #[test]
    fn conditional_use_deps() {
        assert_eq!(
            atoms("dev-libs/foo:1::gentoo[bar?]", &["bar"]),
            "dev-libs/foo:1[bar]"
        );
        assert_eq!(
            atoms("dev-libs/foo::gentoo[bar?,baz]", &[]),
            "dev-libs/foo[baz]"
        );
        assert_eq!(
            atoms("dev-libs/foo:1/2=[bar?,!baz?,q=,!r=,s(+)?]", &["bar"]),
            "dev-libs/foo:1/2=[bar,-baz,-q,r]"
        );
        assert_eq!(atoms("dev-libs/foo:=[bar?]", &[]), "dev-libs/foo:=");
        // Without conditional USE deps the atom is kept as written.
        assert_eq!(
            atoms("dev-libs/foo::gentoo[baz]", &[]),
            "dev-libs/foo::gentoo[baz]"
        );
    }

    #[test]
    fn portage_only_atom_forms() {
        assert_eq!(atoms("=dev-libs/foo-1-2", &[]), "=dev-libs/foo-1-2");
        assert_eq!(atoms("~dev-libs/foo-1-r1", &[]), "~dev-libs/foo-1-r1");
        assert_eq!(atoms("dev-libs/foo::repo-1", &[]), "dev-libs/foo::repo-1");
        assert_eq!(atoms("=a/b-1-2::r[x?]", &[]), "=a/b-1-2");
        assert!(atoms("dev-libs/foo[a(+),a(-)]", &[]).starts_with("ERR"));
        assert!(atoms("a/b[x(+),x]", &[]).starts_with("ERR"));
        assert_eq!(atoms("a/b[x(+),-x(+)]", &[]), "a/b[x(+),-x(+)]");
        for bad in [
            "=a/b-1-2*",
            "~a/b-1-r1*",
            "~a/b-1*",
            "=a/b-1-r1-r2",
            "=a/b-1-02",
            "a/b-1",
            "*/*",
            "dev-libs/foo.bar",
            "a/b[]",
        ] {
            assert!(atoms(bad, &[]).starts_with("ERR"), "{bad}");
        }
    }

    #[test]
    fn structure_rules() {
        assert_eq!(atoms("|| ( a/b )", &[]), "a/b");
        assert_eq!(
            atoms("|| ( a/b || ( c/d e/f ) )", &[]),
            "|| ( a/b c/d e/f )"
        );
        assert_eq!(atoms("( ( a/b ) ) x? ( c/d ) !x? ( e/f )", &[]), "a/b e/f");
        assert_eq!(atoms("x? ( || ( a/b c/d ) )", &["x"]), "|| ( a/b c/d )");
        assert_eq!(atoms("|| ( x? ( a/b ) c/d )", &[]), "c/d");
        assert_eq!(atoms("|| ( x? ( a/b c/d ) )", &["x"]), "a/b c/d");
        assert_eq!(atoms("|| ( x? ( a/b ) )", &[]), "__const__/empty-any-of");
        assert_eq!(atoms("|| ( ( a/b c/d ) )", &[]), "a/b c/d");
        for bad in [
            "|| ( )",
            "a/b ( )",
            "x? ( )",
            "( a/b",
            "a/b )",
            "x?",
            "||",
            "!? ( a/b )",
        ] {
            assert!(atoms(bad, &[]).starts_with("ERR"), "{bad}");
        }
        assert_eq!(atoms("", &[]), "");
    }

    #[test]
    fn words() {
        let w = |s, on: &[&str]| ev(s, on, TokenKind::Words).unwrap();
        assert_eq!(
            w("GPL-2 x? ( MIT ) || ( A B )", &["x"]),
            "GPL-2 MIT || ( A B )"
        );
        assert_eq!(w("a ( b )", &[]), "a b");
        assert_eq!(w("  test\n strip ", &[]), "test strip");
        assert!(ev("x? ( )", &[], TokenKind::Words).is_err());
        assert!(ev("a -> b", &[], TokenKind::Words).is_err());
    }
}

//! The few Python string semantics the index format depends on.

/// Python's `str.isspace()`: Unicode `White_Space` plus the four ASCII
/// information separators `\x1c`–`\x1f`, which Python also splits on.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `s.split()` (no argument): split on runs of whitespace, no
/// empty fields.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// `" ".join(s.split())`: what Portage's `binarytree._read_metadata` makes
/// of every metadata value.
pub(crate) fn normalize_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for t in py_split(s) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        // Python: "a\x1cb\x85c\u3000d\te\n".split() == ['a', 'b', 'c', 'd', 'e']
        assert_eq!(
            py_split("a\x1cb\u{85}c\u{3000}d\te\n").collect::<Vec<_>>(),
            ["a", "b", "c", "d", "e"]
        );
        // Not whitespace for Python: U+200B (zero width space), U+FEFF.
        assert_eq!(py_split("a\u{200b}b \u{feff}").count(), 2);
        assert_eq!(normalize_ws("  x \n y\n"), "x y");
        assert_eq!(normalize_ws("\n"), "");
    }
}

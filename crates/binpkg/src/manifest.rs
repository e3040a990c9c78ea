//! The gpkg `Manifest`: GLEP 74 `DATA` lines.
//!
//! ```text
//! DATA <member> <size> SHA512 <hex> BLAKE2B <hex>
//! ```
//!
//! Hash pairs may come in any order (Portage writes them in set order).
//! Both SHA512 and BLAKE2B are required (Portage 3.0.83's check raises on a
//! line that lacks one of them); other hash names are accepted and ignored.

use crate::error::ErrorKind;

/// One `DATA` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Member file name (without the top directory).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA512, lowercase hex.
    pub sha512: String,
    /// BLAKE2B (BLAKE2b-512), lowercase hex.
    pub blake2b: String,
}

impl ManifestEntry {
    /// The entry for a member with this content.
    pub fn for_data(name: &str, data: &[u8]) -> ManifestEntry {
        let mut d = crate::io::Digests::default();
        d.update(data);
        let h = d.finish();
        ManifestEntry {
            name: name.to_owned(),
            size: data.len() as u64,
            sha512: h.sha512,
            blake2b: h.blake2b,
        }
    }
}

/// The `DATA` line as Portage writes it (without the newline).
impl std::fmt::Display for ManifestEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DATA {} {} SHA512 {} BLAKE2B {}",
            self.name, self.size, self.sha512, self.blake2b
        )
    }
}

fn syntax(line: usize, reason: impl Into<String>) -> ErrorKind {
    ErrorKind::ManifestSyntax {
        line,
        reason: reason.into(),
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parse Manifest text (already stripped of any OpenPGP framing).
pub fn parse(text: &str) -> Result<Vec<ManifestEntry>, ErrorKind> {
    let mut out: Vec<ManifestEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let mut tokens = line.split_ascii_whitespace();
        let Some(tag) = tokens.next() else { continue };
        if tag != "DATA" {
            return Err(syntax(n, format!("expected DATA, found {tag:?}")));
        }
        let name = tokens.next().ok_or_else(|| syntax(n, "no file name"))?;
        if name.contains('/') || name == "." || name == ".." {
            return Err(syntax(n, format!("bad file name {name:?}")));
        }
        if out.iter().any(|e| e.name == name) {
            return Err(syntax(n, format!("{name:?} listed twice")));
        }
        let size = tokens.next().ok_or_else(|| syntax(n, "no size"))?;
        let size = crate::tarwalk::parse_decimal(size.as_bytes())
            .ok_or_else(|| syntax(n, format!("bad size {size:?}")))?;
        let (mut sha512, mut blake2b) = (None, None);
        let mut names: Vec<&str> = Vec::new();
        while let Some(algo) = tokens.next() {
            let value = tokens
                .next()
                .ok_or_else(|| syntax(n, format!("{algo} without a value")))?;
            if names.contains(&algo) {
                return Err(syntax(n, format!("{algo} given twice")));
            }
            names.push(algo);
            match algo {
                "SHA512" | "BLAKE2B" => {
                    if !is_hex(value, 128) {
                        return Err(syntax(n, format!("bad {algo} value")));
                    }
                    let v = Some(value.to_ascii_lowercase());
                    if algo == "SHA512" {
                        sha512 = v;
                    } else {
                        blake2b = v;
                    }
                }
                _ => {}
            }
        }
        let (Some(sha512), Some(blake2b)) = (sha512, blake2b) else {
            return Err(syntax(n, "both SHA512 and BLAKE2B are required"));
        };
        out.push(ManifestEntry {
            name: name.to_owned(),
            size,
            sha512,
            blake2b,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 128).collect()
    }

    #[test]
    fn any_hash_order() {
        let t = format!(
            "DATA a 1 SHA512 {} BLAKE2B {}\nDATA b 2 BLAKE2B {} SHA512 {} SHA256 00\n\n",
            h('a'),
            h('b'),
            h('C'),
            h('d')
        );
        let m = parse(&t).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].blake2b, h('c'));
        assert_eq!(m[1].sha512, h('d'));
    }

    #[test]
    fn display_parses_back() {
        let e = ManifestEntry::for_data("gpkg-1", b"");
        assert!(e.sha512.starts_with("cf83e1357eefb8bd"));
        assert_eq!(parse(&format!("{e}\n")).unwrap(), [e]);
    }

    #[test]
    fn refusals() {
        let ok = format!("SHA512 {} BLAKE2B {}", h('a'), h('b'));
        for bad in [
            format!("MISC a 1 {ok}"),
            format!("DATA a x {ok}"),
            format!("DATA a -1 {ok}"),
            format!("DATA a 1 SHA512 {}", h('a')),
            format!("DATA a 1 {ok} SHA512"),
            format!("DATA a 1 SHA512 abc BLAKE2B {}", h('b')),
            format!("DATA a 1 {ok}\nDATA a 1 {ok}"),
            format!("DATA x/a 1 {ok}"),
            format!("DATA a 1 {ok} SHA512 {}", h('a')),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}

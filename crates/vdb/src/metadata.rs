//! The consolidated `metadata` file (Portage 3.0.82+).
//!
//! ```text
//! #format=1
//! KEY=value            (sorted by key, values whitespace-normalised)
//! #dir_mtime=<st_mtime_ns of the entry directory>
//! ```
//!
//! The file is a complete snapshot of the carried fields ([`FIELDS`]) and is
//! trusted only while `#dir_mtime` equals the directory's current
//! `st_mtime_ns`; otherwise readers fall back to the per-key files.

use std::collections::BTreeMap;

/// The file name inside a VDB entry.
pub const FILE_NAME: &str = "metadata";

/// The only format version Portage 3.0.83 reads and writes.
pub const FORMAT_VERSION: i64 = 1;

/// The single-line fields the file carries (Portage's `_METADATA_FILE_FIELDS`).
/// A carried field absent from a valid file is empty.
pub const FIELDS: [&str; 23] = [
    "BDEPEND",
    "BUILD_ID",
    "BUILD_TIME",
    "CHOST",
    "COUNTER",
    "DEFINED_PHASES",
    "DEPEND",
    "DESCRIPTION",
    "EAPI",
    "HOMEPAGE",
    "IDEPEND",
    "IUSE",
    "KEYWORDS",
    "LICENSE",
    "PDEPEND",
    "PROPERTIES",
    "PROVIDES",
    "RDEPEND",
    "REQUIRES",
    "RESTRICT",
    "SLOT",
    "USE",
    "repository",
];

/// Is `key` one of the fields the metadata file carries?
pub fn is_carried(key: &str) -> bool {
    FIELDS.binary_search(&key).is_ok()
}

/// A parsed metadata file that has a usable header and trailer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataFile {
    pub fields: BTreeMap<String, String>,
    /// The `#dir_mtime=` value.
    pub dir_mtime_ns: i128,
}

/// Is `c` whitespace for Python's `str.split()`?
pub fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `" ".join(value.split())`: the whitespace normalisation Portage
/// applies to every single-line VDB value.
pub fn normalize_whitespace(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for w in v.split(py_is_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

fn parse_py_int(s: &str) -> Option<i128> {
    s.trim_matches(py_is_space).parse().ok()
}

/// Parse a metadata file. Returns `None` when Portage would reject it: no
/// `#format=` line, a format other than 1, or no parseable `#dir_mtime=`.
/// The caller still has to compare [`MetadataFile::dir_mtime_ns`] with the
/// directory.
pub fn parse(data: &[u8]) -> Option<MetadataFile> {
    let text = String::from_utf8_lossy(data);
    let mut out = MetadataFile::default();
    let mut version = None;
    let mut dir_mtime = None;
    for line in crate::contents::lines(text.as_bytes()) {
        // Lines are valid UTF-8: they are slices of a String split at ASCII bytes.
        let line = std::str::from_utf8(line).unwrap_or_default();
        if let Some(rest) = line.strip_prefix('#') {
            if let Some(v) = rest.strip_prefix("format=") {
                let v = parse_py_int(v)?;
                if v != i128::from(FORMAT_VERSION) {
                    return None;
                }
                version = Some(v);
            } else if let Some(v) = rest.strip_prefix("dir_mtime=") {
                dir_mtime = Some(parse_py_int(v)?);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.fields.insert(k.to_owned(), v.to_owned());
        }
    }
    version?;
    out.dir_mtime_ns = dir_mtime?;
    Some(out)
}

/// The body Portage writes (`#format=1` and the sorted, normalised fields),
/// without the `#dir_mtime=` trailer, which is appended after the write.
pub fn format_body<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let sorted: BTreeMap<&str, &str> = fields.into_iter().collect();
    let mut out = format!("#format={FORMAT_VERSION}\n").into_bytes();
    for (k, v) in sorted {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(normalize_whitespace(v).as_bytes());
        out.push(b'\n');
    }
    out
}

/// The trailer line that stamps the file with the directory's mtime.
pub fn stamp_line(dir_mtime_ns: i128) -> Vec<u8> {
    format!("#dir_mtime={dir_mtime_ns}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_sorted_for_binary_search() {
        let mut s = FIELDS;
        s.sort_unstable();
        assert_eq!(s, FIELDS);
        assert!(is_carried("SLOT") && is_carried("repository") && !is_carried("CONTENTS"));
    }

    #[test]
    fn parse_and_reject() {
        let good = b"#format=1\nBUILD_TIME=1795236626\nCOUNTER=103\nSLOT=0\nX=a=b\n#other\n#dir_mtime=1795236627633990331\n";
        let m = parse(good).unwrap();
        assert_eq!(m.dir_mtime_ns, 1795236627633990331);
        assert_eq!(m.fields["SLOT"], "0");
        assert_eq!(m.fields["X"], "a=b");
        assert!(parse(b"#format=1\nSLOT=0\n").is_none(), "no trailer");
        assert!(parse(b"SLOT=0\n#dir_mtime=5\n").is_none(), "no header");
        assert!(
            parse(b"#format=2\n#dir_mtime=5\n").is_none(),
            "wrong version"
        );
        assert!(parse(b"#format=x\n#dir_mtime=5\n").is_none());
        assert!(parse(b"#format=1\n#dir_mtime=5x\n").is_none());
    }

    #[test]
    fn body_is_sorted_and_normalised() {
        let body = format_body([("SLOT", "0\n"), ("EAPI", "8"), ("IUSE", " a\t b \n")]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "#format=1\nEAPI=8\nIUSE=a b\nSLOT=0\n"
        );
    }

    #[test]
    fn whitespace_like_python() {
        assert_eq!(normalize_whitespace("  a \u{a0}b\x1c c\n"), "a b c");
        assert_eq!(normalize_whitespace(""), "");
    }
}

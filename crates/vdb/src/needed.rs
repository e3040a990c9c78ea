//! `NEEDED.ELF.2`: one line per ELF object of the package.
//!
//! `ARCH;PATH;SONAME;RUNPATHS;NEEDED[;MULTILIB_CATEGORY[;…]]`: at least five
//! `;`-separated fields; RUNPATHS is `:`-separated, NEEDED `,`-separated;
//! scanelf's empty-runpath marker `"  -  "` means none; an empty or missing
//! sixth field means no multilib category; further fields are ignored.

use std::fmt;

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededEntry {
    pub arch: String,
    pub path: String,
    pub soname: String,
    pub runpaths: Vec<String>,
    pub needed: Vec<String>,
    pub multilib_category: Option<String>,
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for NeededError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl NeededEntry {
    /// Parse one line (without its newline).
    pub fn parse(line: &str) -> Result<NeededEntry, String> {
        let fields: Vec<&str> = line.split(';').collect();
        if fields.len() < 5 {
            return Err(format!(
                "wrong number of fields ({}, at least 5 expected)",
                fields.len()
            ));
        }
        let runpaths = if fields[3] == "  -  " { "" } else { fields[3] };
        let split = |s: &str, sep: char| -> Vec<String> {
            s.split(sep)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(NeededEntry {
            arch: fields[0].to_owned(),
            path: fields[1].to_owned(),
            soname: fields[2].to_owned(),
            runpaths: split(runpaths, ':'),
            needed: split(fields[4], ','),
            multilib_category: fields
                .get(5)
                .filter(|c| !c.is_empty())
                .map(|c| (*c).to_owned()),
        })
    }
}

impl fmt::Display for NeededEntry {
    /// Formats the line as Portage writes it (without a newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};{};{};{};{}",
            self.arch,
            self.path,
            self.soname,
            self.runpaths.join(":"),
            self.needed.join(",")
        )?;
        if let Some(c) = &self.multilib_category {
            write!(f, ";{c}")?;
        }
        Ok(())
    }
}

/// Parse a whole `NEEDED.ELF.2` file; empty lines are skipped, bad lines
/// reported and skipped.
pub fn parse_needed_elf2(data: &[u8]) -> (Vec<NeededEntry>, Vec<NeededError>) {
    let text = String::from_utf8_lossy(data);
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        match NeededEntry::parse(line) {
            Ok(e) => entries.push(e),
            Err(message) => errors.push(NeededError {
                line: i + 1,
                message,
            }),
        }
    }
    (entries, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_lines() {
        let (e, err) = parse_needed_elf2(
            b"X86_64;/usr/lib64/libz.so.1.3;libz.so.1;;libc.so.6;x86_64\n\
              X86_64;/usr/bin/foo;;$ORIGIN/../lib64:/opt/x;libz.so.1,libc.so.6;x86_64\n\
              X86_64;/lib64/libz.so.1.2.3;libz.so.1;  -  ;libc.so.6\n\
              bad;line\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].line, 4);
        assert_eq!(e[1].runpaths, vec!["$ORIGIN/../lib64", "/opt/x"]);
        assert_eq!(e[1].needed, vec!["libz.so.1", "libc.so.6"]);
        assert_eq!(e[2].runpaths, Vec::<String>::new());
        assert_eq!(e[2].multilib_category, None);
        assert_eq!(
            e[0].to_string(),
            "X86_64;/usr/lib64/libz.so.1.3;libz.so.1;;libc.so.6;x86_64"
        );
    }
}

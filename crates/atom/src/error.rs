//! Parse errors.

use std::fmt;

/// What kind of string was being parsed when a [`ParseError`] occurred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// A bare version (`1.0_rc1-r2`), see [`Version::parse`](crate::Version::parse).
    Version,
    /// A `category/PF` string, see [`Cpv::parse`](crate::Cpv::parse).
    Cpv,
    /// A category name on its own.
    Category,
    /// A package name (PN) on its own.
    PackageName,
    /// A dependency atom, see [`Dep::parse`](crate::Dep::parse).
    Dep,
    /// A command-line query, see [`parse_query`](crate::parse_query).
    Query,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subject::Version => "version",
            Subject::Cpv => "CPV",
            Subject::Category => "category",
            Subject::PackageName => "package name",
            Subject::Dep => "dependency atom",
            Subject::Query => "package query",
        })
    }
}

/// What is wrong with the input of a failed parse.
///
/// All variants are plain data (no allocation), so building an error is cheap
/// even in hot loops that probe many candidate strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is empty.
    Empty,
    /// A character that is not allowed at this place.
    UnexpectedChar {
        /// The offending character.
        ch: char,
        /// Which part of the input was being parsed (e.g. `"category"`).
        context: &'static str,
    },
    /// The input ended where more was required.
    UnexpectedEnd {
        /// Which part of the input was being parsed.
        context: &'static str,
    },
    /// A name must start with `[A-Za-z0-9_]` (USE flags: `[A-Za-z0-9]`).
    BadFirstChar {
        /// Which name (category, package name, slot, ...).
        context: &'static str,
    },
    /// A version component is missing its digits (`1..2`, `.1`, `1.`).
    ExpectedDigit,
    /// `_` not followed by `alpha`, `beta`, `pre`, `rc` or `p`.
    InvalidSuffix,
    /// `-r` not followed by digits.
    MissingRevisionNumber,
    /// No `/` separating category and package.
    MissingCategory,
    /// Nothing after the `/`.
    MissingPackageName,
    /// A CPV or PF without a (valid) version part.
    MissingVersion,
    /// A version operator without a version (`>=cat/pkg`).
    OperatorWithoutVersion {
        /// The operator as written.
        op: &'static str,
    },
    /// A package (or repository) name ending in `-<version>`, e.g. `a/b-1` without operator,
    /// or `b-1-2` (only the last version-like part can be the version).
    NameEndsInVersion {
        /// `"package name"` or `"repository name"`.
        context: &'static str,
    },
    /// `~cat/pkg-1-r1`.
    ApproxWithRevision,
    /// `*` after a version whose operator is not `=`, or after an unversioned atom.
    GlobWithoutEquals,
    /// `!!!cat/pkg`.
    TooManyBlockers,
    /// A blocker in a context that does not allow one.
    BlockerNotAllowed,
    /// `cat/pkg:` or `cat/pkg:/1`.
    EmptySlot,
    /// `cat/pkg:0/`.
    EmptySubslot,
    /// `cat/pkg:0*`.
    SlotNameWithStar,
    /// `cat/pkg::`.
    EmptyRepo,
    /// `cat/pkg[]`.
    EmptyUseDeps,
    /// `cat/pkg[a,]` or `cat/pkg[,a]`.
    EmptyUseDep,
    /// A USE dependency that does not have one of the forms
    /// `flag`, `-flag`, `flag?`, `!flag?`, `flag=`, `!flag=`.
    InvalidUseDep {
        /// What is wrong.
        reason: &'static str,
    },
    /// `(+)`/`(-)` malformed.
    InvalidUseDefault,
    /// `cat/pkg[a` .
    UnterminatedUseDeps,
    /// Characters after the end of the atom.
    TrailingGarbage {
        /// The first unexpected character.
        ch: char,
    },
    /// Input longer than `u32::MAX` bytes.
    TooLong,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Empty => f.write_str("empty input"),
            ErrorKind::UnexpectedChar { ch, context } => {
                write!(f, "unexpected character {ch:?} in {context}")
            }
            ErrorKind::UnexpectedEnd { context } => {
                write!(f, "unexpected end of input in {context}")
            }
            ErrorKind::BadFirstChar { context } => {
                if context == "USE flag" {
                    write!(f, "{context} must start with a letter or digit")
                } else {
                    write!(f, "{context} must start with a letter, digit or '_'")
                }
            }
            ErrorKind::ExpectedDigit => f.write_str("expected a digit in version"),
            ErrorKind::InvalidSuffix => f.write_str(
                "invalid version suffix (expected _alpha, _beta, _pre, _rc or _p, \
                 optionally followed by digits)",
            ),
            ErrorKind::MissingRevisionNumber => f.write_str("expected digits after '-r'"),
            ErrorKind::MissingCategory => {
                f.write_str("missing category (expected 'category/package')")
            }
            ErrorKind::MissingPackageName => f.write_str("missing package name"),
            ErrorKind::MissingVersion => {
                f.write_str("missing version (expected 'package-version')")
            }
            ErrorKind::OperatorWithoutVersion { op } => {
                write!(f, "'{op}' operator requires a version")
            }
            ErrorKind::NameEndsInVersion { context } => {
                write!(
                    f,
                    "{context} must not end in a hyphen followed by a version"
                )?;
                if context == "package name" {
                    f.write_str(" (a versioned atom needs an operator such as '=')")?;
                }
                Ok(())
            }
            ErrorKind::ApproxWithRevision => f.write_str("'~' operator does not allow a revision"),
            ErrorKind::GlobWithoutEquals => {
                f.write_str("'*' suffix is only allowed after a version with the '=' operator")
            }
            ErrorKind::TooManyBlockers => f.write_str("too many '!' (a blocker is '!' or '!!')"),
            ErrorKind::BlockerNotAllowed => f.write_str("blockers are not allowed here"),
            ErrorKind::EmptySlot => f.write_str("empty slot name"),
            ErrorKind::EmptySubslot => f.write_str("empty sub-slot name"),
            ErrorKind::SlotNameWithStar => {
                f.write_str("the '*' slot operator cannot be combined with a slot name")
            }
            ErrorKind::EmptyRepo => f.write_str("empty repository name"),
            ErrorKind::EmptyUseDeps => f.write_str("empty USE dependency list"),
            ErrorKind::EmptyUseDep => f.write_str("empty USE dependency"),
            ErrorKind::InvalidUseDep { reason } => {
                write!(f, "invalid USE dependency: {reason}")
            }
            ErrorKind::InvalidUseDefault => {
                f.write_str("invalid USE default (expected '(+)' or '(-)')")
            }
            ErrorKind::UnterminatedUseDeps => {
                f.write_str("missing ']' at the end of the USE dependencies")
            }
            ErrorKind::TrailingGarbage { ch } => {
                write!(f, "unexpected {ch:?} after the end of the atom")
            }
            ErrorKind::TooLong => f.write_str("input too long"),
        }
    }
}

/// A parse failure: what was parsed, the input, the byte offset where the problem was
/// found and what is wrong.
///
/// Displays as e.g.
/// `invalid dependency atom "~a/b-1-r1": '~' operator does not allow a revision (at byte 5)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("invalid {subject} {input:?}: {kind} (at byte {offset})")]
pub struct ParseError {
    subject: Subject,
    input: Box<str>,
    offset: usize,
    kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(subject: Subject, input: &str, offset: usize, kind: ErrorKind) -> Self {
        ParseError {
            subject,
            input: input.into(),
            offset: offset.min(input.len()),
            kind,
        }
    }

    /// What kind of string was being parsed.
    pub fn subject(&self) -> Subject {
        self.subject
    }

    /// The complete input that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Byte offset into [`input`](Self::input) where the problem was detected
    /// (`input().len()` for "unexpected end").
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What is wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Internal error: offset relative to the slice being parsed plus kind.
pub(crate) type RawError = (usize, ErrorKind);

/// The character at byte `i` of `s` (for messages), or U+FFFD if `i` is not a char boundary.
pub(crate) fn char_at(s: &str, i: usize) -> char {
    s.get(i..)
        .and_then(|t| t.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

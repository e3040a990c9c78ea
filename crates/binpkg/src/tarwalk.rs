//! A strict streaming walk over a tar archive.
//!
//! The `tar` crate is used in raw mode: GNU long names/links and PAX
//! headers are applied here, with a size cap (the crate's own handling
//! buffers them whole, which a hostile archive could abuse). Entries after
//! the end-of-archive marker must be zeros.

use std::io::{self, Read};

use crate::error::ImageProblem;
use crate::image::Mtime;
use crate::io::ExactReader;

/// Largest GNU long name / PAX extension accepted.
pub(crate) const MAX_EXTENSION: u64 = 1 << 20;

/// One logical entry (extension headers applied).
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Option<Vec<u8>>,
    pub gname: Option<Vec<u8>>,
    pub mtime: Mtime,
    pub size: u64,
    pub device: (u32, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Offset of the entry's data in the tar stream.
    pub data_pos: u64,
}

#[derive(Debug)]
pub(crate) enum WalkError {
    /// An error from the stream or the tar crate; see [`io_error`].
    Stream(io::Error),
    Tar(String),
    Truncated(String),
    DataAfterEnd,
    ExtensionTooLarge,
    Entry {
        name: Vec<u8>,
        problem: ImageProblem,
    },
}

/// Short data is truncation; anything else is reported as a stream error,
/// which the caller attributes (limit, decoder, file or tar format) using the
/// [`crate::io::Meter`] of the stream.
pub(crate) fn io_error(e: io::Error) -> WalkError {
    let msg = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("unexpected EOF")
        || msg.contains("failed to read entire block")
    {
        WalkError::Truncated(msg)
    } else {
        WalkError::Stream(e)
    }
}

#[derive(Default)]
struct Pending {
    longname: Option<Vec<u8>>,
    longlink: Option<Vec<u8>>,
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.longname.is_none() && self.longlink.is_none() && self.pax.is_none()
    }
}

struct Pax<'a> {
    local: &'a [(Vec<u8>, Vec<u8>)],
    global: &'a [(Vec<u8>, Vec<u8>)],
}

impl Pax<'_> {
    /// The value of `key`; a local empty value unsets it.
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if let Some((_, v)) = self.local.iter().rev().find(|(k, _)| k == key) {
            return if v.is_empty() { None } else { Some(v) };
        }
        self.global
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn iter(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
        self.global.iter().chain(self.local.iter())
    }
}

/// PAX records: (key, value) pairs in order.
pub(crate) type PaxRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// Parse PAX records (`"<len> <key>=<value>\n"`).
pub(crate) fn parse_pax(buf: &[u8]) -> Result<PaxRecords, String> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .take(21)
            .position(|&b| b == b' ')
            .ok_or("record without a length")?;
        let len = parse_decimal(&rest[..sp]).ok_or("bad record length")?;
        let len = usize::try_from(len).map_err(|_| "bad record length")?;
        if len <= sp + 2 || len > rest.len() {
            return Err(format!("record length {len} out of range"));
        }
        let rec = &rest[sp + 1..len];
        let Some((&b'\n', rec)) = rec.split_last() else {
            return Err("record not terminated by a newline".into());
        };
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("record without '='")?;
        if eq == 0 {
            return Err("record with an empty key".into());
        }
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in s {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

/// PAX time: `[-]secs[.fraction]`.
pub(crate) fn parse_pax_time(s: &[u8]) -> Option<Mtime> {
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &b""[..]),
    };
    let secs = i64::try_from(parse_decimal(int)?).ok()?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some(if !neg {
        Mtime { secs, nanos }
    } else if nanos == 0 {
        Mtime {
            secs: -secs,
            nanos: 0,
        }
    } else {
        Mtime {
            secs: -secs - 1,
            nanos: 1_000_000_000 - nanos,
        }
    })
}

fn trim_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn read_ext(entry: &mut dyn Read, size: u64) -> Result<Vec<u8>, WalkError> {
    if size > MAX_EXTENSION {
        return Err(WalkError::ExtensionTooLarge);
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    ExactReader::new(entry, size)
        .read_to_end(&mut buf)
        .map_err(io_error)?;
    Ok(buf)
}

/// A numeric header field that is empty (all NUL or spaces) reads as 0, as
/// in Python's tarfile; otherwise the tar crate parses it.
fn numeric(field: &[u8], parsed: impl FnOnce() -> io::Result<u64>) -> io::Result<u64> {
    if field.iter().all(|&b| b == 0 || b == b' ') {
        Ok(0)
    } else {
        parsed()
    }
}

fn header_err(name: &[u8], what: &str, e: io::Error) -> WalkError {
    WalkError::Tar(format!(
        "entry \"{}\": bad {what} field: {e}",
        crate::error::show(name)
    ))
}

/// Walk every entry of the tar stream `reader`, calling `f` with the entry
/// and a reader of exactly its data. Data `f` leaves unread is read and
/// discarded (so truncation is always detected). After the end-of-archive
/// marker, the rest of `reader` must be zeros.
pub(crate) fn walk<R, E, F>(reader: &mut R, mut f: F) -> Result<(), E>
where
    R: Read,
    E: From<WalkError>,
    F: FnMut(&TarEntry, &mut ExactReader<'_>) -> Result<(), E>,
{
    let mut ar = tar::Archive::new(&mut *reader);
    let mut entries = ar.entries().map_err(|e| E::from(io_error(e)))?.raw(true);
    let mut pending = Pending::default();
    let mut global: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        let mut entry = match entries.next() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(io_error(e).into()),
        };
        let header = entry.header().clone();
        let typeflag = header.entry_type().as_byte();
        let size = entry.size();
        match typeflag {
            b'L' | b'K' | b'x' | b'g' => {
                let data = read_ext(&mut entry, size)?;
                let dup =
                    || WalkError::Tar("two extension headers of one kind for one entry".into());
                match typeflag {
                    b'L' => {
                        if pending.longname.replace(trim_nuls(data)).is_some() {
                            return Err(dup().into());
                        }
                    }
                    b'K' => {
                        if pending.longlink.replace(trim_nuls(data)).is_some() {
                            return Err(dup().into());
                        }
                    }
                    b'x' => {
                        let recs = parse_pax(&data).map_err(|reason| WalkError::Entry {
                            name: header.path_bytes().into_owned(),
                            problem: ImageProblem::BadPax { reason },
                        })?;
                        if pending.pax.replace(recs).is_some() {
                            return Err(dup().into());
                        }
                    }
                    _ => {
                        let recs = parse_pax(&data).map_err(|reason| WalkError::Entry {
                            name: header.path_bytes().into_owned(),
                            problem: ImageProblem::BadPax { reason },
                        })?;
                        for (k, v) in recs {
                            global.retain(|(gk, _)| *gk != k);
                            if !v.is_empty() {
                                global.push((k, v));
                            }
                        }
                    }
                }
                continue;
            }
            _ => {}
        }
        let local = pending.pax.take().unwrap_or_default();
        let pax = Pax {
            local: &local,
            global: &global,
        };
        let name = match (pax.get(b"path"), pending.longname.take()) {
            (Some(p), _) => p.to_vec(),
            (None, Some(l)) => l,
            (None, None) => header.path_bytes().into_owned(),
        };
        let link = match (pax.get(b"linkpath"), pending.longlink.take()) {
            (Some(p), _) => p.to_vec(),
            (None, Some(l)) => l,
            (None, None) => header
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default(),
        };
        if let Some(v) = pax.get(b"size") {
            match parse_decimal(v) {
                Some(p) if p == size => {}
                Some(p) => {
                    return Err(WalkError::Entry {
                        name,
                        problem: ImageProblem::PaxSize {
                            pax: p,
                            header: size,
                        },
                    }
                    .into())
                }
                None => {
                    return Err(WalkError::Entry {
                        name,
                        problem: ImageProblem::BadPax {
                            reason: "bad size record".into(),
                        },
                    }
                    .into())
                }
            }
        }
        if pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse.")) {
            return Err(WalkError::Entry {
                name,
                problem: ImageProblem::UnsupportedType { typeflag: 'S' },
            }
            .into());
        }
        let num = |key: &[u8], fallback: io::Result<u64>, what: &str| -> Result<u64, WalkError> {
            match pax.get(key) {
                Some(v) => parse_decimal(v).ok_or_else(|| WalkError::Entry {
                    name: name.clone(),
                    problem: ImageProblem::BadPax {
                        reason: format!("bad {what} record"),
                    },
                }),
                None => fallback.map_err(|e| header_err(&name, what, e)),
            }
        };
        let old = header.as_old();
        let uid = num(b"uid", numeric(&old.uid, || header.uid()), "uid")?;
        let gid = num(b"gid", numeric(&old.gid, || header.gid()), "gid")?;
        let mtime = match pax.get(b"mtime") {
            Some(v) => parse_pax_time(v).ok_or_else(|| WalkError::Entry {
                name: name.clone(),
                problem: ImageProblem::BadPax {
                    reason: "bad mtime record".into(),
                },
            })?,
            None => {
                let secs = numeric(&old.mtime, || header.mtime())
                    .map_err(|e| header_err(&name, "mtime", e))?;
                Mtime {
                    secs: i64::try_from(secs).unwrap_or(i64::MAX),
                    nanos: 0,
                }
            }
        };
        let mode = numeric(&old.mode, || header.mode().map(u64::from))
            .map_err(|e| header_err(&name, "mode", e))?;
        let mode = u32::try_from(mode & 0o7777_7777).unwrap_or(0);
        let owner = |key: &[u8], fallback: Option<&[u8]>| -> Option<Vec<u8>> {
            pax.get(key)
                .or(fallback)
                .filter(|v| !v.is_empty())
                .map(<[u8]>::to_vec)
        };
        let uname = owner(b"uname", header.username_bytes());
        let gname = owner(b"gname", header.groupname_bytes());
        let device = if matches!(typeflag, b'3' | b'4') {
            let major = header
                .device_major()
                .map_err(|e| header_err(&name, "devmajor", e))?
                .unwrap_or(0);
            let minor = header
                .device_minor()
                .map_err(|e| header_err(&name, "devminor", e))?
                .unwrap_or(0);
            (major, minor)
        } else {
            (0, 0)
        };
        let xattrs = pax
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(b"SCHILY.xattr.")
                    .map(|n| (n.to_vec(), v.clone()))
            })
            .collect();
        let te = TarEntry {
            name,
            link,
            typeflag,
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime,
            size,
            device,
            xattrs,
            data_pos: entry.raw_file_position(),
        };
        drop(local);
        let mut data = ExactReader::new(&mut entry, size);
        f(&te, &mut data)?;
        if data.left() > 0 {
            io::copy(&mut data, &mut io::sink()).map_err(|e| E::from(io_error(e)))?;
        }
    }
    if !pending.is_empty() {
        return Err(E::from(WalkError::Tar(
            "extension header at the end of the archive, describing no entry".into(),
        )));
    }
    let inner = ar.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match inner.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(E::from(io_error(e))),
        };
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(E::from(WalkError::DataAfterEnd));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records() {
        let recs = parse_pax(b"30 mtime=1700000000.123456789\n18 path=image/a b\n").unwrap();
        assert_eq!(recs[0].0, b"mtime");
        assert_eq!(recs[1].1, b"image/a b");
        assert!(parse_pax(b"5 a=b\n").is_err());
        assert!(parse_pax(b"99 a=b\n").is_err());
        assert!(parse_pax(b"x").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some(Mtime {
                secs: 1700000000,
                nanos: 500_000_000
            })
        );
        assert_eq!(parse_pax_time(b"12"), Some(Mtime { secs: 12, nanos: 0 }));
        assert_eq!(
            parse_pax_time(b"-1.25"),
            Some(Mtime {
                secs: -2,
                nanos: 750_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"1.1234567899"),
            Some(Mtime {
                secs: 1,
                nanos: 123_456_789
            })
        );
        assert_eq!(parse_pax_time(b"1.x"), None);
        assert_eq!(parse_pax_time(b""), None);
    }
}

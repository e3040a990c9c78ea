//! Package metadata: the `metadata/<KEY>` files of a gpkg's metadata tar or
//! the keys of an xpak block. They are the files of Portage's `build-info`
//! directory (for quickpkg'd packages: of the VDB entry) and become the VDB
//! keys when the package is merged.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::rc::Rc;

use crate::compress::{self, Compression};
use crate::error::{show, ErrorKind, LimitKind};
use crate::image::{walk_error_kind, Flow};
use crate::io::{CountingReader, ExactReader, LimitedReader, Meter};
use crate::options::Limits;
use crate::tarwalk::{self, TarEntry};

/// Package metadata: key → raw value (values usually end with a newline).
pub type Metadata = BTreeMap<String, Vec<u8>>;

/// Is `name` acceptable as a metadata key? Returns it as a `String`.
pub(crate) fn check_key(name: &[u8]) -> Result<String, &'static str> {
    if name.is_empty() {
        return Err("empty key");
    }
    if name == b"." || name == b".." || name.contains(&b'/') {
        return Err("key is not a plain file name");
    }
    if name.iter().any(|b| b.is_ascii_control()) {
        return Err("control character in the key");
    }
    String::from_utf8(name.to_vec()).map_err(|_| "key is not UTF-8")
}

/// A metadata value as text: UTF-8 with surrounding whitespace removed.
pub fn value_str<'a>(md: &'a Metadata, key: &str) -> Option<&'a str> {
    md.get(key)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
}

/// Read a (compressed) metadata tar into a map. Every member must be a
/// regular file `metadata/<KEY>`; keys are unique.
pub(crate) fn read_metadata_tar<R: Read>(
    reader: R,
    compression: Compression,
    limits: &Limits,
) -> Result<Metadata, ErrorKind> {
    let meter = Rc::new(Meter::default());
    let counting = CountingReader::new(reader, meter.clone());
    let decoder = compress::decoder(
        compression,
        BufReader::new(counting),
        limits.max_decoder_memory,
    )
    .map_err(|source| ErrorKind::Decompress {
        compression: compression.name(),
        source,
    })?;
    // The metadata tar is bounded by max_metadata_size (plus room for tar
    // headers); entry contents are counted below.
    let cap = limits
        .max_metadata_size
        .saturating_mul(2)
        .saturating_add(1 << 20);
    let limited = LimitedReader::new(
        decoder,
        meter.clone(),
        cap,
        limits.max_ratio,
        limits.ratio_floor,
    );
    let mut stream = BufReader::new(limited);
    let mut out = Metadata::new();
    let mut total: u64 = 0;
    let r = tarwalk::walk(&mut stream, |te: &TarEntry, data: &mut ExactReader<'_>| {
        let fail = |reason: &'static str| -> Flow<ErrorKind> {
            Flow::Caller(ErrorKind::BadMetadataEntry {
                name: show(&te.name),
                reason,
            })
        };
        if !matches!(te.typeflag, b'0' | b'\0' | b'7') {
            return Err(fail("not a regular file"));
        }
        let Some(key) = te.name.strip_prefix(b"metadata/") else {
            return Err(fail("not under metadata/"));
        };
        let key = check_key(key).map_err(fail)?;
        if out.contains_key(&key) {
            return Err(fail("duplicate key"));
        }
        total = total.saturating_add(te.size);
        if total > limits.max_metadata_size {
            return Err(Flow::Caller(ErrorKind::Limit {
                limit: LimitKind::Metadata {
                    limit: limits.max_metadata_size,
                },
            }));
        }
        let mut value = Vec::with_capacity(usize::try_from(te.size).unwrap_or(0));
        data.read_to_end(&mut value)
            .map_err(|e| Flow::Walk(tarwalk::io_error(e)))?;
        out.insert(key, value);
        Ok(())
    });
    match r {
        Ok(()) => Ok(out),
        Err(Flow::Walk(w)) => Err(walk_error_kind(w, &meter, compression)),
        Err(Flow::Check(c)) => Err(c.into()),
        Err(Flow::Caller(k)) => Err(meter
            .tripped()
            .map(|limit| ErrorKind::Limit { limit })
            .unwrap_or(k)),
    }
}

//! Fuzz the VDB file parsers: CONTENTS (with a write/parse round trip),
//! the consolidated metadata file and NEEDED.ELF.2.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb::contents::{parse_contents, to_bytes, to_sorted_bytes};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_contents(data);
    // Whatever parsed must write out and parse back to the same entries.
    let again = to_bytes(&parsed.entries);
    let reparsed = parse_contents(&again);
    // Every non-symlink entry round-trips exactly. (A symlink whose target
    // contains " -> " is ambiguous in the format, for Portage too.)
    let plain = |c: &vdb::contents::Contents| -> Vec<vdb::contents::ContentsEntry> {
        c.entries
            .iter()
            .filter(|e| !matches!(e.kind, vdb::contents::EntryKind::Sym { .. }))
            .cloned()
            .collect()
    };
    assert_eq!(plain(&parsed), plain(&reparsed));
    assert_eq!(parsed.entries.len(), reparsed.entries.len());
    let _ = to_sorted_bytes(&parsed.entries);
    for e in &parsed.entries {
        let _ = e.normalized_path();
    }
    let _ = vdb::metadata::parse(data);
    let _ = vdb::needed::parse_needed_elf2(data);
});

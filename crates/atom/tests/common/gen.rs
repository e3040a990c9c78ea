//! proptest strategies for versions, names and atoms.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// A numeric version component: mostly short with leading/trailing zeros to provoke
/// Portage's fractional comparisons, sometimes very long.
pub fn num_component() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(vec![
            "0", "00", "000", "1", "01", "001", "010", "0100", "10", "100", "2", "02", "20",
            "9", "09", "99", "0010", "11",
        ])
        .prop_map(String::from),
        3 => "[0-9]{1,4}",
        1 => "0{0,3}[1-9][0-9]{15,30}",
    ]
}

/// Digits after a suffix or `-r`: often empty/zero-padded.
pub fn small_num() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec!["", "0", "00", "1", "01", "001", "2", "10", "010"]).prop_map(String::from),
        2 => "[0-9]{1,3}",
        1 => "[1-9][0-9]{18,25}",
    ]
}

/// A valid version string (all PMS parts).
pub fn version() -> impl Strategy<Value = String> {
    (
        num_component(),
        prop::collection::vec(num_component(), 0..4),
        prop::option::weighted(0.3, select(vec!['a', 'b', 'z'])),
        prop::collection::vec(
            (select(vec!["alpha", "beta", "pre", "rc", "p"]), small_num()),
            0..3,
        ),
        prop::option::weighted(0.4, "[0-9]{1,3}"),
    )
        .prop_map(|(first, rest, letter, suffixes, rev)| {
            let mut s = first;
            for c in rest {
                s.push('.');
                s.push_str(&c);
            }
            if let Some(l) = letter {
                s.push(l);
            }
            for (name, n) in suffixes {
                s.push('_');
                s.push_str(name);
                s.push_str(&n);
            }
            if let Some(r) = rev {
                s.push_str("-r");
                s.push_str(&r);
            }
            s
        })
}

/// A small change to a version that often keeps it equal under vercmp (or breaks it).
pub fn mutate(v: &str, how: u8) -> String {
    match how % 9 {
        0 => {
            if v.contains("-r") {
                v.replacen("-r", "-r0", 1)
            } else {
                format!("{v}-r0")
            }
        }
        1 => v.replacen('.', ".0", 1),
        2 => format!("0{v}"),
        3 => v.replacen("_p", "_p0", 1),
        4 => {
            // append a zero to the first numeric component after a dot
            match v.find('.') {
                Some(i) => {
                    let j = v[i + 1..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(v.len(), |k| i + 1 + k);
                    format!("{}0{}", &v[..j], &v[j..])
                }
                None => format!("{v}.0"),
            }
        }
        5 => {
            let mut s = v.to_owned();
            s.pop();
            s
        }
        6 => v.replacen("_", "_p_", 1),
        7 => format!("{v}_p"),
        _ => v.to_owned(),
    }
}

/// A pair of versions: independent, or one derived from the other by [`mutate`].
pub fn version_pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        1 => (version(), version()),
        2 => (version(), any::<u8>()).prop_map(|(a, m)| {
            let b = mutate(&a, m);
            (a, b)
        }),
    ]
}

/// Category names (valid).
pub fn category() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec!["cat", "dev-libs", "sys-apps", "x11-libs", "_", "a+b", "a.b"]).prop_map(String::from),
        1 => "[a-zA-Z0-9_][a-zA-Z0-9_+.-]{0,10}",
    ]
}

/// Package names that are valid and never end in a version-like part: every hyphen is
/// followed by a letter other than `r`, or by `r` + a non-digit.
pub fn package_name() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9_][a-zA-Z0-9_+]{0,8}",
        prop::collection::vec("[a-qs-zA-Z_+][a-zA-Z0-9_+]{0,5}|r[a-z][a-z0-9]{0,3}", 0..3),
    )
        .prop_map(|(first, parts)| {
            let mut s = first;
            for p in parts {
                s.push('-');
                s.push_str(&p);
            }
            s
        })
}

/// Slot-like names.
pub fn slot_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9_+.-]{0,6}"
}

/// USE flag names.
pub fn use_flag() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9+_@-]{0,6}"
}

/// Repository names (valid): no hyphen followed by a digit.
pub fn repo_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9_]{0,6}(-[a-zA-Z_][a-zA-Z0-9_]{0,4}){0,2}"
        .prop_filter("not ending in a version", |s| {
            atom::is_valid_package_name(s)
        })
}

/// A deterministic-per-seed runner; the seed comes from `VARTREE_PROPTEST_SEED` (hex or
/// decimal u64) or the clock, and is returned so failures can be reproduced.
pub fn runner() -> (TestRunner, u64) {
    let seed = std::env::var("VARTREE_PROPTEST_SEED")
        .ok()
        .and_then(|s| {
            s.strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    (TestRunner::new_with_rng(Config::default(), rng), seed)
}

/// Draws `n` values from `strategy`.
pub fn sample<S: Strategy>(runner: &mut TestRunner, strategy: &S, n: usize) -> Vec<S::Value> {
    (0..n)
        .map(|_| {
            strategy
                .new_tree(runner)
                .expect("strategy generates a value")
                .current()
        })
        .collect()
}

//! Property tests for config protection, confmem, the path matchers and the
//! make.conf parser: invariants that must hold for any input, and "never
//! panics" for every parser and matcher fed arbitrary text.

use std::collections::HashMap;
use std::path::Path;

use merge::config::{parse_config, stack_incremental, varexpand, ParseOptions, VarMap};
use merge::mask::{fnmatch, shlex_split, CollisionIgnore, Glob, InstallMask, UninstallIgnore};
use merge::protect::{
    decide, new_protect_filename, CfgCandidate, ConfigProtect, Confmem, ConfmemUpdate, DestState,
    InstalledEntry, PathProbe, ProtectInput, ProtectName, SrcObject,
};
use proptest::prelude::*;

fn cfg_number(name: &[u8], base: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(name).ok()?;
    let rest = s.strip_prefix("._cfg")?;
    let (num, b) = rest.split_once('_')?;
    (b.as_bytes() == base && num.len() >= 4 && num.bytes().all(|c| c.is_ascii_digit()))
        .then(|| num.parse().ok())
        .flatten()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The next `._cfg` number is one more than the highest recognised one;
    /// merging repeatedly (each new name added to the directory) yields
    /// strictly increasing numbers with no reuse when contents differ.
    #[test]
    fn cfg_numbering_is_monotonic(
        existing in proptest::collection::btree_set(0u32..9990, 0..8),
        junk in proptest::collection::vec("[._cfgx0-9a-z+ -]{0,14}", 0..6),
        rounds in 1usize..6,
    ) {
        let base = b"foo.conf";
        let mut listing: Vec<Vec<u8>> = existing
            .iter()
            .map(|n| format!("._cfg{n:04}_foo.conf").into_bytes())
            .collect();
        listing.extend(junk.iter().map(|j| j.clone().into_bytes()));
        let mut last: Option<u32> = None;
        for _ in 0..rounds {
            let picked = new_protect_filename(
                listing.iter().map(Vec::as_slice),
                base,
                Some("0123456789abcdef0123456789abcdef"),
                false,
                true,
                |_| CfgCandidate::File("ffffffffffffffffffffffffffffffff".into()),
            );
            let ProtectName::Cfg { name, reused } = picked else {
                return Err(TestCaseError::fail("an existing destination always gets a ._cfg name"));
            };
            prop_assert!(!reused);
            let n = cfg_number(&name, base).expect("well-formed name");
            let max_existing = listing.iter().filter_map(|l| cfg_number(l, base)).max();
            if let Some(m) = max_existing {
                prop_assert!(n > m, "{n} must exceed {m}");
            }
            if let Some(prev) = last {
                prop_assert_eq!(n, prev + 1);
            }
            last = Some(n);
            listing.push(name);
        }
    }

    /// With identical content in the highest candidate, that name is reused.
    #[test]
    fn cfg_identical_highest_is_reused(existing in proptest::collection::btree_set(0u32..9999, 1..6)) {
        let listing: Vec<Vec<u8>> = existing.iter().map(|n| format!("._cfg{n:04}_x").into_bytes()).collect();
        let max = *existing.iter().max().unwrap();
        let picked = new_protect_filename(listing.iter().map(Vec::as_slice), b"x", Some("k"), false, true, |_| {
            CfgCandidate::File("k".into())
        });
        prop_assert_eq!(picked, ProtectName::Cfg { name: format!("._cfg{max:04}_x").into_bytes(), reused: true });
    }

    /// Matchers and parsers never panic, whatever they are given.
    #[test]
    fn matchers_never_panic(pattern in "\\PC{0,16}", name in "\\PC{0,16}", bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = fnmatch(&name, &pattern);
        let _ = Glob::new(&pattern).matches(&name);
        let m = InstallMask::new(&pattern);
        let _ = m.matches(&name);
        let _ = m.matches(&format!("{name}/"));
        let _ = shlex_split(&pattern);
        let ci = CollisionIgnore::new(&[pattern.as_str()], "/r/", |p| p.len() % 2 == 0);
        let _ = ci.is_ignored(&name);
        let _ = UninstallIgnore::new(&[pattern.as_str()]).is_ignored(&name);
        let _ = varexpand(&pattern, &VarMap::new());
        let cm = Confmem::parse(&bytes);
        let _ = cm.serialize();
        let text = String::from_utf8_lossy(&bytes);
        for opts in [ParseOptions::MAKE_CONF, ParseOptions::ENV_D] {
            let mut map = VarMap::new();
            let mut w = Vec::new();
            let mut reader = |_: &Path| -> std::io::Result<String> { Ok(pattern.clone()) };
            let _ = parse_config(&text, Path::new("/x/make.conf"), opts, &mut map, &mut reader, &mut w);
        }
        let _ = stack_incremental("FEATURES", [pattern.as_str(), name.as_str()], &mut Vec::new());
    }

    /// Glob semantics: a pattern without metacharacters matches only itself,
    /// and `*` + literal suffix matches anything ending in it.
    #[test]
    fn glob_literals(lit in "[a-z/._-]{0,12}", prefix in "\\PC{0,8}") {
        prop_assert!(fnmatch(&lit, &lit));
        let name = format!("{prefix}{lit}");
        let star = format!("*{lit}");
        prop_assert!(fnmatch(&name, &star));
        if !lit.is_empty() {
            let longer = format!("{lit}x");
            prop_assert!(!fnmatch(&longer, &lit));
        }
    }

    /// confmem: parse → serialize → parse is the identity on what was parsed,
    /// and serialization is a fixed point.
    #[test]
    fn confmem_round_trip(bytes in proptest::collection::vec(
        prop_oneof![Just(b' '), Just(b'\t'), Just(b'\n'), Just(b'\r'), Just(b'#'), Just(b'/'), Just(b'a'), Just(b'b'), Just(0xffu8), Just(0xc3u8), Just(0xa9u8)],
        0..80,
    )) {
        let cm = Confmem::parse(&bytes);
        let (out, skipped) = cm.serialize();
        prop_assert!(skipped.is_empty(), "parsed entries are always representable");
        let again = Confmem::parse(&out);
        let a: Vec<_> = cm.iter().collect();
        let b: Vec<_> = again.iter().collect();
        prop_assert_eq!(a, b);
        prop_assert_eq!(again.serialize().0, out);
    }

    /// Entries the format cannot carry are skipped, never written.
    #[test]
    fn confmem_unrepresentable_skipped(key in "/[a-z ]{1,8}", val in "[a-f0-9 #]{0,6}") {
        let mut cm = Confmem::new();
        cm.remember(&key, &val);
        let (out, skipped) = cm.serialize();
        let back = Confmem::parse(&out);
        if skipped.is_empty() {
            prop_assert_eq!(back.get(&key), Some(val.as_str()));
        } else {
            prop_assert!(out.is_empty());
        }
    }
}

fn md5s() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("aaaa"), Just("bbbb"), Just("cccc")]
}

fn src() -> impl Strategy<Value = SrcObject<'static>> {
    prop_oneof![
        md5s().prop_map(|m| SrcObject::File { md5: m }),
        prop_oneof![Just("t1"), Just("t2")].prop_map(|t| SrcObject::Symlink { target: t }),
    ]
}

fn dest() -> impl Strategy<Value = DestState<'static>> {
    prop_oneof![
        Just(DestState::Missing),
        Just(DestState::Other),
        md5s().prop_map(|m| DestState::File { md5: m }),
        prop_oneof![Just("t1"), Just("t2")].prop_map(|t| DestState::Symlink { target: t }),
    ]
}

fn installed() -> impl Strategy<Value = Option<InstalledEntry<'static>>> {
    prop_oneof![
        Just(None),
        Just(Some(InstalledEntry::Other)),
        md5s().prop_map(|m| Some(InstalledEntry::Obj { md5: m })),
        prop_oneof![Just("t1"), Just("t2")].prop_map(|t| Some(InstalledEntry::Sym { target: t })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Invariants of the `_protect` decision.
    #[test]
    fn decision_invariants(
        src in src(),
        dest in dest(),
        installed in installed(),
        pim in any::<bool>(),
        remembered in proptest::option::of(md5s()),
        ignore in any::<bool>(),
    ) {
        let input = ProtectInput { src, dest, installed, protect_if_modified: pim, remembered, ignore_confmem: ignore };
        let d = decide(&input);
        prop_assert_eq!(d.cfg_name.is_some(), d.protected && d.moveme);
        if !d.moveme {
            prop_assert!(!d.protected && !ignore);
            prop_assert_eq!(&d.confmem_update, &None);
        }
        // Portage's "forget accepted update" branch is unreachable.
        prop_assert_ne!(&d.confmem_update, &Some(ConfmemUpdate::Forget));
        if dest == DestState::Missing {
            prop_assert!(d.protected && d.moveme);
            prop_assert_eq!(&d.confmem_update, &None);
            prop_assert_eq!(d.force, installed.is_some());
        }
        if let Some(req) = &d.cfg_name {
            prop_assert_eq!(req.force, d.force);
        }
        // Without an installed instance and without confmem, an existing
        // destination with different content is always protected.
        if installed.is_none() && remembered.is_none() && dest != DestState::Missing {
            let same = match (src, dest) {
                (SrcObject::File { md5 }, DestState::File { md5: m }) => md5 == m,
                (SrcObject::Symlink { target }, DestState::Symlink { target: t }) => target == t,
                _ => false,
            };
            prop_assert_eq!(d.protected, !same);
        }
    }
}

/// A fake filesystem for ConfigProtect: every path under /r/etc is a
/// directory unless it has an extension.
struct Fake;

impl PathProbe for Fake {
    fn stat_is_dir(&self, p: &str) -> Option<bool> {
        (p == "/r" || p.starts_with("/r/")).then(|| !p.contains('.'))
    }
    fn lstat_is_dir(&self, p: &str) -> Option<bool> {
        self.stat_is_dir(p)
    }
}

proptest! {
    /// With sorted, de-duplicated lists (what the settings loader produces),
    /// `is_protected` is "the longest matching protect entry wins unless a
    /// mask entry at least as long matches".
    #[test]
    fn sorted_lists_mean_longest_match(
        protect in proptest::collection::btree_set("/etc(/[ab]{1,2}){0,3}", 0..5),
        mask in proptest::collection::btree_set("/etc(/[ab]{1,2}){0,3}", 0..4),
        obj in "/etc(/[ab]{1,2}){0,4}",
    ) {
        let protect: Vec<String> = protect.into_iter().collect();
        let mask: Vec<String> = mask.into_iter().collect();
        let cp = ConfigProtect::with_probe("/r", &protect, &mask, false, &Fake);
        let full = format!("/r{obj}");
        let covers = |e: &String| obj == *e || obj.starts_with(&format!("{e}/"));
        let best_p = protect.iter().filter(|e| covers(e)).map(String::len).max();
        let best_m = mask.iter().filter(|e| covers(e)).map(String::len).max();
        let expected = match (best_p, best_m) {
            (Some(p), Some(m)) => p > m,
            (Some(_), None) => true,
            (None, _) => false,
        };
        prop_assert_eq!(cp.is_protected(&full), expected);
    }
}

#[test]
fn fake_probe_sanity() {
    let cp = ConfigProtect::with_probe("/r", &["/etc"], &[] as &[&str], false, &Fake);
    assert!(cp.is_protected("/r/etc/a"));
    let _unused: HashMap<(), ()> = HashMap::new();
}

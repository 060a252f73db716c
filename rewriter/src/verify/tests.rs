//! Unit tests of the verifier's arithmetic and bookkeeping (the walk and the map have their
//! own tests beside them; whole files are verified in `testsuite/tests/verify.rs`).

use super::data::accepts_mod;
use super::report::{Counts, VerifyReport, MAX_MISMATCHES};
use super::versions::{cstr, gnu_hash, sysv_hash};
use super::Mapped;

#[test]
fn modular_fields_accept_exactly_their_range() {
    // A 32-bit field that must hold 0x100..=0x104.
    assert!(accepts_mod(0x100, 0x104, 0x102, 32));
    assert!(!accepts_mod(0x100, 0x104, 0x105, 32));
    // Negative values wrap: -4 in 32 bits.
    assert!(accepts_mod(-4, -4, 0xffff_fffc, 32));
    assert!(!accepts_mod(-4, -4, 0xffff_fffc, 64));
    // Six-bit CFA advances wrap at 64.
    assert!(accepts_mod(70, 70, 6, 6));
    // A range as wide as the field accepts anything; an empty one nothing.
    assert!(accepts_mod(0, 255, 77, 8));
    assert!(!accepts_mod(5, 4, 4, 8));
}

#[test]
fn hashes_match_the_elf_definitions() {
    assert_eq!(gnu_hash(b""), 5381);
    assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
    assert_eq!(sysv_hash(b"printf"), 0x0779_05a6);
    assert_eq!(sysv_hash(b"main"), 0x0007_37fe);
}

#[test]
fn strings_end_at_nul_and_offsets_are_checked() {
    let table = b"\0libc.so.6\0GLIBC_2.27\0";
    assert_eq!(cstr(table, 1), Some(&b"libc.so.6"[..]));
    assert_eq!(cstr(table, 11), Some(&b"GLIBC_2.27"[..]));
    assert_eq!(cstr(table, 0), Some(&b""[..]));
    assert_eq!(cstr(table, 100), None);
    assert_eq!(cstr(b"no terminator", 0), None);
}

#[test]
fn mapped_values_accept_their_images() {
    assert!(Mapped::Exact(8).accepts(8) && !Mapped::Exact(8).accepts(9));
    assert!(Mapped::Range(8, 12).accepts(12) && !Mapped::Range(8, 12).accepts(13));
    assert!(
        Mapped::Unknown.accepts(1),
        "unmapped code was reported already"
    );
    assert_eq!(Mapped::Range(8, 12).to_string(), "0x8..=0xc");
}

#[test]
fn reports_merge_counts_and_keep_the_first_mismatches() {
    let mut a = VerifyReport::default();
    a.counts.branches = 3;
    a.mismatch("branch", Some(1), Some(2), "x", "y");
    let mut b = VerifyReport::default();
    b.counts.branches = 4;
    b.counts.symbols = 1;
    b.slot_bytes = Some(4);
    for _ in 0..MAX_MISMATCHES {
        b.mismatch("symbol", None, None, "a", "b");
    }
    b.warn("absolute symbol", None, None, "a", "b");
    a.merge(b);
    assert_eq!(a.counts.branches, 7);
    assert_eq!(a.counts.symbols, 1);
    assert_eq!(a.slot_bytes, Some(4));
    assert_eq!(a.mismatch_count, MAX_MISMATCHES + 1);
    assert_eq!(a.mismatches.len(), MAX_MISMATCHES);
    assert_eq!(
        a.mismatches[0].category, "branch",
        "the first found stays first"
    );
    assert_eq!((a.warning_count, a.warnings.len()), (1, 1));
    assert!(!a.is_ok());
    let mut sum = Counts::default();
    sum.add(&a.counts);
    assert_eq!(sum.branches, 7);
}

#[test]
fn mismatches_print_addresses_and_both_values() {
    let mut r = VerifyReport::default();
    r.mismatch(
        "branch",
        Some(0x10),
        Some(0x8),
        "a reference to 0x20",
        "0x24",
    );
    assert_eq!(
        r.mismatches[0].to_string(),
        "branch at 0x10 -> 0x8: expected a reference to 0x20, found 0x24"
    );
}

//! `padtrim verify ORIG NEW`: translation validation of a rewrite.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use padtrim::verify::{verify as run_verify, VerifyReport};

use crate::input::Input;
use crate::Outcome;

/// Arguments of `padtrim verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The original ELF (as given to `padtrim rewrite`).
    pub original: PathBuf,
    /// The rewritten ELF.
    pub rewritten: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `padtrim verify`: exit 0 when the rewrite is proven right, 1 with the first mismatches.
pub fn verify(args: &VerifyArgs) -> Result<Outcome> {
    let (orig, new) = (Input::open(&args.original)?, Input::open(&args.rewritten)?);
    let (old_elf, new_elf) = (orig.elf()?, new.elf()?);
    let report = run_verify(&old_elf, &new_elf)
        .with_context(|| format!("{} -> {}", orig.name(), new.name()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&orig.name(), &new.name(), &report);
    }
    Ok(if report.is_ok() {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// `n` and the noun for it: "1 mismatch", "2 mismatches".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What each count of [`padtrim::verify::Counts`] counts, in plain words, in the order
/// they are printed (by field name; a count missing here is printed by its name).
const COUNT_LABELS: &[(&str, &str)] = &[
    ("sections", "sections paired with the original's"),
    (
        "instructions",
        "instructions identical apart from their relocated immediates",
    ),
    (
        "nop_runs",
        "nop runs (pads and alignment padding, which may change length)",
    ),
    ("sites", "patch sites whose pad and slot were checked"),
    (
        "branches",
        "branches and jumps that reach the new place of their target",
    ),
    (
        "auipc_pairs",
        "auipc pairs (calls, PC-relative and GOT accesses) from relocations",
    ),
    (
        "unrelocated_auipc",
        "auipc pairs without relocations (PLT, assembly), by decoding",
    ),
    ("absolute", "absolute %hi/%lo immediates"),
    ("gp_relative", "gp-relative accesses"),
    (
        "data_words",
        "data words under relocations (pointers) that point to the new places",
    ),
    (
        "differences",
        "differences of two addresses held in data (relative jump tables, frame ranges, \
         PC-relative words), each changed by exactly how far its addresses moved",
    ),
    (
        "dynamic_relocations",
        "dynamic relocations (.rela.dyn, .rela.plt)",
    ),
    ("got_words", "GOT words"),
    ("dynamic_entries", ".dynamic entries"),
    ("eh_frame_hdr", ".eh_frame_hdr fields and entries"),
    ("call_frames", "call frames (.eh_frame FDEs) decoded"),
    ("symbols", "symbols (.symtab and .dynsym)"),
    ("mcount_entries", "__mcount_loc entries"),
    ("islands", "trampoline islands"),
    (
        "alignment_points",
        "alignment points (aligned code, aligned slots)",
    ),
    (
        "bytes_compared",
        "bytes outside any reference, compared byte for byte",
    ),
    (
        "kernel_table_entries",
        "kernel table entries (__ex_table, kallsyms) decoded",
    ),
    (
        "output_relocations",
        "relocations of the output checked against the original's",
    ),
    ("segments", "program headers"),
    (
        "unchecked",
        "references not checked (in code the walk could not map)",
    ),
];

/// One line per category checked, then the verdict and the first mismatches.
pub fn print_report(orig: &str, new: &str, r: &VerifyReport) {
    if let Some(why) = &r.skipped {
        println!("{orig} -> {new}: not verified: {why}");
        return;
    }
    println!("{orig} -> {new}:");
    if let (Some(slot), Some(pre)) = (r.slot_bytes, r.pre_bytes) {
        println!("  slots: {slot} bytes at each function ({pre} kept before it)");
    }
    if let Ok(serde_json::Value::Object(counts)) = serde_json::to_value(&r.counts) {
        println!("  checked:");
        let known = COUNT_LABELS
            .iter()
            .map(|&(name, label)| (name, label.to_string()));
        let unknown = counts
            .keys()
            .filter(|k| COUNT_LABELS.iter().all(|(name, _)| name != k))
            .map(|k| (k.as_str(), k.replace('_', " ")));
        for (name, label) in known.chain(unknown) {
            match counts.get(name).and_then(|n| n.as_u64()) {
                Some(n) if n > 0 => println!("  {n:>9}  {label}"),
                _ => {}
            }
        }
    }
    print_mismatches(r);
}

/// The verdict line and the first mismatches (on stdout), after any warnings.
pub fn print_mismatches(r: &VerifyReport) {
    if r.warning_count > 0 {
        println!(
            "{} (not failures):",
            count(r.warning_count, "warning", "warnings")
        );
        for w in &r.warnings {
            println!("  warning: {w}");
        }
    }
    if r.is_ok() {
        println!("verified: no mismatches");
        return;
    }
    println!(
        "verification FAILED: {}{}",
        count(r.mismatch_count, "mismatch", "mismatches"),
        if r.mismatch_count > r.mismatches.len() {
            format!(" (first {} listed)", r.mismatches.len())
        } else {
            String::new()
        }
    );
    for m in &r.mismatches {
        println!("  {m}");
    }
}

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
        for (name, n) in counts.iter().filter(|(_, n)| n.as_u64() != Some(0)) {
            println!("  {:<22} {n}", name.replace('_', " "));
        }
    }
    print_mismatches(r);
}

/// The verdict line and the first mismatches (on stdout), after any warnings.
pub fn print_mismatches(r: &VerifyReport) {
    if r.warning_count > 0 {
        println!("{} warnings (not failures):", r.warning_count);
        for w in &r.warnings {
            println!("  warning: {w}");
        }
    }
    if r.is_ok() {
        println!("verified: no mismatches");
        return;
    }
    println!(
        "verification FAILED: {} mismatches{}",
        r.mismatch_count,
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

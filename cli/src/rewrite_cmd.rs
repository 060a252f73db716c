//! `padtrim rewrite`: compact pads to slots and write the result atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use padtrim::plan::Layout;
use padtrim::rewrite::{read_back, rewrite_unread, RewriteOptions, RewriteStats, Writer};
use padtrim::timing::phase;
use padtrim::verify::{verify, VerifyReport};

use crate::input::Input;
use crate::Outcome;

/// Arguments of `padtrim rewrite`.
#[derive(Args)]
pub struct RewriteArgs {
    /// The input ELF (linked with -Wl,--emit-relocs); never modified.
    pub input: PathBuf,
    /// Where to write the rewritten ELF (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Slot bytes kept at each function entry: 0, 4 (one aligned nop), 8 or 16.
    #[arg(long, default_value_t = 4, value_parser = parse_slot)]
    pub slot: u32,
    /// Pad bytes kept before each function entry.
    #[arg(long, default_value_t = 0)]
    pub pre: u32,
    /// Where freed bytes go (default: in-place for a vmlinux, pack otherwise).
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Allow a slot smaller than a kernel's ftrace patch.
    #[arg(long)]
    pub force: bool,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
    /// How a linked file is written: its own bytes placed anew (fast, small), or through
    /// `object`'s ELF builder, which re-serialises the whole file.
    #[arg(long, value_enum, default_value_t = WriterArg::Patched)]
    pub writer: WriterArg,
    /// Write the output without verifying it first (`padtrim verify` can check it later).
    #[arg(long)]
    pub no_verify: bool,
}

/// `--writer` values.
#[derive(Clone, Copy, ValueEnum)]
pub enum WriterArg {
    /// Place and patch the input's own bytes (the builder only for what that cannot express).
    Patched,
    /// Re-serialise the file through `object`'s ELF builder.
    Builder,
}

/// `--layout` values.
#[derive(Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    /// Shrink code and move what follows: a smaller file and image.
    Pack,
    /// Keep section addresses; freed bytes become nops at section ends.
    InPlace,
}

fn parse_slot(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v @ (0 | 4 | 8 | 16)) => Ok(v),
        _ => Err("slot must be 0, 4, 8 or 16".into()),
    }
}

/// `padtrim rewrite`.
pub fn rewrite(args: &RewriteArgs) -> Result<Outcome> {
    let input = Input::open(&args.input)?;
    if same_file(&args.input, &args.output) || input.is_same_file(&args.output) {
        bail!(
            "{}: output is the input file; padtrim never overwrites its input",
            input.name()
        );
    }
    let opts = RewriteOptions {
        slot: args.slot,
        pre: args.pre,
        layout: args.layout.map(|l| match l {
            LayoutArg::Pack => Layout::Pack,
            LayoutArg::InPlace => Layout::InPlace,
        }),
        force: args.force,
        writer: match args.writer {
            WriterArg::Patched => Writer::Patched,
            WriterArg::Builder => Writer::Builder,
        },
    };
    // The output is read back (parsed as any input is) before anything is written; the
    // verification parses it anyway, so it does the reading back.
    let (bytes, stats) = phase("rewrite (total)", || rewrite_unread(input.bytes(), opts))
        .with_context(|| input.name())?;
    if args.no_verify && !stats.unchanged {
        phase("read back", || read_back(&bytes)).with_context(|| input.name())?;
    }
    // Verification and the write of the temporary file are independent: run them side by
    // side; the output gets its name only once both succeeded.
    let (verified, pending) = rayon::join(
        || -> Result<Option<VerifyReport>> {
            match args.no_verify {
                true => Ok(None),
                false => Ok(Some(phase("verify (total)", || {
                    verify_output(&input, &bytes, &stats)
                })?)),
            }
        },
        || phase("write", || PendingOutput::write(&args.output, &bytes)),
    );
    let (verified, pending) = (verified?, pending?);
    pending.commit()?;
    if args.json {
        let mut json = serde_json::to_value(&stats)?;
        if let (serde_json::Value::Object(map), Some(v)) = (&mut json, &verified) {
            map.insert("verify".into(), serde_json::to_value(v)?);
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_stats(&input.name(), &args.output, &stats);
        if let Some(v) = &verified {
            print_verified(v);
        }
    }
    Ok(Outcome::Success)
}

/// Translation validation of the new bytes against the input, before anything is written:
/// a rewrite that fails it is an error (exit 2) and leaves no output.
fn verify_output(input: &Input, bytes: &[u8], stats: &RewriteStats) -> Result<VerifyReport> {
    if stats.unchanged {
        return Ok(VerifyReport {
            skipped: Some("the output is the input, unchanged".into()),
            ..VerifyReport::default()
        });
    }
    let (old, new) = rayon::join(
        || phase("verify: parse original", || input.elf()),
        || phase("verify: parse new", || read_back(bytes)),
    );
    let old = old?;
    let new = new.with_context(|| input.name())?;
    let report =
        verify(&old, &new).with_context(|| format!("{}: verifying the rewrite", input.name()))?;
    if !report.is_ok() {
        let first = report
            .mismatches
            .first()
            .map_or_else(String::new, |m| format!("; first: {m}"));
        bail!(
            "{}: the rewrite failed verification ({} mismatches{first}); nothing written \
             (--no-verify writes it anyway; `padtrim verify IN OUT` lists the mismatches)",
            input.name(),
            report.mismatch_count
        );
    }
    Ok(report)
}

fn print_verified(v: &VerifyReport) {
    if let Some(why) = &v.skipped {
        println!("  verified:            not needed ({why})");
        return;
    }
    let c = &v.counts;
    println!(
        "  verified:            {} instructions, {} branches, {} auipc pairs, {} data references, {} symbols: no mismatches{}",
        c.instructions,
        c.branches,
        c.auipc_pairs + c.unrelocated_auipc,
        c.data_words + c.differences + c.dynamic_relocations + c.got_words,
        c.symbols,
        if v.warning_count > 0 {
            format!(" ({} warnings: `padtrim verify` lists them)", v.warning_count)
        } else {
            String::new()
        }
    );
}

fn print_stats(input: &str, output: &Path, s: &RewriteStats) {
    if s.unchanged {
        println!(
            "{input}: already has {}-byte slots; {} written unchanged",
            s.slot_bytes,
            output.display()
        );
        return;
    }
    let pct = |a: u64, b: u64| {
        if a == 0 {
            0.0
        } else {
            100.0 * (a as f64 - b as f64) / a as f64
        }
    };
    println!("{input} -> {}", output.display());
    println!(
        "  sites rewritten:     {} ({}-byte slots, {:?} layout)",
        s.sites, s.slot_bytes, s.layout
    );
    println!(
        "  text:                {} -> {} bytes ({:.2}% smaller), {} bytes removed, {} spent on alignment",
        s.text_size_before,
        s.text_size_after,
        pct(s.text_size_before, s.text_size_after),
        s.bytes_removed,
        s.alignment_bytes
    );
    println!(
        "  file:                {} -> {} bytes ({:.2}% smaller)",
        s.file_size_before,
        s.file_size_after,
        pct(s.file_size_before, s.file_size_after)
    );
    if s.free_bytes > 0 {
        println!(
            "  free space (in-place): {} bytes of nops at section ends",
            s.free_bytes
        );
    }
    println!("  unrelocated fixups:  {}", s.unrelocated_fixups);
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The output, written to a hidden temporary file beside its final path and renamed into
/// place only by [`PendingOutput::commit`]; dropped uncommitted (a failed verification, an
/// error), the temporary file is removed: no partial output ever carries the output's name.
pub struct PendingOutput {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl PendingOutput {
    /// Writes `bytes` to the temporary file.
    pub fn write(path: &Path, bytes: &[u8]) -> Result<PendingOutput> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().context("output path has no file name")?;
        let tmp = dir.join(format!(
            ".{}.padtrim-{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let pending = PendingOutput {
            tmp,
            path: path.to_path_buf(),
            committed: false,
        };
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&pending.tmp)?;
            // No fsync: like objcopy and ld, durability is left to the file system (it cost
            // a third of a large rewrite's time). ext4 and tmpfs report a full disk at write
            // time, and the rename only happens once every byte was accepted.
            f.write_all(bytes)?;
            // Executables stay executable.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&pending.tmp, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            bail!("{}: cannot write: {e}", path.display());
        }
        Ok(pending)
    }

    /// Renames the temporary file to the output path.
    pub fn commit(mut self) -> Result<()> {
        if let Err(e) = std::fs::rename(&self.tmp, &self.path) {
            bail!("{}: cannot write: {e}", self.path.display());
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

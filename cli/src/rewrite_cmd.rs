//! `padtrim rewrite`: compact pads to slots and write the result atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use padtrim::plan::Layout;
use padtrim::rewrite::{
    parse_slot, prepare, prepare_insert, InsertOptions, PreShortfall, RewriteOptions, RewriteStats,
    Rewritten, Writer,
};
use padtrim::timing::phase;
use padtrim::verify::VerifyReport;

use crate::input::Input;
use crate::verify_cmd::count;
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
    #[arg(long, value_parser = layout_parser())]
    pub layout: Option<Layout>,
    /// Allow a slot smaller than a kernel's ftrace patch.
    #[arg(long)]
    pub force: bool,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
    /// How a linked file is written: its own bytes placed anew (fast, small), or through
    /// `object`'s ELF builder, which re-serialises the whole file.
    #[arg(long, value_parser = writer_parser(), default_value = "patched")]
    pub writer: Writer,
    /// Write the output without verifying it first (`padtrim verify` can check it later).
    #[arg(long)]
    pub no_verify: bool,
    /// Give slots to a program built WITHOUT pads (no -fpatchable-function-entry), linked
    /// with -Wl,-q: a 4-byte aligned slot of nops (--slot 4 or 8) goes in front of every
    /// function's first instruction; code grows and every reference is fixed. Functions are
    /// STT_FUNC symbols with a size; aliases share a slot. Calls, tail calls and function
    /// pointers go through the slot; a jump back to a function's own entry from inside it
    /// (a loop) goes behind it. No slot for: the entry point and _start, .init/.fini/PLT,
    /// setjmp/longjmp/vfork/clone/*context, the runtime's functions (padtrim_*, its mangled
    /// Rust ones) and memcpy/memmove/memset/memcmp/bcmp.
    /// The output carries a sorted __mcount_loc, so `padtrim record` traces it, and a
    /// non-allocated __patchable_function_entries of the same slots. A program
    /// whose own code has pads (linked with code that has none, a static libc say): its pads
    /// are cut to slots of the same size as a plain rewrite cuts them, the functions without
    /// a pad get slots inserted, and both tables list both (--functions selects only where
    /// slots are inserted). Refused: no relocations, a vmlinux, object files (not supported
    /// yet), a file already rewritten or inserted (it has a __mcount_loc).
    #[arg(long, conflicts_with_all = ["pre", "layout", "force"])]
    pub insert: bool,
    /// With --insert: only functions matching one of these globs (shell globs as
    /// `report --functions` takes: `*`, `?`, `[a-z]`; comma-separated).
    #[arg(long, value_delimiter = ',', requires = "insert")]
    pub functions: Vec<String>,
}

/// `--layout`: the library's layouts, by their flag spellings.
fn layout_parser() -> impl TypedValueParser<Value = Layout> {
    let values = Layout::ALL.map(|l| PossibleValue::new(l.name()).help(l.help()));
    PossibleValuesParser::new(values).try_map(|s| s.parse::<Layout>())
}

/// `--writer`: the library's writers, by their flag spellings.
fn writer_parser() -> impl TypedValueParser<Value = Writer> {
    let values = Writer::ALL.map(|w| PossibleValue::new(w.name()).help(w.help()));
    PossibleValuesParser::new(values).try_map(|s| s.parse::<Writer>())
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
    let mut pending = if args.insert {
        let opts = InsertOptions {
            slot: args.slot,
            functions: args.functions.clone(),
            writer: args.writer,
            verify: !args.no_verify,
        };
        prepare_insert(input.bytes(), &opts).with_context(|| input.name())?
    } else {
        let opts = RewriteOptions {
            slot: args.slot,
            pre: args.pre,
            layout: args.layout,
            force: args.force,
            writer: args.writer,
            verify: !args.no_verify,
        };
        prepare(input.bytes(), &opts).with_context(|| input.name())?
    };
    if let Some(short) = &pending.stats().pre_shortfall {
        eprintln!("padtrim: warning: {}: {}", input.name(), pre_warning(short));
    }
    let unchanged = pending.stats().unchanged;
    damage_for_tests(pending.unverified_bytes_mut(), unchanged)?;
    // The library hands back only a verified output (or, with --no-verify, one that parses
    // again). Verification and the write of the temporary file are independent: run them
    // side by side; the output gets its name only once both succeeded.
    let (done, written) = if args.no_verify {
        let done = pending.skip_verification().with_context(|| input.name())?;
        let written = phase("write", || PendingOutput::write(&args.output, &done.bytes));
        (done, written)
    } else {
        let (done, written) = pending.verify_alongside(input.bytes(), |bytes| {
            phase("write", || PendingOutput::write(&args.output, bytes))
        });
        (done.map_err(|e| verification_error(&input, e))?, written)
    };
    written?.commit()?;
    let Rewritten {
        stats,
        verification: verified,
        ..
    } = done;
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

/// The library's error for a rewrite of `input`: a failed verification is padtrim's own
/// fault (exit 3, [`VerificationFailed`]); anything else names the input.
fn verification_error(input: &Input, e: padtrim::Error) -> anyhow::Error {
    match e {
        padtrim::Error::VerificationFailed { mismatches, first } => VerificationFailed {
            input: input.name(),
            mismatches,
            first: (!first.is_empty()).then_some(first),
        }
        .into(),
        e => anyhow::Error::new(e).context(input.name()),
    }
}

/// A rewrite that failed its own verification: a bug in padtrim, not in the input
/// (exit 3, see `main`). Nothing was written.
#[derive(Debug)]
pub struct VerificationFailed {
    input: String,
    mismatches: usize,
    first: Option<String>,
}

impl std::fmt::Display for VerificationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let input = &self.input;
        writeln!(
            f,
            "internal error: the rewrite of {input} failed its own verification ({}{})",
            count(self.mismatches, "mismatch", "mismatches"),
            self.first
                .as_ref()
                .map_or(String::new(), |m| format!("; first: {m}")),
        )?;
        write!(
            f,
            "  The input is fine: this is a bug in padtrim, and no output was written.\n  \
             Please report it with the padtrim version ({}), the command line ({}) and the \
             input file ({input}).\n  \
             `--no-verify` writes the output anyway, unverified; `padtrim verify {input} OUT` \
             then lists every mismatch.",
            env!("CARGO_PKG_VERSION"),
            command_line(),
        )
    }
}

impl std::error::Error for VerificationFailed {}

/// This process's command line, quoted for a shell where needed (for bug reports).
fn command_line() -> String {
    let args = std::env::args_os().skip(1);
    std::iter::once("padtrim".to_string())
        .chain(args.map(|a| {
            let a = a.to_string_lossy().into_owned();
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Test hook, read by the command line only (never by the library): with
/// `PADTRIM_DEBUG_DAMAGE_OUTPUT=OFFSET`, the byte at OFFSET of the rewritten file is
/// inverted before it is verified and written. A rewrite that fails its own verification
/// is a padtrim bug, and no known input triggers one: this is the only way to reach that
/// path (exit 3) from outside, so the test suite can check what a user would see.
fn damage_for_tests(bytes: &mut [u8], unchanged: bool) -> Result<()> {
    let Some(at) = std::env::var_os("PADTRIM_DEBUG_DAMAGE_OUTPUT") else {
        return Ok(());
    };
    let at: usize = at
        .to_str()
        .and_then(|s| s.parse().ok())
        .context("PADTRIM_DEBUG_DAMAGE_OUTPUT must be a file offset")?;
    match bytes.get_mut(at) {
        Some(b) if !unchanged => *b = !*b,
        _ => bail!("PADTRIM_DEBUG_DAMAGE_OUTPUT={at}: no such byte in a rewritten file"),
    }
    Ok(())
}

/// The warning for `--pre` asking more than the pads have before their functions.
fn pre_warning(s: &PreShortfall) -> String {
    let have = if s.least == s.most {
        format!("{} bytes", s.least)
    } else {
        format!("{} to {} bytes", s.least, s.most)
    };
    let which = match (s.functions, s.of) {
        (n, of) if n == of => "the pads have".to_string(),
        (1, of) => format!("1 of {of} pads has"),
        (n, of) => format!("{n} of {of} pads have"),
    };
    if s.most == 0 {
        return format!(
            "--pre {}: {which} no bytes before the function (-fpatchable-function-entry=N \
             puts none there; N,M puts M nops), so none were kept",
            s.requested
        );
    }
    format!(
        "--pre {}: {which} only {have} before the function (the M nops of \
         -fpatchable-function-entry=N,M); kept all of those",
        s.requested
    )
}

fn print_verified(v: &VerifyReport) {
    if let Some(why) = &v.skipped {
        println!("  verified:            not needed ({why})");
        return;
    }
    let c = &v.counts;
    println!(
        "  verified:            {}, {}, {}, {}, {}: no mismatches{}",
        count(c.instructions as usize, "instruction", "instructions"),
        count(c.branches as usize, "branch", "branches"),
        count(
            (c.auipc_pairs + c.unrelocated_auipc) as usize,
            "auipc pair",
            "auipc pairs"
        ),
        count(
            (c.data_words + c.differences + c.dynamic_relocations + c.got_words) as usize,
            "data reference",
            "data references"
        ),
        count(c.symbols as usize, "symbol", "symbols"),
        if v.warning_count > 0 {
            format!(
                " ({}: `padtrim verify` lists them)",
                count(v.warning_count, "warning", "warnings")
            )
        } else {
            String::new()
        }
    );
}

/// How a size changed, in words: "1.20% smaller", "0.50% larger" or "unchanged".
fn change(before: u64, after: u64) -> String {
    if before == after {
        return "unchanged".into();
    }
    let (d, word) = match after < before {
        true => (before - after, "smaller"),
        false => (after - before, "larger"),
    };
    if before == 0 {
        return word.into();
    }
    let pct = 100.0 * d as f64 / before as f64;
    // Never "0.00% larger" for a change of a few bytes in a large file.
    if pct < 0.005 {
        format!("<0.01% {word}")
    } else {
        format!("{pct:.2}% {word}")
    }
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
    println!("{input} -> {}", output.display());
    if s.bytes_removed < 0 || s.compacted > 0 {
        println!(
            "  slots inserted:      {} ({}-byte slots)",
            s.sites, s.slot_bytes
        );
        if s.compacted > 0 {
            println!(
                "  pads compacted:      {} (to {}-byte slots, alongside)",
                s.compacted, s.slot_bytes
            );
        }
    } else {
        println!(
            "  sites rewritten:     {} ({}-byte slots, --layout {})",
            s.sites, s.slot_bytes, s.layout
        );
    }
    if let Some(why) = &s.writer_fallback {
        println!(
            "  writer:              builder (the patched writer cannot take this file: {why})"
        );
    }
    let removed = if s.bytes_removed >= 0 {
        format!(
            "{} removed",
            count(s.bytes_removed as usize, "byte", "bytes")
        )
    } else {
        format!(
            "{} added",
            count(s.bytes_removed.unsigned_abs() as usize, "byte", "bytes")
        )
    };
    println!(
        "  text:                {} -> {} bytes ({}), {removed}, {} spent on alignment",
        s.text_size_before,
        s.text_size_after,
        change(s.text_size_before, s.text_size_after),
        s.alignment_bytes
    );
    println!(
        "  file:                {} -> {} bytes ({})",
        s.file_size_before,
        s.file_size_after,
        change(s.file_size_before, s.file_size_after)
    );
    if s.free_bytes > 0 {
        println!(
            "  free space:          {} of nops at section ends (--layout in-place)",
            count(s.free_bytes as usize, "byte", "bytes")
        );
    }
    if s.slot_bytes >= 4 && s.writer.is_some() && s.kernel_tables.is_none() && !s.table {
        println!(
            "  slot table:          none added (--layout in-place keeps every address and the \
             freed bytes leave no room for __mcount_loc; --layout pack grows the code for it; \
             without it the padtrim runtime will find no slots)"
        );
    }
    println!(
        "  unrelocated fixups:  {} (PC-relative code without relocations, fixed by decoding)",
        s.unrelocated_fixups
    );
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

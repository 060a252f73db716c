//! `padtrim rewrite`: compact pads to slots and write the result atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use padtrim::plan::Layout;
use padtrim::rewrite::{rewrite as run_rewrite, RewriteOptions, RewriteStats};

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
    if same_file(&args.input, &args.output) {
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
    };
    let (bytes, stats) = run_rewrite(input.bytes(), opts).with_context(|| input.name())?;
    write_atomically(&args.output, &bytes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print_stats(&input.name(), &args.output, &stats);
    }
    Ok(Outcome::Success)
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

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it into place:
/// a failure (full disk, unwritable directory) leaves no partial output behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
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
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // Executables stay executable.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        bail!("{}: cannot write: {e}", path.display());
    }
    Ok(())
}

//! Rewrites a RISC-V ELF file through the library's public API alone: 4-byte slots, the
//! default layout, the output proven right before it is written.
//!
//! ```sh
//! cargo run --release -p padtrim-rewriter --example rewrite -- IN OUT
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        eprintln!("usage: rewrite IN OUT");
        return ExitCode::from(2);
    };
    match run(input, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rewrite: {input}: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(input: &str, output: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(input)?;
    let done = padtrim::rewrite(&bytes, &padtrim::RewriteOptions::default())?;
    std::fs::write(output, &done.bytes)?;
    // A program stays a program: the output gets the input's permissions.
    std::fs::set_permissions(output, std::fs::metadata(input)?.permissions())?;
    let s = &done.stats;
    println!(
        "sites rewritten:   {} ({}-byte slots, --layout {})",
        s.sites, s.slot_bytes, s.layout
    );
    println!(
        "code:              {} -> {} bytes ({} removed, {} spent on alignment)",
        s.text_size_before, s.text_size_after, s.bytes_removed, s.alignment_bytes
    );
    println!(
        "file:              {} -> {} bytes",
        s.file_size_before, s.file_size_after
    );
    println!(
        "__mcount_loc:      {}",
        if s.table {
            "added"
        } else {
            "not added (no room)"
        }
    );
    match done.verification {
        Some(v) if v.skipped.is_none() => println!(
            "verified:          {} instructions, {} symbols: no mismatches",
            v.counts.instructions, v.counts.symbols
        ),
        Some(v) => println!(
            "verified:          not needed ({})",
            v.skipped.unwrap_or_default()
        ),
        None => println!("verified:          no"),
    }
    Ok(())
}

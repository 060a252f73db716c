//! `padtrim report` and `padtrim check`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use padtrim::report::check::{check as run_check, CheckOptions, Verdict};
use padtrim::report::{Report, ReportDiff};
use padtrim::scan::scan;

use crate::input::Input;
use crate::Outcome;

/// Arguments of `padtrim report`.
#[derive(Args)]
pub struct ReportArgs {
    /// The ELF file (object, executable, shared object or vmlinux).
    pub file: PathBuf,
    /// Slot size in bytes the savings projection assumes.
    #[arg(long, default_value_t = 4, value_parser = parse_slot)]
    pub slot: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// How many functions the table lists.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Compare with a saved `report --json` and print the differences.
    #[arg(long, value_name = "OLD.json")]
    pub baseline: Option<PathBuf>,
}

/// Arguments of `padtrim check`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("gate").required(true).multiple(true).args(["max_pad", "baseline", "min_sites"])))]
pub struct CheckArgs {
    /// The ELF file to gate.
    pub file: PathBuf,
    /// Fail when any pad is larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_pad: Option<u32>,
    /// Fail when any function's pad grew, the total grew, or sites were lost versus this report.
    #[arg(long, value_name = "REPORT.json")]
    pub baseline: Option<PathBuf>,
    /// Fail when fewer than N sites are found.
    #[arg(long, value_name = "N")]
    pub min_sites: Option<usize>,
    /// Do not fail on zero table entries.
    #[arg(long)]
    pub allow_zero_entries: bool,
    /// Do not fail on invalid table entries (outside text, mid-instruction, misplaced).
    #[arg(long)]
    pub allow_invalid_entries: bool,
    /// Print the verdict and every finding as JSON.
    #[arg(long)]
    pub json: bool,
    /// Output format for findings.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How `check` prints findings.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One line per finding.
    Text,
    /// GitHub Actions `::error` annotations.
    Github,
}

fn parse_slot(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v @ (0 | 4 | 8 | 16)) => Ok(v),
        _ => Err("slot must be 0, 4, 8 or 16".into()),
    }
}

/// Scans `path` and builds its report.
pub fn build_report(path: &std::path::Path, slot: u32) -> Result<Report> {
    let input = Input::open(path)?;
    let file = input.elf()?;
    let scan = scan(&file).with_context(|| input.name())?;
    if scan.source == padtrim::scan::TableSource::None {
        anyhow::bail!(
            "{}: no {} table (was it built with -fpatchable-function-entry?)",
            input.name(),
            padtrim::scan::TABLE_SECTION
        );
    }
    Ok(Report::new(&input.name(), &file, &scan, slot))
}

fn load_baseline(path: &PathBuf) -> Result<Report> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read baseline", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a padtrim report --json", path.display()))
}

/// `padtrim report`.
pub fn report(args: &ReportArgs) -> Result<Outcome> {
    let report = build_report(&args.file, args.slot)?;
    if let Some(base) = &args.baseline {
        let diff = ReportDiff::new(&load_baseline(base)?, &report);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&diff)?);
        } else {
            print!("{}", diff.to_text());
        }
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text(args.top));
    }
    let bad = report.zero_entries + report.invalid_entries;
    if bad > 0 {
        let first = &report.problems[0];
        anyhow::bail!(
            "{}: {} of {} table entries are unusable (first: {:#x} {})",
            report.file,
            bad,
            report.sites,
            first.address,
            first.reason
        );
    }
    Ok(Outcome::Success)
}

/// `padtrim check`.
pub fn check(args: &CheckArgs) -> Result<Outcome> {
    let inputs = build_report(&args.file, 4).and_then(|report| {
        let baseline = args.baseline.as_ref().map(load_baseline).transpose()?;
        Ok((report, baseline))
    });
    let (report, baseline) = match inputs {
        Ok(inputs) => inputs,
        Err(e) => {
            // Unusable input (exit 2): CI formats still get a verdict to show.
            print_unusable(&args.file, &e, args);
            return Err(e);
        }
    };
    let opts = CheckOptions {
        max_pad: args.max_pad,
        baseline,
        min_sites: args.min_sites,
        allow_zero_entries: args.allow_zero_entries,
        allow_invalid_entries: args.allow_invalid_entries,
    };
    let verdict = run_check(&report, &opts);
    print_verdict(&report, &verdict, args);
    Ok(if verdict.pass {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// `%`, CR and LF escaped for a GitHub Actions workflow command.
fn github_escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command property value (`file=...`): also `:` and `,` escaped.
fn github_property(text: &str) -> String {
    github_escape(text).replace(':', "%3A").replace(',', "%2C")
}

/// What `check --json` and `--format github` print when the input is unusable; the error
/// line itself goes to stderr as for every command.
fn print_unusable(file: &std::path::Path, error: &anyhow::Error, args: &CheckArgs) {
    let file = file.display().to_string();
    if args.json {
        let v = serde_json::json!({
            "file": file,
            "pass": false,
            "error": format!("{error:#}"),
            "findings": [],
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if let Format::Github = args.format {
        println!(
            "::error file={},title=padtrim check (unusable input)::{}",
            github_property(&file),
            github_escape(&format!("{error:#}"))
        );
    }
}

fn print_verdict(report: &Report, verdict: &Verdict, args: &CheckArgs) {
    if args.json {
        let v = serde_json::json!({
            "file": report.file,
            "pass": verdict.pass,
            "sites": verdict.sites,
            "usable_sites": verdict.usable_sites,
            "zero_entries": report.zero_entries,
            "invalid_entries": report.invalid_entries,
            "pad_bytes_total": report.pad_bytes_total,
            "findings": verdict.findings,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    for f in &verdict.findings {
        match args.format {
            Format::Text => println!("{}: {}", report.file, f.message),
            Format::Github => println!(
                "::error file={},title=padtrim check ({})::{}",
                github_property(&report.file),
                f.kind,
                github_escape(&f.message)
            ),
        }
    }
    if verdict.pass {
        println!(
            "{}: ok: {} sites, {} pad bytes",
            report.file,
            report.usable_sites(),
            report.pad_bytes_total
        );
    } else {
        eprintln!(
            "{}: check failed: {} findings",
            report.file,
            verdict.findings.len()
        );
    }
}

//! `padtrim report` and `padtrim check`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use padtrim::report::check::{
    check as run_check, check_many, CheckOptions, ManyVerdict, Verdict, Worst,
};
use padtrim::report::many::{Baseline, ManyReports};
use padtrim::report::{counted, Report, ReportDiff, SortKey, TableOptions};
use padtrim::rewrite::parse_slot;

use crate::input::Input;
use crate::Outcome;

/// Arguments of `padtrim report`.
#[derive(Args)]
#[command(after_help = REPORT_AFTER_HELP, after_long_help = report_long_help())]
pub struct ReportArgs {
    /// ELF files (object, executable, shared object, vmlinux, kernel module), or
    /// directories to search for them. With more than one, or a directory: a report per
    /// file and their total; files found in directories that are not RISC-V ELF files
    /// with a patch table are skipped and counted.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Slot size in bytes the savings projection assumes.
    #[arg(long, default_value_t = 4, value_parser = parse_slot)]
    pub slot: u32,
    /// Print one JSON object (the whole report: every function) instead of the table; for
    /// many files, `{"files": [report...], "total": {...}}`.
    #[arg(long)]
    pub json: bool,
    /// How many functions the table lists; 0 lists them all [default: 20 in the text
    /// report, all with --csv/--tsv].
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// List every function (the same as --top 0).
    #[arg(long, conflicts_with_all = ["top", "json", "baseline"])]
    pub all: bool,
    /// Order of the function table: size (largest pads first), name or address.
    #[arg(long, value_enum, value_name = "KEY", conflicts_with_all = ["json", "baseline"])]
    pub sort: Option<SortArg>,
    /// List only the functions whose name matches GLOB (shell-style: `*`, `?`, `[a-z]`,
    /// `[!a-z]`); repeat it or separate globs with commas. The text report says how many
    /// functions matched.
    #[arg(
        long,
        value_name = "GLOB",
        value_delimiter = ',',
        action = clap::ArgAction::Append,
        conflicts_with_all = ["json", "baseline"]
    )]
    pub functions: Vec<String>,
    /// Print the function table as CSV instead of the report: a header row, then one row
    /// per function (columns: see --help).
    #[arg(long, conflicts_with_all = ["json", "baseline", "tsv"])]
    pub csv: bool,
    /// Print the function table as TSV instead of the report: a header row, then one row
    /// per function (columns: see --help).
    #[arg(long, conflicts_with_all = ["json", "baseline"])]
    pub tsv: bool,
    /// Compare with a saved `report --json` and print the differences (a many-file report
    /// is matched to the files by path).
    #[arg(long, value_name = "OLD.json")]
    pub baseline: Option<PathBuf>,
    /// Project `rewrite --insert` on a file built without pads: the functions that would get
    /// a slot (--slot 4 or 8; --functions selects them, `*` and `?` only), the bytes added
    /// (slots and alignment), their share of the code, and the `__mcount_loc` bytes.
    #[arg(long, conflicts_with_all = ["baseline", "csv", "tsv", "sort", "all", "top"])]
    pub insert: bool,
}

/// `--sort` keys.
#[derive(Clone, Copy, ValueEnum)]
pub enum SortArg {
    /// Largest pads first, then by pad address.
    Size,
    /// By function name.
    Name,
    /// By section, then pad address.
    Address,
}

/// The text table's columns, in words (`report -h` and `--help`).
const REPORT_AFTER_HELP: &str = "The function table: bytes = pad size, pre = pad bytes before \
     the function symbol, kind = the nops it holds, align = the largest power of two (up to \
     64) dividing the pad address (2: not 4-byte aligned). --help lists the --csv/--tsv \
     columns.";

/// What `report --help` adds after the options: the table's columns, one per line.
fn report_long_help() -> String {
    let mut text = REPORT_AFTER_HELP.replace(" --help lists the --csv/--tsv columns.", "");
    text.push_str(
        "\n\nWith --csv or --tsv, the function table has one row per patch site, after a \
         header row naming these columns, in this order:\n",
    );
    for (name, what) in padtrim::report::FUNCTION_COLUMNS {
        text.push_str(&format!("  {name:<12} {what}\n"));
    }
    text.push_str(
        "Addresses are hexadecimal (0x...), sizes decimal. CSV quotes a field that holds a \
         comma, a quote or a line break; TSV writes a tab, line break or backslash in a field \
         as \\t, \\n, \\r, \\\\.",
    );
    text
}

/// `padtrim report --insert`: what `rewrite --insert` would add, per file.
fn report_insert(args: &ReportArgs) -> Result<Outcome> {
    let mut all = Vec::new();
    for path in &args.files {
        let input = Input::open(path)?;
        let p = padtrim::rewrite::project_insert_bytes(input.bytes(), &args.functions, args.slot)
            .with_context(|| input.name())?;
        if !args.json {
            let share = if p.text_size > 0 {
                100.0 * p.bytes_added as f64 / p.text_size as f64
            } else {
                0.0
            };
            println!(
                "{}: rewrite --insert --slot {} would add",
                input.name(),
                args.slot
            );
            println!(
                "  slots:      {} functions ({} skipped: entry point, setjmp-like, runtime helpers)",
                p.sites, p.skipped
            );
            println!(
                "  code:       {} bytes ({} of slots, {} of alignment, net) = {share:.2}% of {} bytes",
                p.bytes_added, p.slot_bytes, p.alignment, p.text_size
            );
            if p.compacted > 0 {
                println!(
                    "  pads:       {} already there, cut to {}-byte slots alongside ({} bytes freed, \
                     before alignment)",
                    p.compacted, args.slot, p.pad_bytes_freed
                );
            }
            println!("  table:      {} bytes of __mcount_loc", p.table_bytes);
        }
        all.push((input.name(), p));
    }
    if args.json {
        let v: Vec<_> = all
            .iter()
            .map(|(name, p)| serde_json::json!({"file": name, "insert": p}))
            .collect();
        let v = if v.len() == 1 {
            v[0].clone()
        } else {
            serde_json::Value::Array(v)
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(Outcome::Success)
}

/// Arguments of `padtrim check`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("gate").required(true).multiple(true).args(["max_pad", "baseline", "min_sites"])))]
pub struct CheckArgs {
    /// The ELF files, or directories to search for them (recursively; what is not a RISC-V
    /// ELF file with a patch table is skipped there). Exit status: the worst file's.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Fail when any pad is larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_pad: Option<u32>,
    /// Fail when any function's pad grew, the total grew, or sites were lost versus this
    /// report (a many-file report is matched to the files by path; its files that are gone
    /// fail too).
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

/// Scans `path` and builds its report.
pub fn build_report(path: &std::path::Path, slot: u32) -> Result<Report> {
    let input = Input::open(path)?;
    padtrim::report(&input.name(), input.bytes(), slot).with_context(|| input.name())
}

fn load_baseline(path: &PathBuf) -> Result<Baseline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read baseline", path.display()))?;
    Baseline::from_json(&text)
        .with_context(|| format!("{}: not a padtrim report --json", path.display()))
}

/// The one file, when one file (not a directory) is given: the command works as it always
/// did on one file.
fn single(files: &[PathBuf]) -> Option<&PathBuf> {
    match files {
        [file] if !file.is_dir() => Some(file),
        _ => None,
    }
}

/// The baseline report for one file (`path` is the baseline's path, for the message).
fn baseline_for<'b>(
    baseline: &'b Baseline,
    path: &std::path::Path,
    file: &str,
) -> Result<&'b Report> {
    baseline.for_single_file(file).with_context(|| {
        format!(
            "{}: the baseline has no report for {file} (it has {})",
            path.display(),
            counted(baseline.reports.len() as u64, "file", "files")
        )
    })
}

/// The function table options the flags ask for.
fn table_options(args: &ReportArgs) -> TableOptions {
    let delimited = args.csv || args.tsv;
    TableOptions {
        // The text report lists 20 by default, the machine-readable tables everything.
        top: match (args.all, args.top) {
            (true, _) | (false, Some(0)) => None,
            (false, Some(n)) => Some(n),
            (false, None) if delimited => None,
            (false, None) => Some(20),
        },
        sort: match args.sort {
            None | Some(SortArg::Size) => SortKey::Size,
            Some(SortArg::Name) => SortKey::Name,
            Some(SortArg::Address) => SortKey::Address,
        },
        patterns: args.functions.clone(),
    }
}

/// `padtrim report`.
pub fn report(args: &ReportArgs) -> Result<Outcome> {
    if args.insert {
        return report_insert(args);
    }
    let Some(file) = single(&args.files) else {
        return report_several(args);
    };
    let report = build_report(file, args.slot)?;
    if let Some(base) = &args.baseline {
        let baseline = load_baseline(base)?;
        let diff = ReportDiff::new(baseline_for(&baseline, base, &report.file)?, &report);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&diff)?);
        } else {
            print!("{}", diff.to_text());
        }
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let table = table_options(args);
        if args.csv || args.tsv {
            print!(
                "{}",
                report.functions_delimited(&table, if args.csv { ',' } else { '\t' })
            );
        } else {
            print!("{}", report.to_text_with(&table));
        }
    }
    if let Some(message) = report.unusable_entries_message() {
        anyhow::bail!(message);
    }
    Ok(Outcome::Success)
}

/// `padtrim report` on many files or a directory: each file's report and the total.
fn report_several(args: &ReportArgs) -> Result<Outcome> {
    let baseline = args.baseline.as_ref().map(load_baseline).transpose()?;
    let many = padtrim::report_many(&args.files, args.slot);
    nothing_found(&many, &args.files)?;
    if let Some(baseline) = &baseline {
        let diffs = many.diff(baseline);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&diffs)?);
        } else {
            print!("{}", diffs.to_text());
        }
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&many)?);
    } else {
        let table = table_options(args);
        if args.csv || args.tsv {
            print!(
                "{}",
                many.functions_delimited(&table, if args.csv { ',' } else { '\t' })
            );
        } else {
            print!("{}", many.to_text_with(&table));
        }
    }
    let mut unusable = false;
    for e in &many.errors {
        eprintln!("padtrim: {}: {}", e.file, e.error);
        unusable = true;
    }
    for message in many
        .files
        .iter()
        .filter_map(Report::unusable_entries_message)
    {
        eprintln!("padtrim: {message}");
        unusable = true;
    }
    Ok(if unusable {
        Outcome::Unusable
    } else {
        Outcome::Success
    })
}

/// Paths that hold no file at all to report are unusable input.
fn nothing_found(many: &ManyReports, paths: &[PathBuf]) -> Result<()> {
    if many.files.is_empty() && many.errors.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!(
            "{}: no RISC-V ELF file with a patch table{}",
            names.join(", "),
            many.total
                .skipped
                .describe()
                .map_or_else(String::new, |s| format!(" ({s})"))
        );
    }
    Ok(())
}

/// `padtrim check`.
pub fn check(args: &CheckArgs) -> Result<Outcome> {
    let Some(file) = single(&args.files) else {
        return check_several(args);
    };
    let inputs = build_report(file, 4).and_then(|report| {
        let baseline = match &args.baseline {
            Some(path) => {
                let baseline = load_baseline(path)?;
                Some(baseline_for(&baseline, path, &report.file)?.clone())
            }
            None => None,
        };
        Ok((report, baseline))
    });
    let (report, baseline) = match inputs {
        Ok(inputs) => inputs,
        Err(e) => {
            // Unusable input (exit 2): CI formats still get a verdict to show.
            print_unusable(file, &e, args);
            return Err(e);
        }
    };
    let opts = CheckOptions {
        baseline,
        ..check_options(args)
    };
    let verdict = run_check(&report, &opts);
    print_verdict(&report, &verdict, args);
    Ok(if verdict.pass {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}

/// The gate the flags ask for (the baseline aside).
fn check_options(args: &CheckArgs) -> CheckOptions {
    CheckOptions {
        max_pad: args.max_pad,
        baseline: None,
        min_sites: args.min_sites,
        allow_zero_entries: args.allow_zero_entries,
        allow_invalid_entries: args.allow_invalid_entries,
    }
}

/// `padtrim check` on many files or a directory: every file gated, the worst one's exit.
fn check_several(args: &CheckArgs) -> Result<Outcome> {
    let inputs = args
        .baseline
        .as_ref()
        .map(load_baseline)
        .transpose()
        .and_then(|baseline| {
            let many = padtrim::report_many(&args.files, 4);
            nothing_found(&many, &args.files)?;
            Ok((many, baseline))
        });
    let (many, baseline) = match inputs {
        Ok(inputs) => inputs,
        Err(e) => {
            let names: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
            print_unusable(std::path::Path::new(&names.join(", ")), &e, args);
            return Err(e);
        }
    };
    let verdict = check_many(&many, &check_options(args), baseline.as_ref());
    print_many_verdict(&verdict, args);
    Ok(match verdict.worst {
        Worst::Pass => Outcome::Success,
        Worst::Failed => Outcome::CheckFailed,
        Worst::Unusable => Outcome::Unusable,
    })
}

fn print_many_verdict(verdict: &ManyVerdict, args: &CheckArgs) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(verdict).unwrap_or_default()
        );
    }
    for f in &verdict.files {
        if let Some(error) = &f.error {
            eprintln!("padtrim: {}: {error}", f.file);
            if !args.json {
                if let Format::Github = args.format {
                    println!(
                        "::error file={},title=padtrim check (unusable input)::{}",
                        github_property(&f.file),
                        github_escape(&format!("{}: {error}", f.file))
                    );
                }
            }
            continue;
        }
        if args.json {
            continue;
        }
        for finding in &f.findings {
            match args.format {
                Format::Text => println!("{}: {}", f.file, finding.message),
                Format::Github => println!(
                    "::error file={},title=padtrim check ({})::{}",
                    github_property(&f.file),
                    finding.kind,
                    github_escape(&finding.message)
                ),
            }
        }
        if f.pass {
            println!(
                "{}: ok: {}, {}",
                f.file,
                counted(f.usable_sites as u64, "site", "sites"),
                counted(f.pad_bytes_total, "pad byte", "pad bytes")
            );
        } else {
            eprintln!(
                "{}: check failed: {}",
                f.file,
                counted(f.findings.len() as u64, "finding", "findings")
            );
        }
    }
    if !args.json {
        if verdict.pass {
            println!("{}", verdict.summary());
        } else {
            eprintln!("{}", verdict.summary());
        }
    }
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
            "{}: ok: {}, {}",
            report.file,
            counted(report.usable_sites() as u64, "site", "sites"),
            counted(report.pad_bytes_total, "pad byte", "pad bytes")
        );
    } else {
        eprintln!(
            "{}: check failed: {}",
            report.file,
            counted(verdict.findings.len() as u64, "finding", "findings")
        );
    }
}

//! `padtrim report` against binutils, for every corpus artifact: the JSON must agree with
//! what readelf and objdump show, and with what the compiler flags asked for.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use padtrim_testsuite::binutils::{self, Insn, EF_RISCV_RVC};
use padtrim_testsuite::{corpus, padtrim, Artifact, ArtifactKind, Linkage};
use serde_json::Value;

/// Collects every mismatch of one artifact instead of stopping at the first.
struct Problems<'a> {
    artifact: &'a Artifact,
    list: Vec<String>,
}

impl Problems<'_> {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.list
                .push(format!("{}: {}", self.artifact.name, what()));
        }
    }
}

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("<missing>")
}

/// Largest power of two dividing `addr`, capped at 64 (the contract's `align`).
fn align_of(addr: u64) -> u64 {
    if addr == 0 {
        64
    } else {
        (1u64 << addr.trailing_zeros()).min(64)
    }
}

fn check_artifact(a: &Artifact) -> Vec<String> {
    let mut p = Problems {
        artifact: a,
        list: Vec::new(),
    };
    let out = padtrim()
        .arg("report")
        .arg("--json")
        .arg(&a.path)
        .output()
        .expect("run padtrim");
    if !out.status.success() {
        p.check(false, || {
            format!(
                "report --json exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        return p.list;
    }
    let report: Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            p.check(false, || format!("invalid JSON: {e}"));
            return p.list;
        }
    };

    // Header-level facts.
    let hdr = binutils::header(&a.path);
    let class = if hdr.class64 { "elf64" } else { "elf32" };
    p.check(text(&report, "class") == class, || {
        format!("class {} != {class}", text(&report, "class"))
    });
    let kind = match (a.kind, a.linkage) {
        (ArtifactKind::Object, _) => "relocatable",
        (ArtifactKind::SharedLib, _) => "shared",
        (ArtifactKind::Executable, Linkage::Pie) => "pie",
        (ArtifactKind::Executable, _) => "executable",
    };
    p.check(text(&report, "kind") == kind, || {
        format!("kind {} != {kind}", text(&report, "kind"))
    });
    let rvc_flag = hdr.flags & EF_RISCV_RVC != 0;
    p.check(
        report.get("rvc").and_then(Value::as_bool) == Some(rvc_flag),
        || format!("rvc {:?} != e_flags {rvc_flag}", report.get("rvc")),
    );

    // The table, from binutils.
    let sites = binutils::table_sites(&a.path);
    let entries = binutils::pad_table(&a.path);
    p.check(num(&report, "sites") == Some(sites), || {
        format!("sites {:?} != {sites} (readelf)", num(&report, "sites"))
    });
    p.check(num(&report, "zero_entries") == Some(0), || {
        format!("zero_entries {:?} != 0", num(&report, "zero_entries"))
    });
    p.check(num(&report, "invalid_entries") == Some(0), || {
        format!("invalid_entries {:?} != 0", num(&report, "invalid_entries"))
    });

    let empty = Vec::new();
    let functions = report
        .get("functions")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    p.check(functions.len() as u64 == sites, || {
        format!("{} function rows for {sites} sites", functions.len())
    });
    let expected: HashSet<(String, u64)> = entries
        .iter()
        .map(|e| (e.section.clone(), e.address))
        .collect();
    let reported: HashSet<(String, u64)> = functions
        .iter()
        .map(|f| {
            (
                text(f, "section").to_string(),
                num(f, "pad_address").unwrap_or(u64::MAX),
            )
        })
        .collect();
    for missing in expected.difference(&reported) {
        p.check(false, || {
            format!(
                "table entry {}+{:#x} has no function row",
                missing.0, missing.1
            )
        });
    }
    for extra in reported.difference(&expected) {
        p.check(false, || {
            format!(
                "function row at {}+{:#x} is not a table entry",
                extra.0, extra.1
            )
        });
    }

    // Each row against objdump and the symbol table.
    let insns = binutils::disassemble(&a.path);
    let index = binutils::insn_index(&insns);
    let symbols = binutils::symbols(&a.path);
    let sections = binutils::sections(&a.path);
    let mut pad_sum = 0;
    let mut per_section: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut histogram: BTreeMap<u64, u64> = BTreeMap::new();
    for f in functions {
        let name = text(f, "name");
        let section = text(f, "section");
        let (Some(pad_address), Some(address), Some(pad_bytes), Some(pad_insns), Some(pre_bytes)) = (
            num(f, "pad_address"),
            num(f, "address"),
            num(f, "pad_bytes"),
            num(f, "pad_insns"),
            num(f, "pre_bytes"),
        ) else {
            p.check(false, || format!("function row with missing numbers: {f}"));
            continue;
        };
        let at = format!("{name} ({section}+{pad_address:#x})");
        pad_sum += pad_bytes;
        *histogram.entry(pad_bytes).or_default() += 1;
        let s = per_section.entry(section.to_string()).or_default();
        s.0 += 1;
        s.1 += pad_bytes;

        // The nop run objdump shows at the pad.
        let run: Vec<&Insn> = match index.get(&(section, pad_address)) {
            Some(&i) => insns[i..]
                .iter()
                .take_while(|n| n.section == section && (n.is_nop() || n.is_c_nop()))
                .collect(),
            None => Vec::new(),
        };
        let run_bytes: u64 = run.iter().map(|n| u64::from(n.len)).sum();
        p.check(run.len() as u64 == pad_insns, || {
            format!(
                "{at}: pad_insns {pad_insns}, objdump shows {} nops",
                run.len()
            )
        });
        p.check(run_bytes == pad_bytes, || {
            format!("{at}: pad_bytes {pad_bytes}, objdump shows {run_bytes}")
        });
        let objdump_kind = if run.is_empty() {
            "none"
        } else if run.iter().all(|n| n.is_c_nop()) {
            "c.nop"
        } else if run.iter().all(|n| n.is_nop()) {
            "nop"
        } else {
            "mixed"
        };
        p.check(text(f, "nop_kind") == objdump_kind, || {
            format!(
                "{at}: nop_kind {} but objdump shows {objdump_kind}",
                text(f, "nop_kind")
            )
        });
        // ... and what the flags asked for.
        p.check(pad_insns == u64::from(a.pad_nops), || {
            format!("{at}: pad_insns {pad_insns}, built with {}", a.pad_nops)
        });
        p.check(text(f, "nop_kind") == a.nop_kind(), || {
            format!(
                "{at}: nop_kind {}, built for {}",
                text(f, "nop_kind"),
                a.nop_kind()
            )
        });
        let expected_pre = u64::from(a.pre_nops * a.nop_bytes());
        p.check(pre_bytes == expected_pre, || {
            format!("{at}: pre_bytes {pre_bytes} != {expected_pre}")
        });
        p.check(address == pad_address + pre_bytes, || {
            format!("{at}: address {address:#x} != pad_address + pre_bytes")
        });
        let symbol_ok = symbols.iter().any(|s| {
            s.name == name
                && s.kind == "FUNC"
                && s.value == address
                && (a.kind != ArtifactKind::Object
                    || s.section_index.map(|i| sections[i].name.as_str()) == Some(section))
        });
        p.check(symbol_ok, || {
            format!("{at}: no FUNC symbol {name} at {address:#x} in readelf -s")
        });
        p.check(num(f, "align") == Some(align_of(pad_address)), || {
            format!(
                "{at}: align {:?} != {}",
                num(f, "align"),
                align_of(pad_address)
            )
        });
        p.check(text(f, "state") == "nops", || {
            format!("{at}: state {}", text(f, "state"))
        });
    }

    // Rows are grouped by section and sorted by pad address inside each.
    let mut seen_sections: Vec<&str> = Vec::new();
    for pair in functions.windows(2) {
        let (s0, s1) = (text(&pair[0], "section"), text(&pair[1], "section"));
        if s0 == s1 {
            p.check(
                num(&pair[0], "pad_address") < num(&pair[1], "pad_address"),
                || format!("rows not sorted at {s0}+{:?}", num(&pair[1], "pad_address")),
            );
        } else {
            p.check(!seen_sections.contains(&s1), || {
                format!("rows of {s1} are not contiguous")
            });
            seen_sections.push(s0);
        }
    }

    // Totals.
    p.check(num(&report, "pad_bytes_total") == Some(pad_sum), || {
        format!(
            "pad_bytes_total {:?} != sum of rows {pad_sum}",
            num(&report, "pad_bytes_total")
        )
    });
    p.check(pad_sum == sites * u64::from(a.pad_bytes()), || {
        format!("pad bytes {pad_sum} != {sites} sites x {}", a.pad_bytes())
    });
    let json_hist: BTreeMap<u64, u64> = report
        .get("histogram")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    p.check(json_hist.values().sum::<u64>() == sites, || {
        format!("histogram {json_hist:?} does not sum to {sites}")
    });
    p.check(json_hist == histogram, || {
        format!("histogram {json_hist:?} != rows {histogram:?}")
    });

    let json_sections = report
        .get("sections")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let section_sites: u64 = json_sections.iter().filter_map(|s| num(s, "sites")).sum();
    p.check(section_sites == sites, || {
        format!("sections' sites sum to {section_sites}, not {sites}")
    });
    let mut text_bytes = 0;
    for s in json_sections {
        let name = text(s, "name");
        let (rows, bytes) = per_section.get(name).copied().unwrap_or((0, 0));
        p.check(num(s, "sites") == Some(rows), || {
            format!("section {name}: sites {:?} != {rows} rows", num(s, "sites"))
        });
        p.check(num(s, "pad_bytes") == Some(bytes), || {
            format!(
                "section {name}: pad_bytes {:?} != {bytes}",
                num(s, "pad_bytes")
            )
        });
        let size = num(s, "size").unwrap_or(0);
        text_bytes += size;
        match sections
            .iter()
            .find(|h| h.name == name && h.flags.contains('X'))
        {
            Some(h) => {
                p.check(h.size == size, || {
                    format!("section {name}: size {size} != readelf {}", h.size)
                });
                if a.kind != ArtifactKind::Object {
                    p.check(num(s, "address") == Some(h.address), || {
                        format!(
                            "section {name}: address {:?} != readelf {:#x}",
                            num(s, "address"),
                            h.address
                        )
                    });
                }
            }
            None => p.check(false, || {
                format!("section {name} is not an executable section in readelf -S")
            }),
        }
    }
    for name in per_section.keys() {
        p.check(
            json_sections.iter().any(|s| text(s, "name") == name),
            || format!("section {name} has rows but no sections entry"),
        );
    }
    p.check(num(&report, "text_bytes") == Some(text_bytes), || {
        format!(
            "text_bytes {:?} != sum of sections {text_bytes}",
            num(&report, "text_bytes")
        )
    });
    if let (Some(share), true) = (
        report.get("pad_share_of_text").and_then(Value::as_f64),
        text_bytes > 0,
    ) {
        let expect = pad_sum as f64 / text_bytes as f64;
        p.check((share - expect).abs() < 1e-9, || {
            format!("pad_share_of_text {share} != {expect}")
        });
    } else {
        p.check(false, || "pad_share_of_text missing".to_string());
    }
    let slot = num(&report, "slot_bytes");
    p.check(slot == Some(4), || {
        format!("slot_bytes {slot:?} != 4 (default)")
    });
    let saving = report.get("projected_saving_bytes").and_then(Value::as_i64);
    let ceiling = pad_sum as i64 - sites as i64 * 4;
    p.check(saving.is_some_and(|s| s <= ceiling.max(0)), || {
        format!(
            "projected_saving_bytes {:?} exceeds the pad bytes above 4-byte slots ({ceiling})",
            report.get("projected_saving_bytes")
        )
    });
    p.check(
        report.get("file").and_then(Value::as_str) == Some(&*a.path.to_string_lossy()),
        || format!("file {:?}", report.get("file")),
    );
    p.check(
        report.get("entry_offsets").is_some_and(Value::is_object),
        || "entry_offsets missing".to_string(),
    );

    // The text report mentions the site count.
    let out = padtrim()
        .arg("report")
        .arg(&a.path)
        .output()
        .expect("run padtrim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    p.check(out.status.success(), || {
        format!("report (text) exited {}", out.status)
    });
    let mentions = stdout.lines().any(|l| {
        l.contains("sites")
            && l.split(|c: char| !c.is_ascii_digit())
                .any(|t| t == sites.to_string())
    });
    p.check(mentions, || {
        format!("text report does not mention {sites} sites:\n{stdout}")
    });
    p.list
}

#[test]
fn report_json_agrees_with_binutils_on_every_artifact() {
    let all = corpus();
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(a) = all.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let found = check_artifact(a);
                    problems.lock().unwrap().extend(found);
                }
            });
        }
    });
    let problems = problems.into_inner().unwrap();
    let failing: HashSet<&str> = problems
        .iter()
        .filter_map(|p| p.split(':').next())
        .collect();
    assert!(
        problems.is_empty(),
        "{} problems in {} of {} artifacts:\n{}",
        problems.len(),
        failing.len(),
        all.len(),
        problems
            .iter()
            .take(200)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

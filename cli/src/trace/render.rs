//! Output formats of `padtrim replay`.

use std::collections::BTreeMap;
use std::io::Write;

use padtrim_runtime::format::Mode;
use serde_json::json;

use super::model::{EventKind, SpanEnd, Trace};

/// "1 thread", "2 threads".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn us(ns: f64) -> String {
    format!("{:.3} us", ns / 1000.0)
}

/// ftrace function_graph style: one block per thread, indentation by depth, durations in us.
pub fn text(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "# padtrim trace of {} (pid {}), mode {}",
        t.exe,
        t.pid,
        t.mode.name()
    )?;
    for th in &t.threads {
        writeln!(out, "# thread {}", th.tid)?;
        if t.mode != Mode::Graph {
            writeln!(out, "#{:>7} {:>14} |  FUNCTION CALLS", "TID", "TIME")?;
            for e in th.events.iter().filter(|e| e.kind == EventKind::Entry) {
                let indent = "  ".repeat(e.depth as usize);
                writeln!(
                    out,
                    "{:>8} {:>14} |  {}{}()",
                    th.tid,
                    us(e.ns),
                    indent,
                    t.names[e.func]
                )?;
            }
            continue;
        }
        writeln!(out, "#{:>7} {:>14} |  FUNCTION CALLS", "TID", "DURATION")?;
        let mut open: Vec<usize> = Vec::new();
        let close = |out: &mut dyn Write, i: usize| -> std::io::Result<()> {
            let s = &th.spans[i];
            let note = match s.end_kind {
                SpanEnd::Returned => "",
                SpanEnd::Unwound => " (unwound)",
                SpanEnd::Open => " (did not return)",
            };
            writeln!(
                out,
                "{:>8} {:>14} |  {}}} /* {} */{}",
                th.tid,
                us(s.end - s.start),
                "  ".repeat(s.level),
                t.names[s.func],
                note
            )
        };
        for (i, s) in th.spans.iter().enumerate() {
            while let Some(&top) = open.last() {
                if th.spans[top].level < s.level {
                    break;
                }
                open.pop();
                close(out, top)?;
            }
            let leaf = th.spans.get(i + 1).is_none_or(|n| n.level <= s.level);
            let indent = "  ".repeat(s.level);
            if leaf {
                let note = match s.end_kind {
                    SpanEnd::Returned => "",
                    SpanEnd::Unwound => " /* unwound */",
                    SpanEnd::Open => " /* did not return */",
                };
                writeln!(
                    out,
                    "{:>8} {:>14} |  {}{}();{}",
                    th.tid,
                    us(s.end - s.start),
                    indent,
                    t.names[s.func],
                    note
                )?;
            } else {
                writeln!(
                    out,
                    "{:>8} {:>14} |  {}{}() {{",
                    th.tid, "", indent, t.names[s.func]
                )?;
                open.push(i);
            }
        }
        while let Some(top) = open.pop() {
            close(out, top)?;
        }
    }
    Ok(())
}

/// Chrome trace-event JSON: complete ("X") events for calls, instant ("i") events for
/// entry-only traces, and thread-name metadata. Times in microseconds.
pub fn chrome(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut events = Vec::new();
    for th in &t.threads {
        events.push(
            json!({"ph": "M", "name": "thread_name", "pid": t.pid, "tid": th.tid,
                           "args": {"name": format!("tid {}", th.tid)}}),
        );
        if t.mode == Mode::Graph {
            for s in &th.spans {
                let mut ev = json!({"ph": "X", "name": t.names[s.func], "cat": "function", "pid": t.pid,
                                    "tid": th.tid, "ts": s.start / 1000.0, "dur": (s.end - s.start) / 1000.0});
                if s.end_kind != SpanEnd::Returned {
                    ev["args"] = json!({"end": if s.end_kind == SpanEnd::Unwound { "unwound" } else { "open" }});
                }
                events.push(ev);
            }
        } else {
            for e in th.events.iter().filter(|e| e.kind == EventKind::Entry) {
                events.push(json!({"ph": "i", "s": "t", "name": t.names[e.func], "cat": "function",
                                   "pid": t.pid, "tid": th.tid, "ts": e.ns / 1000.0, "args": {"depth": e.depth}}));
            }
        }
    }
    let doc = json!({"traceEvents": events, "displayTimeUnit": "ns",
                     "otherData": {"exe": t.exe, "mode": t.mode.name()}});
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}

/// Folded stacks: graph traces weigh each stack by its self time in ns; entry-only traces
/// count calls.
pub fn folded(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut weights: BTreeMap<String, u64> = BTreeMap::new();
    for th in &t.threads {
        if t.mode == Mode::Graph {
            for s in &th.spans {
                let self_ns = (s.end - s.start - s.children).max(0.0).round() as u64;
                *weights.entry(s.stack.clone()).or_default() += self_ns;
            }
        } else {
            let mut stack: Vec<&str> = Vec::new();
            for e in th.events.iter().filter(|e| e.kind == EventKind::Entry) {
                stack.truncate(e.depth as usize);
                stack.push(&t.names[e.func]);
                *weights.entry(stack.join(";")).or_default() += 1;
            }
        }
    }
    for (stack, w) in weights {
        if w > 0 {
            writeln!(out, "{} {}", stack, w)?;
        }
    }
    Ok(())
}

/// Per-function calls, total (inclusive, recursion counted once) and self time.
pub fn summary(t: &Trace, out: &mut dyn Write) -> anyhow::Result<()> {
    #[derive(Default)]
    struct Row {
        calls: u64,
        total: f64,
        own: f64,
    }
    let mut rows: Vec<Row> = (0..t.names.len()).map(|_| Row::default()).collect();
    for th in &t.threads {
        for e in th.events.iter().filter(|e| e.kind == EventKind::Entry) {
            rows[e.func].calls += 1;
        }
        for s in &th.spans {
            let dur = s.end - s.start;
            if !s.recursive {
                rows[s.func].total += dur;
            }
            rows[s.func].own += (dur - s.children).max(0.0);
        }
    }
    writeln!(
        out,
        "# padtrim trace of {} (pid {}), mode {}, {}",
        t.exe,
        t.pid,
        t.mode.name(),
        count(t.threads.len() as u64, "thread", "threads")
    )?;
    if let Some(st) = t.patched {
        writeln!(
            out,
            "# startup: {} patched, {} skipped, in {} (table: {})",
            count(st.patched, "slot", "slots"),
            st.skipped,
            us(st.ns),
            st.table
        )?;
    }
    if t.lost > 0 {
        writeln!(
            out,
            "# {} lost (the runtime could not keep them)",
            count(t.lost, "record", "records")
        )?;
    }
    if t.trailing_bytes > 0 {
        writeln!(
            out,
            "# {} of a torn record at the end (the program crashed?)",
            count(t.trailing_bytes as u64, "byte", "bytes")
        )?;
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        rows[b]
            .own
            .total_cmp(&rows[a].own)
            .then(rows[b].calls.cmp(&rows[a].calls))
            .then(t.names[a].cmp(&t.names[b]))
    });
    if t.mode == Mode::Graph {
        writeln!(
            out,
            "{:>10} {:>14} {:>14}  FUNCTION",
            "CALLS", "TOTAL", "SELF"
        )?;
        for i in order {
            writeln!(
                out,
                "{:>10} {:>14} {:>14}  {}",
                rows[i].calls,
                us(rows[i].total),
                us(rows[i].own),
                t.names[i]
            )?;
        }
    } else {
        writeln!(out, "{:>10}  FUNCTION", "CALLS")?;
        for i in order {
            writeln!(out, "{:>10}  {}", rows[i].calls, t.names[i])?;
        }
    }
    Ok(())
}

//! `BENCHMARKS.md`: how to run the bench, then one section per scenario,
//! each between its markers (`<!-- bench:ops -->` .. `<!-- /bench:ops -->`)
//! and replaced in place by the scenario's next run. Everything outside a
//! run's own markers is kept: prose, and sections written by hand or by
//! other tools under other names.

use std::path::{Path, PathBuf};

use crate::context::{Context, Source};
use crate::report::{Memory, Report};
use crate::{Args, Res, Scenario, USERS};

/// The start of a new `BENCHMARKS.md`, ahead of the first section.
const PREAMBLE: &str = "# Benchmarks

Results of session-bench v1 (`bench/`): lucia-diesel against a raw
tokio-postgres client with one prepared statement per operation (`raw`, the
floor), over a pool of 10 connections. See the README's Benchmark section
for the protocol and `cargo run --release -p lucia-diesel-bench -- --help`
for every option.

```sh
cargo run --release -p lucia-diesel-bench                        # scenario ops: every operation, c=1 and 32
cargo run --release -p lucia-diesel-bench -- --scenario cleanup  # validate while 10^6 expired rows go
cargo run --release -p lucia-diesel-bench -- --scenario cache    # the validation cache
cargo run --release -p lucia-diesel-bench -- --soak 60           # the bench's memory over a minute
cargo run --release -p lucia-diesel-bench -- --no-write          # print only, leave this file alone
```

Without `DATABASE_URL` the bench starts a throwaway cluster (`fsync` off):
good for a quick look, not for figures worth quoting. Those come from a
durable server, with `DATABASE_URL` set (for example
`postgres://postgres@127.0.0.1:5432/postgres`; the bench creates and drops
its own database `session_bench`), in a release build with the default
rounds and seconds. Client and server usually share the machine: read the
ratios to raw rather than the absolute rates.

Each run replaces its scenario's section, between the HTML comments
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` (NAME being `ops`,
`cleanup` or `soak`), and keeps everything else in this file.
";

/// `BENCHMARKS.md` at the repository root (the bench's parent folder).
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md")
}

/// The markers around the section `name`.
fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    )
}

/// The section of a run of `scenario`, markers excluded.
pub fn section(
    scenario: Scenario,
    args: &Args,
    context: &Context,
    report: &Report,
    memory: &Memory,
) -> String {
    let mut out = vec![format!(
        "## `{}`: {}",
        scenario.name(),
        description(scenario)
    )];
    let caveats = caveats(scenario, args, context);
    if !caveats.is_empty() {
        out.push(format!(
            "**A quick look, not durable figures:** {}. Figures worth quoting come \
             from a durable server (`DATABASE_URL`, `fsync` on), in a release build, \
             with the default rounds and seconds.",
            caveats.join("; ")
        ));
    }
    let commit = match &context.commit {
        Some(c) if c.changed => format!("\n- Commit: `{}` with uncommitted changes", c.hash),
        Some(c) => format!("\n- Commit: `{}`", c.hash),
        None => String::new(),
    };
    out.push(format!(
        "- Date: {}\n- Command: `{}`{commit}\n- Machine: {}\n- Server: {}\n- Run: {}",
        context.date,
        context.command,
        context.machine.describe(),
        context.server.describe(),
        run(scenario, args),
    ));
    for table in report.tables() {
        out.push(table.caption.replace('\n', " "));
        out.push(table.markdown());
    }
    out.push(format!("The bench's {}.", memory.text()));
    out.join("\n\n")
}

fn description(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Ops => "each operation at each concurrency",
        Scenario::Cleanup => "`delete_expired_sessions` while the operation runs",
        Scenario::Soak => "the bench's memory over a long run",
        Scenario::Cache => "the validation cache: reads, the triggers' write cost, revocation lag",
    }
}

/// Why the figures are only a quick look, if they are.
fn caveats(scenario: Scenario, args: &Args, context: &Context) -> Vec<String> {
    let server = &context.server;
    let mut caveats = Vec::new();
    if matches!(server.source, Source::Throwaway) {
        caveats.push(format!("a throwaway cluster (`fsync` {})", server.fsync));
    } else if !server.durable() {
        caveats.push(format!("`fsync` {}", server.fsync));
    }
    if !context.release {
        caveats.push("a debug build".to_owned());
    }
    if args.rounds < scenario.default_rounds() || args.secs < scenario.default_secs() {
        caveats.push(format!(
            "{} of {} s (the defaults: {} of {} s)",
            rounds(args.rounds),
            args.secs,
            rounds(scenario.default_rounds()),
            scenario.default_secs()
        ));
    }
    caveats
}

fn rounds(n: u32) -> String {
    if n == 1 {
        "1 round".to_owned()
    } else {
        format!("{n} rounds")
    }
}

/// The run's arguments, in words.
fn run(scenario: Scenario, args: &Args) -> String {
    let join = |items: Vec<String>| items.join(", ");
    let code = |items: Vec<&str>| join(items.iter().map(|i| format!("`{i}`")).collect());
    let mut out = format!(
        "{} sessions ({USERS} users), pool {}, concurrency {}; {} of {} s per \
         implementation and operation; implementations {}; operations {}",
        join(args.sessions.iter().map(u64::to_string).collect()),
        crate::POOL,
        join(args.concurrency.iter().map(usize::to_string).collect()),
        rounds(args.rounds),
        args.secs,
        code(args.impls.iter().map(String::as_str).collect()),
        code(args.ops.iter().map(|op| op.name()).collect()),
    );
    match scenario {
        Scenario::Ops => {}
        Scenario::Cache => out.push_str(
            "; writes `create`, `extend`, `touch`, `delete`, `delete_user` and `update_user` \
             (raw only) without and with the outbox triggers; 1000 revocations idle and under \
             load; the server CPU of 20 and 200 readers' polls",
        ),
        Scenario::Cleanup => out.push_str(&format!(
            "; {} expired sessions deleted in batches of {}",
            args.expired, args.cleanup_batch
        )),
        Scenario::Soak => out.push_str(&format!("; VmRSS sampled every {} s", args.sample_secs)),
    }
    out
}

/// The span of the line that is exactly `marker` (its line break
/// included), if there is one; an error if there are several.
fn marker_line(document: &str, marker: &str) -> Result<Option<(usize, usize)>, String> {
    let mut found = None;
    let mut offset = 0;
    for line in document.split_inclusive('\n') {
        if line.trim_end() == marker {
            if found.is_some() {
                return Err(format!("{marker} appears more than once"));
            }
            found = Some((offset, offset + line.len()));
        }
        offset += line.len();
    }
    Ok(found)
}

/// `document` with the section `name` set to `body`: replaced in place
/// between its markers, appended at the end if it has none, or after the
/// preamble in a new document (`document` empty).
///
/// # Errors
/// Markers that do not pair up (one missing, repeated, or in the wrong
/// order): the document is left to be fixed by hand.
pub fn splice(document: &str, name: &str, body: &str) -> Result<String, String> {
    let (start, end) = markers(name);
    let block = format!("{start}\n{}\n{end}\n", body.trim_end());
    match (marker_line(document, &start)?, marker_line(document, &end)?) {
        (Some((from, _)), Some((after_start, to))) if from < after_start => {
            Ok(format!("{}{block}{}", &document[..from], &document[to..]))
        }
        (None, None) if document.trim().is_empty() => Ok(format!("{PREAMBLE}\n{block}")),
        (None, None) => Ok(format!("{}\n\n{block}", document.trim_end())),
        _ => Err(format!(
            "{start} and {end} do not pair up: fix them by hand, or remove both"
        )),
    }
}

/// Sets the section `name` of `BENCHMARKS.md` to `body` (a file is
/// created if there is none); returns the file's path.
pub fn write(name: &str, body: &str) -> Res<PathBuf> {
    let path = path();
    let document = match std::fs::read_to_string(&path) {
        Ok(document) => document,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading {}: {e}", path.display()).into()),
    };
    let updated = splice(&document, name, body).map_err(|e| format!("{}: {e}", path.display()))?;
    // Written beside it and renamed, so that a failed write leaves the old
    // file whole.
    let temporary = path.with_extension("md.tmp");
    std::fs::write(&temporary, updated)?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::{PREAMBLE, splice};

    #[test]
    fn a_new_document_is_the_preamble_and_the_section() {
        let doc = splice("", "ops", "## ops\n\nfigures\n").unwrap();
        assert_eq!(
            doc,
            format!("{PREAMBLE}\n<!-- bench:ops -->\n## ops\n\nfigures\n<!-- /bench:ops -->\n")
        );
    }

    #[test]
    fn a_section_is_replaced_in_place_and_the_rest_kept() {
        let doc = "# B\n\nintro\n\n<!-- bench:ops -->\nold ops\n<!-- /bench:ops -->\n\n\
                   <!-- bench:soak -->\nsoak\n<!-- /bench:soak -->\n\nnotes by hand\n";
        let updated = splice(doc, "ops", "new ops").unwrap();
        assert_eq!(
            updated,
            "# B\n\nintro\n\n<!-- bench:ops -->\nnew ops\n<!-- /bench:ops -->\n\n\
             <!-- bench:soak -->\nsoak\n<!-- /bench:soak -->\n\nnotes by hand\n"
        );
        // Writing the same again changes nothing.
        assert_eq!(splice(&updated, "ops", "new ops").unwrap(), updated);
    }

    #[test]
    fn a_missing_section_is_appended() {
        let doc = "# B\n\n<!-- bench:ops -->\nops\n<!-- /bench:ops -->\n\n";
        assert_eq!(
            splice(doc, "cleanup", "cleanup").unwrap(),
            "# B\n\n<!-- bench:ops -->\nops\n<!-- /bench:ops -->\n\n\
             <!-- bench:cleanup -->\ncleanup\n<!-- /bench:cleanup -->\n"
        );
    }

    #[test]
    fn markers_must_be_whole_lines() {
        // Quoted in prose, a marker is not one.
        let doc = "see `<!-- bench:ops -->` below\n";
        let updated = splice(doc, "ops", "ops").unwrap();
        assert!(updated.starts_with(doc));
        assert!(updated.ends_with("<!-- bench:ops -->\nops\n<!-- /bench:ops -->\n"));
    }

    #[test]
    fn markers_that_do_not_pair_up_are_refused() {
        for doc in [
            "<!-- bench:ops -->\nops\n",
            "ops\n<!-- /bench:ops -->\n",
            "<!-- /bench:ops -->\nops\n<!-- bench:ops -->\n",
            "<!-- bench:ops -->\n<!-- bench:ops -->\n<!-- /bench:ops -->\n",
        ] {
            assert!(splice(doc, "ops", "new").is_err(), "{doc}");
        }
    }
}

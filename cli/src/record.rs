//! `lazyctl record IMAGE -- CMD…`: run a command on a lazy image and store
//! the chunks it read, in order, as the image's prefetch record (or merge
//! them into the stored one with `--add`).

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser};
use lazy_format::PrefetchRecord;
use lazy_image::{
    ImageStore, fetch_lazy_manifest, fetch_prefetch_record, prefetch_tag, push_prefetch_record,
};
use lazy_oci::{Reference, RegistryClient};
use nix::sys::signal::Signal;

use crate::daemon_args::DaemonArgs;
use crate::lazyrun::{self, args::RunArgs, load_config};
use crate::registry_args::RegistryArgs;

/// Run a command in a container of a lazy image, exactly as `lazyrun --rm`
/// would (the image's entrypoint, environment, working directory and user;
/// the same namespaces and runtime), and store the chunks it read as the
/// image's prefetch record, which lazyfsd fetches first on later attaches.
/// Without a command, the image's own entrypoint and cmd run.
#[derive(Debug, Args)]
#[command(after_help = "EXAMPLES:
  lazyctl record localhost:5000/r-base:lazy -- Rscript -e 'sessionInfo()'
  lazyctl record --add localhost:5000/r-base:lazy -- gcc --version
  lazyctl record --stop-after 30s localhost:5000/web:lazy     # a server: record its start")]
pub struct RecordArgs {
    /// Lazy image in a registry.
    pub image: String,
    /// The command and its arguments (after `--`; default: the image's).
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Merge into the image's stored record (chunks ordered by how early
    /// in its run any command first read them) instead of replacing it.
    #[arg(long)]
    pub add: bool,
    /// Stop the command after this long (e.g. 30s, 2m): SIGTERM, then
    /// SIGKILL 5 s later. What it read until then is recorded.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stop_after: Option<Duration>,
    /// Daemon options.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Registry options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How a recorded command ended.
pub struct Recorded {
    /// The chunks it read, in first-read order.
    pub record: PrefetchRecord,
    /// Its exit code.
    pub status: i32,
    /// Whether the time limit stopped it.
    pub timed_out: bool,
    /// How to name it in messages.
    pub what: String,
}

/// Records and stores; the command's failure is reported after storing.
pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let config = load_config(&args.daemon.config)?;
    let registry = args.registry.client_with(&config.registry)?;
    let recorded = record_command(&args.image, &args.command, &args.daemon, args.stop_after)?;
    let stored = store_record(&registry, &args.image, &recorded.record, args.add).await?;
    println!(
        "recorded {} chunks read by {}; stored {}as {stored}",
        recorded.record.chunks.len(),
        recorded.what,
        if args.add { "merged " } else { "" },
    );
    recorded.check_status()
}

/// Runs `command` (empty: the image's) on `image` exactly as `lazyrun --rm`
/// would, and returns what it read. Fails when it read nothing.
pub fn record_command(
    image: &str,
    command: &[String],
    daemon_args: &DaemonArgs,
    timeout: Option<Duration>,
) -> anyhow::Result<Recorded> {
    let mut config = load_config(&daemon_args.config)?;
    if let Some(socket) = &daemon_args.socket {
        config.socket = socket.clone();
    }
    // Exactly lazyrun's path: its options, its attach, its process rules
    // (the image's entrypoint, env, workdir and user), its runtime.
    let mut argv: Vec<std::ffi::OsString> = [
        "lazyrun",
        "--rm",
        "--pull",
        "always",
        "--prefetch",
        "none",
        "--config",
    ]
    .map(Into::into)
    .into();
    argv.push(daemon_args.config.clone().into());
    argv.push(image.into());
    argv.push("--".into());
    argv.extend(command.iter().map(Into::into));
    let run_args = RunArgs::try_parse_from(argv)?;
    let prepared = lazyrun::prepare(&run_args, config)?;
    let (daemon, image) = (prepared.daemon.clone(), prepared.image.clone());
    daemon.record_start(&image)?;
    let (done, watched) = mpsc::channel::<()>();
    let watchdog = timeout.map(|limit| std::thread::spawn(move || stop_after(limit, &watched)));
    let status = tokio::task::block_in_place(|| lazyrun::run_prepared(&run_args, prepared));
    drop(done);
    let timed_out = watchdog.is_some_and(|w| w.join().unwrap_or(false));
    let record = daemon.record_stop()?;
    let status = status?;
    let what = match command.is_empty() {
        true => "the image's command".to_owned(),
        false => format!("`{}`", command.join(" ")),
    };
    if record.chunks.is_empty() {
        bail!(
            "{what} read no file content of the image; nothing stored (the image's \
             existing prefetch record, if any, is kept)"
        );
    }
    Ok(Recorded {
        record,
        status,
        timed_out,
        what,
    })
}

impl Recorded {
    /// The command's failure as an error (a stop at the time limit is none).
    pub fn check_status(&self) -> anyhow::Result<()> {
        if self.timed_out {
            eprintln!("lazyctl: the command was stopped at its time limit, as asked");
            return Ok(());
        }
        if self.status != 0 {
            bail!(
                "the command failed (exit code {}); the record of what it read was stored anyway",
                self.status
            );
        }
        Ok(())
    }
}

/// Waits `limit` unless told to stop (the channel closes); then stops the
/// container: SIGTERM, and SIGKILL when it is still running 5 s later.
/// Returns whether it had to.
fn stop_after(limit: Duration, done: &mpsc::Receiver<()>) -> bool {
    let running = |wait| done.recv_timeout(wait) == Err(mpsc::RecvTimeoutError::Timeout);
    if !running(limit) {
        return false;
    }
    eprintln!(
        "lazyctl: stopping the command after {:.0?} (SIGTERM)",
        limit
    );
    // The container may still be starting: try until it takes the signal.
    while !lazy_runtime::signal_container(Signal::SIGTERM) {
        if !running(Duration::from_millis(100)) {
            return true;
        }
    }
    if running(Duration::from_secs(5)) {
        eprintln!("lazyctl: the command ignored SIGTERM; killing it");
        lazy_runtime::signal_container(Signal::SIGKILL);
    }
    true
}

/// Stores `record` as the prefetch record of `image` (in a registry),
/// merged into the stored one with `add`. Returns where it is stored.
pub async fn store_record(
    registry: &RegistryClient,
    image: &str,
    record: &PrefetchRecord,
    add: bool,
) -> anyhow::Result<String> {
    let reference: Reference = image.parse()?;
    let image_store = ImageStore::Registry {
        client: registry.clone(),
        reference: reference.clone(),
    };
    let manifest = fetch_lazy_manifest(&image_store, image).await?;
    let tag = prefetch_tag(&manifest.digest);
    let record_store = ImageStore::Registry {
        client: registry.clone(),
        reference: reference.with_tag(&tag),
    };
    let mut record = record.clone();
    if add {
        match fetch_prefetch_record(&record_store, image).await? {
            Some(stored) if stored.layers == record.layers => record = stored.merge(&record)?,
            Some(_) => eprintln!(
                "lazyctl: the stored record names other layers (an older image?); replacing it"
            ),
            None => {}
        }
    }
    push_prefetch_record(
        &record_store,
        (&manifest.digest, manifest.bytes.len() as u64),
        &record,
    )
    .await
    .context("storing the prefetch record")?;
    Ok(format!(
        "{} ({} chunks)",
        reference.with_tag(&tag),
        record.chunks.len()
    ))
}

/// Parses `90`, `90s`, `500ms`, `2m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 2m, 500ms)"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m or h)")),
    };
    match duration.is_zero() {
        true => Err("the duration must be more than zero".into()),
        false => Ok(duration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "0", "3d", "1.5s", "-1"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

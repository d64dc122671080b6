//! `--nproc N`: start N copies of this very command as the ranks of one data-parallel job on this machine, the
//! way torchrun does (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT; issue 21), and watch them.
//! When a worker fails, the others are stopped and the job fails with one message that names the rank, how it
//! ended and its last words.
//!
//! Rank 0 keeps the terminal (its progress bar and log); the other ranks' output is forwarded line by line with a
//! `[rank r]` prefix.

use anyhow::{bail, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines of a failed worker's output quoted in the job's error.
const LAST_LINES: usize = 6;

/// How one worker ended badly.
#[derive(Debug)]
pub struct WorkerFailure {
    pub rank: usize,
    pub status: String,
    pub last_lines: Vec<String>,
}

/// Runs `args` (this binary's arguments) as `nproc` ranks and waits for all of them. `Ok(())` when every rank
/// exits successfully; otherwise the first failure, after the other ranks have been stopped.
pub fn run_workers(
    nproc: usize,
    master_port: Option<u16>,
    args: &[std::ffi::OsString],
) -> std::result::Result<(), WorkerFailure> {
    run_workers_with(nproc, master_port, args, &[], true)
}

/// [`run_workers`] with extra environment variables for every worker, and rank 0's stdout kept (`rank0_stdout`)
/// or discarded like the other ranks'.
pub fn run_workers_with(
    nproc: usize,
    master_port: Option<u16>,
    args: &[std::ffi::OsString],
    env: &[(String, String)],
    rank0_stdout: bool,
) -> std::result::Result<(), WorkerFailure> {
    let port = master_port.unwrap_or_else(free_port);
    let exe = std::env::current_exe().map_err(|e| WorkerFailure {
        rank: 0,
        status: format!("cannot find this program to start its workers: {e}"),
        last_lines: vec![],
    })?;
    // CPU workers share the cores (libtorch would give each all of them); CUDA workers need few host threads.
    let threads = std::env::var("OMP_NUM_THREADS").ok().unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / nproc).max(1).to_string()
    });
    log::info!(
        "starting {nproc} workers (rendezvous 127.0.0.1:{port}, {threads} CPU thread(s) each)"
    );
    // The parent only waits: a Ctrl-C reaches every worker of the terminal's process group, which stop after
    // their next snapshot; the parent must outlive them.
    crate::training::report::install_ctrlc();
    let mut children: Vec<Child> = Vec::with_capacity(nproc);
    let mut tails: Vec<Arc<Mutex<VecDeque<String>>>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("OMP_NUM_THREADS", &threads)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        // A worker dies with its launcher: killed outright, the launcher could not stop them itself.
        // SAFETY: prctl is async-signal-safe; the closure runs in the child between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if rank > 0 || !rank0_stdout {
            cmd.stdout(Stdio::null());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut children);
                return Err(WorkerFailure {
                    rank,
                    status: format!("could not be started: {e}"),
                    last_lines: vec![],
                });
            }
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("piped");
        let keep = tail.clone();
        std::thread::spawn(move || forward(rank, stderr, keep));
        tails.push(tail);
        children.push(child);
    }
    let mut done = vec![false; nproc];
    loop {
        for rank in 0..nproc {
            if done[rank] {
                continue;
            }
            match children[rank].try_wait() {
                Ok(Some(status)) if status.success() => done[rank] = true,
                Ok(Some(status)) => {
                    done[rank] = true;
                    stop_all(&mut children);
                    // Let the forwarding thread drain the pipe.
                    std::thread::sleep(Duration::from_millis(200));
                    let last_lines = tails[rank]
                        .lock()
                        .map_or(vec![], |t| t.iter().cloned().collect());
                    return Err(WorkerFailure {
                        rank,
                        status: describe(status),
                        last_lines,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    stop_all(&mut children);
                    return Err(WorkerFailure {
                        rank,
                        status: format!("cannot be watched: {e}"),
                        last_lines: vec![],
                    });
                }
            }
        }
        if done.iter().all(|&d| d) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies a worker's stderr to ours (rank 0 as it is, others prefixed) and keeps its last lines. Rank 0's progress
/// bar redraws with carriage returns, which pass through unchanged.
fn forward(rank: usize, stderr: std::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let mut out = std::io::stderr().lock();
        if rank > 0 {
            let _ = write!(out, "[rank {rank}] ");
        }
        let _ = out.write_all(&line);
        let text = String::from_utf8_lossy(&line);
        let text = text
            .rsplit('\r')
            .next()
            .unwrap_or("")
            .trim_end()
            .to_string();
        if !text.is_empty() {
            if let Ok(mut t) = tail.lock() {
                if t.len() == LAST_LINES {
                    t.pop_front();
                }
                t.push_back(text);
            }
        }
        line.clear();
    }
}

/// Kills every worker still running and reaps them all.
fn stop_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
}

/// "exited with status 3" or "was killed by signal 9 (SIGKILL)".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => {
            let name = match sig {
                2 => " (SIGINT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {sig}{name}")
        }
        None => format!("ended ({status})"),
    }
}

/// A TCP port the OS reports free on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(29500, |a| a.port())
}

/// The job-level error for a failed worker, with how to resume (`resume`: the command line that continues the run,
/// when a snapshot exists).
pub fn failure_error(
    nproc: usize,
    failure: &WorkerFailure,
    resume: Option<String>,
) -> anyhow::Error {
    let mut msg = format!(
        "rank {} of {nproc} {}; the other worker(s) were stopped",
        failure.rank, failure.status
    );
    if !failure.last_lines.is_empty() {
        msg.push_str(&format!(
            ". Its last output: {}",
            failure.last_lines.join(" | ")
        ));
    }
    match resume {
        Some(cmd) => msg.push_str(&format!(". Resume from the last snapshot with: {cmd}")),
        None => msg.push_str(". No snapshot was written yet: start the run again"),
    }
    anyhow::anyhow!(msg)
}

/// The newest run directory under `results_dir` whose `config.json` was written at or after `since` (the run this
/// job created), if any.
pub fn run_dir_since(
    results_dir: &std::path::Path,
    since: std::time::SystemTime,
) -> Option<std::path::PathBuf> {
    crate::checkpoint::run_dirs_newest_first(results_dir)
        .into_iter()
        .find(|p| {
            std::fs::metadata(p.join("config.json"))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
}

/// This process's arguments without the program name (to start its workers with).
pub fn own_args() -> Vec<std::ffi::OsString> {
    std::env::args_os().skip(1).collect()
}

/// Checks `--nproc` against the environment: under an external launcher (WORLD_SIZE set) `--nproc` must be 1 or
/// equal to WORLD_SIZE.
pub fn check_nproc(nproc: usize, world: Option<usize>) -> Result<()> {
    if let Some(w) = world {
        if nproc > 1 && nproc != w {
            bail!(
                "--nproc {nproc} under a launcher that set WORLD_SIZE={w}: leave --nproc out when torchrun/srun \
                 starts the workers"
            );
        }
    }
    Ok(())
}

//! `hessian-gan`: parses the command line and hands over to the library.

use clap::{Parser, Subcommand};
use hessian_gan::{device::DeviceSpec, info, Globals};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hessian-gan",
    version,
    about = "ProGAN with the Hessian Penalty on libtorch"
)]
struct Cli {
    /// Compute device: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    device: DeviceSpec,
    /// Seed for every random draw (latents, Rademacher directions, data order); default 1000.
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// More output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors and results.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Versions, CUDA/cuDNN availability, GPUs and CPU threads.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    // /// Train ProGAN with the Hessian Penalty (or InfoGAN / vanilla), resume or fine-tune.
    //Train(Box<train::TrainArgs>),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let globals = Globals {
        device: cli.device,
        seed: cli.seed,
        verbosity: if cli.quiet {
            -1
        } else {
            cli.verbose.min(3) as i8
        },
    };
    match cli.command {
        Command::Info { json } => {
            let report = info::collect(globals.device)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        //Command::Train(args) => train::run(&globals, *args)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its context chain, no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

//! `hessian-gan`: everything, including the command line, lives in the library (`src/cli`).

fn main() -> std::process::ExitCode {
    hessian_gan::cli::main()
}

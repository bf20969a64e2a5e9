//! `lazyrun`: run containers from lazy images without pulling them.

use clap::Parser;
use lazy_cli::lazyrun;

fn main() {
    // The container init is this binary, re-executed: it must take over
    // before anything else runs.
    lazy_runtime::init_main_if_requested();
    let args = lazyrun::args::RunArgs::parse();
    lazy_cli::init_logging(args.verbose);
    std::process::exit(lazyrun::main(args));
}

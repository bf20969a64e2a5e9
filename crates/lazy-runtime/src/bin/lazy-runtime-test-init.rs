//! Test helper for lazy-runtime's integration tests: the container init
//! (via `init_main_if_requested`) and a minimal `lazyrun` stand-in:
//! `lazy-runtime-test-init run SPEC.json` runs the container described by
//! the JSON spec and exits with docker's exit code.

fn main() {
    lazy_runtime::init_main_if_requested();
    let args: Vec<String> = std::env::args().collect();
    let (Some("run"), Some(spec_path)) = (args.get(1).map(String::as_str), args.get(2)) else {
        eprintln!("usage: lazy-runtime-test-init run SPEC.json");
        std::process::exit(2);
    };
    let spec: lazy_runtime::ContainerSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("lazy-runtime-test-init: {spec_path}: {e}");
            std::process::exit(2);
        }
    };
    let init_exe = std::env::current_exe().unwrap_or_else(|e| {
        eprintln!("lazy-runtime-test-init: current_exe: {e}");
        std::process::exit(125)
    });
    let code = match lazy_runtime::run(&spec, &init_exe) {
        Ok(status) => status.docker_exit_code(),
        Err(e) => {
            eprintln!("lazy-runtime-test-init: {e}");
            e.docker_exit_code()
        }
    };
    std::process::exit(code)
}

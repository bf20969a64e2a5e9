//! What to run, as `docker run` decides it from the image config and the
//! options: argv, environment, working directory, user.

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

/// Why the process of a container cannot be decided.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Neither the image nor the options name a command.
    #[error("no command specified: the image has no entrypoint or cmd; give one after the image")]
    NoCommand,
    /// `-w` or the image's working directory is relative.
    #[error("working directory {0} must be absolute")]
    RelativeWorkdir(PathBuf),
    /// An `-e` value is not `KEY=VALUE` or `KEY`.
    #[error("invalid environment variable {0:?}: expected KEY=VALUE or KEY")]
    InvalidEnv(String),
    /// An env file cannot be read.
    #[error("reading env file {path}: {source}")]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of an env file is not a variable.
    #[error("{path}:{line}: invalid environment variable {entry:?}: expected KEY=VALUE or KEY")]
    EnvFileLine {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// The line.
        entry: String,
    },
}

/// The process part of a container, before the user is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// argv.
    pub args: Vec<String>,
    /// `K=V`, image first, options override.
    pub env: Vec<String>,
    /// Working directory in the container.
    pub cwd: PathBuf,
    /// `user[:group]` as given by the options or the image (empty: root).
    pub user: String,
}

/// The options that shape the process.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions<'a> {
    /// Command and arguments after the image name.
    pub command: &'a [String],
    /// `--entrypoint`.
    pub entrypoint: Option<&'a str>,
    /// `-e` entries, after the `--env-file` ones.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<&'a Path>,
    /// `-u`.
    pub user: Option<&'a str>,
}

/// Docker's rules: the entrypoint (the image's, or `--entrypoint`, which
/// also drops the image's cmd) followed by the command given, or else the
/// image's cmd.
pub fn process(image: &ImageConfiguration, opts: &ProcessOptions) -> Result<Process, ProcessError> {
    let config = image.config().as_ref();
    let image_entrypoint = config
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let image_cmd = config.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let entrypoint = match opts.entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_owned()],
        None => image_entrypoint,
    };
    let cmd = if !opts.command.is_empty() {
        opts.command.to_vec()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        image_cmd
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ProcessError::NoCommand);
    }
    let mut env = config.and_then(|c| c.env().clone()).unwrap_or_default();
    for entry in &opts.env {
        set_env(&mut env, entry);
    }
    let cwd = match opts.workdir {
        Some(w) => w.to_owned(),
        None => config
            .and_then(|c| c.working_dir().clone())
            .filter(|w| !w.is_empty())
            .map_or_else(|| PathBuf::from("/"), PathBuf::from),
    };
    if !cwd.is_absolute() {
        return Err(ProcessError::RelativeWorkdir(cwd));
    }
    let user = match opts.user {
        Some(u) => u.to_owned(),
        None => config.and_then(|c| c.user().clone()).unwrap_or_default(),
    };
    Ok(Process {
        args,
        env,
        cwd,
        user,
    })
}

/// Sets `KEY=VALUE` in `env`, replacing an earlier value of `KEY`.
fn set_env(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(entry.to_owned());
}

/// `-e` values: `KEY=VALUE` as is; a bare `KEY` takes the host's value (and
/// is left out when the host has none), as docker does.
pub fn env_option(entry: &str) -> Result<Option<String>, ProcessError> {
    if entry.is_empty() || entry.starts_with('=') {
        return Err(ProcessError::InvalidEnv(entry.to_owned()));
    }
    if entry.contains('=') {
        return Ok(Some(entry.to_owned()));
    }
    Ok(std::env::var(entry).ok().map(|v| format!("{entry}={v}")))
}

/// The variables of an `--env-file`: `KEY=VALUE` or `KEY` lines; blank
/// lines and `#` comments are skipped.
pub fn env_file(path: &Path) -> Result<Vec<String>, ProcessError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProcessError::EnvFile {
        path: path.to_owned(),
        source,
    })?;
    let mut env = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value = env_option(line).map_err(|_| ProcessError::EnvFileLine {
            path: path.to_owned(),
            line: n + 1,
            entry: line.to_owned(),
        })?;
        env.extend(value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(json: &str) -> ImageConfiguration {
        serde_json::from_str(json).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    const IMAGE: &str = r#"{"architecture":"amd64","os":"linux",
        "config":{"Entrypoint":["/bin/ep"],"Cmd":["default"],"Env":["PATH=/bin","A=1"],
                  "WorkingDir":"/srv","User":"daemon"},
        "rootfs":{"type":"layers","diff_ids":[]}}"#;

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let img = image(IMAGE);
        let run = |command: &[&str], entrypoint: Option<&str>| {
            let command = strings(command);
            let opts = ProcessOptions {
                command: &command,
                entrypoint,
                ..Default::default()
            };
            process(&img, &opts).map(|p| p.args)
        };
        assert_eq!(run(&[], None).unwrap(), strings(&["/bin/ep", "default"]));
        assert_eq!(
            run(&["x", "y"], None).unwrap(),
            strings(&["/bin/ep", "x", "y"])
        );
        assert_eq!(run(&[], Some("/bin/sh")).unwrap(), strings(&["/bin/sh"]));
        assert_eq!(
            run(&["-c", "true"], Some("/bin/sh")).unwrap(),
            strings(&["/bin/sh", "-c", "true"])
        );
        assert_eq!(run(&["ls"], Some("")).unwrap(), strings(&["ls"]));
        assert!(run(&[], Some("")).is_err(), "nothing to run");
    }

    #[test]
    fn env_workdir_and_user_from_image_and_options() {
        let img = image(IMAGE);
        let none: [String; 0] = [];
        let p = process(
            &img,
            &ProcessOptions {
                command: &none,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (p.cwd, p.user),
            (PathBuf::from("/srv"), "daemon".to_owned())
        );
        let opts = ProcessOptions {
            command: &none,
            env: strings(&["A=2", "B=3"]),
            workdir: Some(Path::new("/tmp")),
            user: Some("1000:1000"),
            ..Default::default()
        };
        let p = process(&img, &opts).unwrap();
        assert_eq!(p.env, strings(&["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(
            (p.cwd, p.user),
            (PathBuf::from("/tmp"), "1000:1000".to_owned())
        );
        let relative = ProcessOptions {
            command: &none,
            workdir: Some(Path::new("rel")),
            ..Default::default()
        };
        assert!(process(&img, &relative).is_err());
    }

    #[test]
    fn env_options_and_files() {
        assert_eq!(env_option("A=b=c").unwrap(), Some("A=b=c".to_owned()));
        assert!(env_option("=x").is_err());
        assert_eq!(env_option("LAZYFS_SURELY_UNSET_VARIABLE").unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, "# comment\n\nX=1\n  Y=two words\n").unwrap();
        assert_eq!(env_file(&file).unwrap(), strings(&["X=1", "Y=two words"]));
        std::fs::write(&file, "=bad\n").unwrap();
        let err = env_file(&file).unwrap_err().to_string();
        assert!(err.contains(":1"), "{err}");
    }
}

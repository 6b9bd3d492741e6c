//! `process.json`: what to run in the container, validated strictly (unknown fields,
//! empty `args`, a relative `cwd`, an `env` entry without `=` are errors naming the field).

use serde::Deserialize;

use super::ProcessError;

/// The process to run: the OCI runtime spec's `process` in the shape `docker run` takes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// The command and its arguments; `args[0]` is looked up in the container's `PATH`
    /// when it has no `/`.
    pub args: Vec<String>,
    /// The environment, `KEY=VALUE` each, passed as given (plus `PATH` and `HOME`
    /// defaults when missing).
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory inside the container, absolute; created when missing.
    #[serde(default = "root_dir")]
    pub cwd: String,
    /// `name`, `uid`, `name:group`, `uid:gid`, `name:gid` or `uid:group`, resolved from the
    /// container's `/etc/passwd` and `/etc/group` [default: root].
    #[serde(default)]
    pub user: Option<String>,
}

fn root_dir() -> String {
    "/".to_owned()
}

/// `PATH` when the spec's environment has none (containerd's and runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn invalid(message: String) -> ProcessError {
    ProcessError::Invalid(message)
}

impl ProcessSpec {
    /// Parses and validates `process.json` text.
    pub fn parse(json: &str) -> Result<Self, ProcessError> {
        let spec: Self = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), ProcessError> {
        let Some(cmd) = self.args.first() else {
            return Err(invalid("args: empty (needs the command)".into()));
        };
        if cmd.is_empty() {
            return Err(invalid("args[0]: empty".into()));
        }
        for (i, arg) in self.args.iter().enumerate() {
            if arg.contains('\0') {
                return Err(invalid(format!("args[{i}]: contains a NUL byte")));
            }
        }
        for (i, entry) in self.env.iter().enumerate() {
            match entry.split_once('=') {
                None => {
                    return Err(invalid(format!("env[{i}] {entry:?}: not KEY=VALUE")));
                }
                Some(("", _)) => {
                    return Err(invalid(format!("env[{i}] {entry:?}: empty name")));
                }
                Some(_) if entry.contains('\0') => {
                    return Err(invalid(format!("env[{i}]: contains a NUL byte")));
                }
                Some(_) => {}
            }
        }
        if !self.cwd.starts_with('/') {
            return Err(invalid(format!("cwd {:?}: not absolute", self.cwd)));
        }
        if self.cwd.contains('\0') {
            return Err(invalid("cwd: contains a NUL byte".into()));
        }
        if let Some(user) = &self.user
            && (user.is_empty() || user.contains('\0'))
        {
            return Err(invalid(format!(
                "user {user:?}: empty or contains a NUL byte"
            )));
        }
        Ok(())
    }

    /// The value of `key` in the environment (the last entry wins, as with std's
    /// `Command`, which passes one entry per key).
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .filter_map(|e| e.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The environment the process gets: the spec's, plus `PATH` ([`DEFAULT_PATH`]) and
    /// `HOME` (`home`) when it has none, as `(key, value)` pairs in the spec's order.
    pub fn full_env<'a>(&'a self, home: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> =
            self.env.iter().filter_map(|e| e.split_once('=')).collect();
        if self.env_var("PATH").is_none() {
            env.push(("PATH", DEFAULT_PATH));
        }
        if self.env_var("HOME").is_none() {
            env.push(("HOME", home));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        ProcessSpec::parse(json).unwrap_err().to_string()
    }

    #[test]
    fn a_full_spec_parses() {
        let spec = ProcessSpec::parse(
            r#"{"args":["sh","-c","echo hi"],"env":["A=1","B=x=y"],"cwd":"/work","user":"1000:1000"}"#,
        )
        .unwrap();
        assert_eq!(spec.args, ["sh", "-c", "echo hi"]);
        assert_eq!(spec.env_var("B"), Some("x=y"));
        assert_eq!(spec.cwd, "/work");
        assert_eq!(spec.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn defaults_are_root_in_slash_with_no_env() {
        let spec = ProcessSpec::parse(r#"{"args":["true"]}"#).unwrap();
        assert_eq!(spec.cwd, "/");
        assert!(spec.env.is_empty());
        assert_eq!(spec.user, None);
        assert_eq!(
            spec.full_env("/root"),
            [("PATH", DEFAULT_PATH), ("HOME", "/root")]
        );
    }

    #[test]
    fn given_path_and_home_are_kept() {
        let spec =
            ProcessSpec::parse(r#"{"args":["true"],"env":["HOME=/h","PATH=/x","Z=1"]}"#).unwrap();
        assert_eq!(
            spec.full_env("/root"),
            [("HOME", "/h"), ("PATH", "/x"), ("Z", "1")]
        );
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let e = err(r#"{"args":["true"],"cwd":"/","usr":"x"}"#);
        assert!(e.contains("unknown field `usr`"), "{e}");
        let e = err(r#"{"args":[]}"#);
        assert!(e.contains("args: empty"), "{e}");
        let e = err(r#"{"args":[""]}"#);
        assert!(e.contains("args[0]: empty"), "{e}");
        let e = err(r#"{"args":["true"],"cwd":"work"}"#);
        assert!(e.contains("cwd \"work\": not absolute"), "{e}");
        let e = err(r#"{"args":["true"],"env":["A=1","NOEQUALS"]}"#);
        assert!(e.contains("env[1] \"NOEQUALS\": not KEY=VALUE"), "{e}");
        let e = err(r#"{"args":["true"],"env":["=v"]}"#);
        assert!(e.contains("env[0]"), "{e}");
        let e = err(r#"{"args":["true"],"user":""}"#);
        assert!(e.contains("user"), "{e}");
        let e = err(r#"{"env":[]}"#);
        assert!(e.contains("missing field `args`"), "{e}");
        let e = err(r#"{"args":"true"}"#);
        assert!(e.contains("invalid type"), "{e}");
    }
}

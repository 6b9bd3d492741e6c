//! The process a container runs: the runtime part of an OCI image config (`Entrypoint`,
//! `Cmd`, `Env`, `WorkingDir`, `User`) merged with what the user asked for, as docker,
//! containerd and nerdctl merge them:
//!
//! - args: `Entrypoint` followed by the user's command, or by `Cmd` when no command is given;
//! - env: `PATH` defaulted, then the image's `Env`, then the user's entries, each `KEY=VALUE`
//!   replacing an earlier entry with the same key;
//! - cwd: the user's working directory, else `WorkingDir`, else `/`; always absolute;
//! - user: the user's, else the image's `User`, else none (the guest's default, root).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::RunError;

/// `PATH` when neither the image nor the user sets one (containerd's and docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The runtime part of an image config; missing fields are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRuntime {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries, in the image's order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// The process the guest runs, as JSON `{"args":[...],"env":[...],"cwd":"/...","user":"..."}`
/// (`user` omitted when there is none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
}

/// Parses the runtime part (the `config` object) of the image config blob `config_json`.
/// A missing or `null` field is empty; a field of the wrong type, or an `Env` entry that is
/// not `KEY=VALUE`, is an error naming the field.
pub fn image_runtime(config_json: &[u8]) -> Result<ImageRuntime, RunError> {
    let doc: Value = serde_json::from_slice(config_json)
        .map_err(|e| RunError::BadConfig(format!("not valid JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(RunError::BadConfig(format!(
            "it is {}, expected an object",
            type_name(&doc)
        )));
    };
    let config = match doc.get("config") {
        None | Some(Value::Null) => return Ok(ImageRuntime::default()),
        Some(Value::Object(c)) => c,
        Some(other) => {
            return Err(RunError::BadConfig(format!(
                "config is {}, expected an object",
                type_name(other)
            )));
        }
    };
    let env = strings(config, "Env")?;
    if let Some((i, bad)) = env.iter().enumerate().find(|(_, e)| env_key(e).is_none()) {
        return Err(RunError::BadConfig(format!(
            "config.Env[{i}] {bad:?} is not KEY=VALUE"
        )));
    }
    Ok(ImageRuntime {
        entrypoint: strings(config, "Entrypoint")?,
        cmd: strings(config, "Cmd")?,
        env,
        working_dir: string(config, "WorkingDir")?,
        user: string(config, "User")?,
    })
}

/// The process to run: `image` merged with the user's `command`, `extra_env`, `user` and
/// `workdir` (see the module documentation for the rules).
pub fn process_spec(
    image: &ImageRuntime,
    command: &[String],
    extra_env: &[String],
    user: Option<&str>,
    workdir: Option<&str>,
) -> Result<ProcessSpec, RunError> {
    let tail = if command.is_empty() {
        &image.cmd
    } else {
        command
    };
    let args: Vec<String> = image.entrypoint.iter().chain(tail).cloned().collect();
    if args.is_empty() {
        return Err(RunError::NoCommand);
    }

    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    for entry in &image.env {
        set_env(&mut env, entry);
    }
    for entry in extra_env {
        if env_key(entry).is_none() {
            return Err(RunError::BadEnv {
                entry: entry.clone(),
            });
        }
        set_env(&mut env, entry);
    }

    let (cwd, from) = match (non_empty(workdir), non_empty(image.working_dir.as_deref())) {
        (Some(w), _) => (w, "the requested working directory"),
        (None, Some(w)) => (w, "the image's WorkingDir"),
        (None, None) => ("/", "the default"),
    };
    if !cwd.starts_with('/') {
        return Err(RunError::RelativeWorkdir {
            workdir: cwd.to_owned(),
            from,
        });
    }

    let user = non_empty(user)
        .or_else(|| non_empty(image.user.as_deref()))
        .map(str::to_owned);
    Ok(ProcessSpec {
        args,
        env,
        cwd: cwd.to_owned(),
        user,
    })
}

/// The key of a `KEY=VALUE` entry; `None` when there is no `=` or the key is empty.
fn env_key(entry: &str) -> Option<&str> {
    match entry.split_once('=') {
        Some((key, _)) if !key.is_empty() => Some(key),
        _ => None,
    }
}

/// Replaces the entry of `env` with the same key as `entry`, or appends `entry`.
fn set_env(env: &mut Vec<String>, entry: &str) {
    let key = env_key(entry);
    match env.iter_mut().find(|e| env_key(e) == key) {
        Some(slot) => entry.clone_into(slot),
        None => env.push(entry.to_owned()),
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// `config.<field>`: an array of strings, or empty when missing or `null`.
fn strings(config: &Map<String, Value>, field: &str) -> Result<Vec<String>, RunError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(RunError::BadConfig(format!(
                    "config.{field}[{i}] is {}, expected a string",
                    type_name(other)
                ))),
            })
            .collect(),
        Some(other) => Err(RunError::BadConfig(format!(
            "config.{field} is {}, expected an array of strings",
            type_name(other)
        ))),
    }
}

/// `config.<field>`: a string, `None` when missing, `null` or empty.
fn string(config: &Map<String, Value>, field: &str) -> Result<Option<String>, RunError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(RunError::BadConfig(format!(
            "config.{field} is {}, expected a string",
            type_name(other)
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn runtime(config: &Value) -> Result<ImageRuntime, RunError> {
        image_runtime(
            &serde_json::to_vec(&json!({"architecture": "amd64", "config": config})).unwrap(),
        )
    }

    fn bad_config(config: &Value) -> String {
        match runtime(config) {
            Err(e @ RunError::BadConfig(_)) => e.to_string(),
            other => panic!("expected BadConfig for {config}, got {other:?}"),
        }
    }

    fn spec(image: &ImageRuntime, command: &[&str]) -> Result<ProcessSpec, RunError> {
        process_spec(image, &s(command), &[], None, None)
    }

    #[test]
    fn parses_every_field() {
        let r = runtime(&json!({
            "Entrypoint": ["/init", "-v"],
            "Cmd": ["serve"],
            "Env": ["A=1", "B="],
            "WorkingDir": "/srv",
            "User": "1000:100",
            "ExposedPorts": {"80/tcp": {}},
        }))
        .unwrap();
        assert_eq!(
            r,
            ImageRuntime {
                entrypoint: s(&["/init", "-v"]),
                cmd: s(&["serve"]),
                env: s(&["A=1", "B="]),
                working_dir: Some("/srv".into()),
                user: Some("1000:100".into()),
            }
        );
    }

    #[test]
    fn missing_and_null_fields_are_empty() {
        let empty = ImageRuntime::default();
        assert_eq!(image_runtime(br#"{"os":"linux"}"#).unwrap(), empty);
        assert_eq!(image_runtime(br#"{"config":null}"#).unwrap(), empty);
        assert_eq!(runtime(&json!({})).unwrap(), empty);
        let nulls =
            json!({"Entrypoint": null, "Cmd": null, "Env": null, "WorkingDir": null, "User": null});
        assert_eq!(runtime(&nulls).unwrap(), empty);
        assert_eq!(
            runtime(&json!({"WorkingDir": "", "User": ""})).unwrap(),
            empty
        );
    }

    #[test]
    fn bad_types_name_the_field() {
        assert!(bad_config(&json!({"Cmd": "echo hi"})).contains("config.Cmd is a string"));
        assert!(
            bad_config(&json!({"Entrypoint": ["a", 1]}))
                .contains("config.Entrypoint[1] is a number")
        );
        assert!(bad_config(&json!({"Env": {"A": "1"}})).contains("config.Env is an object"));
        assert!(
            bad_config(&json!({"WorkingDir": ["/"]})).contains("config.WorkingDir is an array")
        );
        assert!(bad_config(&json!({"User": 0})).contains("config.User is a number"));
        assert!(bad_config(&json!(["x"])).contains("config is an array"));
        let e = image_runtime(b"[1]").unwrap_err().to_string();
        assert!(e.contains("expected an object"), "{e}");
        let e = image_runtime(b"{").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn env_entries_without_equals_are_refused() {
        let e = bad_config(&json!({"Env": ["A=1", "NOEQUALS"]}));
        assert!(e.contains("config.Env[1]") && e.contains("NOEQUALS"), "{e}");
        let e = bad_config(&json!({"Env": ["=value"]}));
        assert!(e.contains("config.Env[0]"), "{e}");
    }

    #[test]
    fn args_are_entrypoint_then_command_or_cmd() {
        let image = ImageRuntime {
            entrypoint: s(&["/entry", "--flag"]),
            cmd: s(&["default"]),
            ..ImageRuntime::default()
        };
        assert_eq!(
            spec(&image, &[]).unwrap().args,
            s(&["/entry", "--flag", "default"])
        );
        assert_eq!(
            spec(&image, &["mine", "x"]).unwrap().args,
            s(&["/entry", "--flag", "mine", "x"])
        );
        let cmd_only = ImageRuntime {
            cmd: s(&["sh"]),
            ..ImageRuntime::default()
        };
        assert_eq!(spec(&cmd_only, &[]).unwrap().args, s(&["sh"]));
        assert_eq!(spec(&cmd_only, &["ls", "/"]).unwrap().args, s(&["ls", "/"]));
        let entry_only = ImageRuntime {
            entrypoint: s(&["/app"]),
            ..ImageRuntime::default()
        };
        assert_eq!(spec(&entry_only, &[]).unwrap().args, s(&["/app"]));
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let e = spec(&ImageRuntime::default(), &[]).unwrap_err();
        assert!(matches!(e, RunError::NoCommand), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the image has no Entrypoint or Cmd and no command was given"
        );
        assert!(spec(&ImageRuntime::default(), &["true"]).is_ok());
    }

    #[test]
    fn path_is_defaulted_when_absent() {
        let image = ImageRuntime {
            cmd: s(&["sh"]),
            env: s(&["HOME=/root"]),
            ..ImageRuntime::default()
        };
        assert_eq!(
            spec(&image, &[]).unwrap().env,
            [format!("PATH={DEFAULT_PATH}"), "HOME=/root".to_owned()]
        );
        let with_path = ImageRuntime {
            env: s(&["HOME=/root", "PATH=/opt/bin"]),
            ..image
        };
        assert_eq!(
            spec(&with_path, &[]).unwrap().env,
            s(&["PATH=/opt/bin", "HOME=/root"])
        );
    }

    #[test]
    fn extra_env_overrides_the_same_key() {
        let image = ImageRuntime {
            cmd: s(&["sh"]),
            env: s(&["PATH=/bin", "A=image", "B=image"]),
            ..ImageRuntime::default()
        };
        let p = process_spec(
            &image,
            &[],
            &s(&["B=user", "C=new", "PATH=/x", "A==y"]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(p.env, s(&["PATH=/x", "A==y", "B=user", "C=new"]));
        // a key that is a prefix of another is a different key
        let p = process_spec(&image, &[], &s(&["AB=1"]), None, None).unwrap();
        assert_eq!(p.env, s(&["PATH=/bin", "A=image", "B=image", "AB=1"]));
    }

    #[test]
    fn extra_env_without_equals_is_refused() {
        let image = ImageRuntime {
            cmd: s(&["sh"]),
            ..ImageRuntime::default()
        };
        for bad in ["FOO", "=bar", ""] {
            let e = process_spec(&image, &[], &s(&[bad]), None, None).unwrap_err();
            assert!(
                matches!(&e, RunError::BadEnv { entry } if entry == bad),
                "{e:?}"
            );
        }
    }

    #[test]
    fn cwd_is_override_then_image_then_root() {
        let image = ImageRuntime {
            cmd: s(&["sh"]),
            working_dir: Some("/home/user".into()),
            ..ImageRuntime::default()
        };
        assert_eq!(spec(&image, &[]).unwrap().cwd, "/home/user");
        let p = process_spec(&image, &[], &[], None, Some("/tmp")).unwrap();
        assert_eq!(p.cwd, "/tmp");
        let p = process_spec(&image, &[], &[], None, Some("")).unwrap();
        assert_eq!(p.cwd, "/home/user", "an empty override is no override");
        let none = ImageRuntime {
            working_dir: None,
            ..image
        };
        assert_eq!(spec(&none, &[]).unwrap().cwd, "/");
    }

    #[test]
    fn cwd_must_be_absolute() {
        let image = ImageRuntime {
            cmd: s(&["sh"]),
            working_dir: Some("app".into()),
            ..ImageRuntime::default()
        };
        let e = spec(&image, &[]).unwrap_err();
        assert!(
            matches!(&e, RunError::RelativeWorkdir { workdir, .. } if workdir == "app"),
            "{e:?}"
        );
        assert!(e.to_string().contains("WorkingDir"), "{e}");
        let e = process_spec(&image, &[], &[], None, Some("rel/dir")).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"rel/dir\" (the requested working directory)"),
            "{e}"
        );
        assert!(process_spec(&image, &[], &[], None, Some("/abs")).is_ok());
    }

    #[test]
    fn user_is_override_then_image_then_none() {
        let image = ImageRuntime {
            cmd: s(&["sh"]),
            user: Some("app".into()),
            ..ImageRuntime::default()
        };
        assert_eq!(spec(&image, &[]).unwrap().user.as_deref(), Some("app"));
        let p = process_spec(&image, &[], &[], Some("0:0"), None).unwrap();
        assert_eq!(p.user.as_deref(), Some("0:0"));
        let p = process_spec(&image, &[], &[], Some(""), None).unwrap();
        assert_eq!(
            p.user.as_deref(),
            Some("app"),
            "an empty override is no override"
        );
        let none = ImageRuntime {
            user: None,
            ..image
        };
        assert_eq!(spec(&none, &[]).unwrap().user, None);
    }

    #[test]
    fn json_shape() {
        let p = ProcessSpec {
            args: s(&["sh", "-c", "true"]),
            env: s(&["A=1"]),
            cwd: "/".into(),
            user: None,
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(
            text,
            r#"{"args":["sh","-c","true"],"env":["A=1"],"cwd":"/"}"#
        );
        assert_eq!(serde_json::from_str::<ProcessSpec>(&text).unwrap(), p);
        let with_user = ProcessSpec {
            user: Some("1000".into()),
            ..p
        };
        let text = serde_json::to_string(&with_user).unwrap();
        assert_eq!(
            text,
            r#"{"args":["sh","-c","true"],"env":["A=1"],"cwd":"/","user":"1000"}"#
        );
        assert_eq!(
            serde_json::from_str::<ProcessSpec>(&text).unwrap(),
            with_user
        );
        let unknown = r#"{"args":[],"env":[],"cwd":"/","terminal":true}"#;
        assert!(serde_json::from_str::<ProcessSpec>(unknown).is_err());
    }

    /// The embedded sample image's config, end to end.
    #[test]
    fn sample_config_gives_cat_os_release() {
        let config = json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LAYERPASS_SAMPLE=1"],
            "WorkingDir": "/home/user",
            "Cmd": ["cat", "/etc/os-release"],
        });
        let p = spec(&runtime(&config).unwrap(), &[]).unwrap();
        assert_eq!(p.args, s(&["cat", "/etc/os-release"]));
        assert_eq!(
            p.env,
            s(&[&format!("PATH={DEFAULT_PATH}"), "LAYERPASS_SAMPLE=1"])
        );
        assert_eq!(p.cwd, "/home/user");
        assert_eq!(p.user, None);
    }
}

//! The container's user, as runc resolves it (`github.com/moby/sys/user`
//! `GetExecUser`): `name`, `uid`, `name:group`, `uid:gid`, `name:gid` or `uid:group`,
//! names looked up in the container's `/etc/passwd` and `/etc/group`.
//!
//! - A numeric user is always a uid; one not in passwd is allowed (gid 0, home `/`).
//! - A name must be in passwd; the first match wins.
//! - An explicit group sets the gid (a name must be in group; a number need not be) and
//!   there are no supplementary groups; without one, the gid is passwd's and the
//!   supplementary groups are those listing the user's name as a member.
//! - No user means uid 0 (root's passwd entry when there is one).

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Member user names.
    pub members: Vec<String>,
}

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Home directory (`HOME` when the environment has none).
    pub home: String,
}

/// Why a user spec cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// Not one of the accepted forms.
    #[error("user {0:?}: not name, uid, name:group or uid:gid")]
    Malformed(String),
    /// A user name not in the container's /etc/passwd.
    #[error("user {0:?}: no such user in the container's /etc/passwd")]
    UnknownUser(String),
    /// A group name not in the container's /etc/group.
    #[error("group {0:?}: no such group in the container's /etc/group")]
    UnknownGroup(String),
}

/// A `name:password:...` line of `/etc/passwd` or `/etc/group`: the name and the fields
/// after the password; `None` for comments and blank lines.
fn record(line: &str) -> Option<(String, std::str::Split<'_, char>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut f = line.split(':');
    let name = f.next()?.to_owned();
    let _password = f.next();
    Some((name, f))
}

/// Parses `/etc/passwd`; comments, blank and malformed lines (non-numeric ids) are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let (name, mut f) = record(line)?;
            let uid = numeric(f.next()?)?;
            let gid = numeric(f.next()?)?;
            let _gecos = f.next();
            let home = f.next().unwrap_or_default().to_owned();
            Some(PasswdEntry {
                name,
                uid,
                gid,
                home,
            })
        })
        .collect()
}

/// Parses `/etc/group`; comments, blank and malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let (name, mut f) = record(line)?;
            let gid = numeric(f.next()?)?;
            let members = f
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            Some(GroupEntry { name, gid, members })
        })
        .collect()
}

/// A decimal id; `u32::MAX` is `-1` to the kernel ("unchanged"), never an id.
fn numeric(s: &str) -> Option<u32> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok().filter(|&n| n != u32::MAX)
    } else {
        None
    }
}

/// Resolves `spec` (`None`: root) against the container's passwd and group entries.
pub fn resolve(
    spec: Option<&str>,
    passwd: &[PasswdEntry],
    group: &[GroupEntry],
) -> Result<Identity, UserError> {
    let (user_arg, group_arg) = match spec {
        None => ("0", None),
        Some(s) => match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        },
    };
    let malformed = || UserError::Malformed(spec.unwrap_or_default().to_owned());
    if user_arg.is_empty() || group_arg.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err(malformed());
    }
    let uid_arg = numeric(user_arg);
    if uid_arg.is_none() && user_arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed()); // out of range
    }
    let entry = passwd.iter().find(|p| match uid_arg {
        Some(uid) => p.uid == uid,
        None => p.name == user_arg,
    });
    let mut id = match (entry, uid_arg) {
        (Some(p), _) => Identity {
            uid: p.uid,
            gid: p.gid,
            groups: Vec::new(),
            home: p.home.clone(),
        },
        (None, Some(uid)) => Identity {
            uid,
            gid: 0,
            groups: Vec::new(),
            home: "/".to_owned(),
        },
        (None, None) => return Err(UserError::UnknownUser(user_arg.to_owned())),
    };
    if id.home.is_empty() {
        "/".clone_into(&mut id.home);
    }
    match group_arg {
        Some(g) => {
            let gid_arg = numeric(g);
            let found = group.iter().find(|e| match gid_arg {
                Some(gid) => e.gid == gid || e.name == g,
                None => e.name == g,
            });
            id.gid = match (found, gid_arg) {
                (Some(e), _) => e.gid,
                (None, Some(gid)) => gid,
                (None, None) => return Err(UserError::UnknownGroup(g.to_owned())),
            };
        }
        None => {
            if let Some(name) = entry.map(|p| p.name.as_str()) {
                id.groups = group
                    .iter()
                    .filter(|e| e.members.iter().any(|m| m == name))
                    .map(|e| e.gid)
                    .collect();
            }
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken:x:notanumber:1::/:/bin/sh
user:x:1000:1000:A User,,,:/home/user:/bin/sh
nohome:x:1001:1001
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,user
user:x:1000:
audio:x:29:daemon, user
staff:x:50:
";

    fn id(spec: Option<&str>) -> Result<Identity, UserError> {
        resolve(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn passwd_and_group_lines_parse() {
        let p = parse_passwd(PASSWD);
        assert_eq!(
            p.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["root", "daemon", "user", "nohome"]
        );
        assert_eq!(
            p[2],
            PasswdEntry {
                name: "user".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/user".into()
            }
        );
        assert_eq!(p[3].home, "");
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 5);
        assert_eq!(g[1].members, ["root", "user"]);
        assert_eq!(g[3].members, ["daemon", "user"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn no_user_is_root_with_roots_groups() {
        let root = id(None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.groups, [10]);
        assert_eq!(root.home, "/root");
        // and without a passwd file at all
        let bare = resolve(None, &[], &[]).unwrap();
        assert_eq!((bare.uid, bare.gid, bare.home.as_str()), (0, 0, "/"));
    }

    #[test]
    fn a_name_gets_its_gid_home_and_supplementary_groups() {
        let u = id(Some("user")).unwrap();
        assert_eq!(
            u,
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![10, 29],
                home: "/home/user".into()
            }
        );
        assert_eq!(id(Some("nohome")).unwrap().home, "/");
    }

    #[test]
    fn a_uid_is_looked_up_and_may_be_unknown() {
        assert_eq!(id(Some("1000")).unwrap(), id(Some("user")).unwrap());
        let anon = id(Some("4242")).unwrap();
        assert_eq!(
            anon,
            Identity {
                uid: 4242,
                gid: 0,
                groups: vec![],
                home: "/".into()
            }
        );
    }

    #[test]
    fn an_explicit_group_sets_the_gid_without_supplementary_groups() {
        let u = id(Some("user:staff")).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.as_slice()), (1000, 50, &[][..]));
        let u = id(Some("user:77")).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 77));
        let u = id(Some("1000:1000")).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = id(Some("4242:audio")).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 29, "/"));
        let u = id(Some("4242:4343")).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 4343));
    }

    #[test]
    fn unknown_names_and_bad_forms_are_errors() {
        assert_eq!(
            id(Some("nobody")),
            Err(UserError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            id(Some("user:nogroup")),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
        for bad in ["", ":0", "user:", "a:b:c", "99999999999", "4294967295"] {
            assert_eq!(
                id(Some(bad)),
                Err(UserError::Malformed(bad.into())),
                "{bad}"
            );
        }
        assert!(
            id(Some("nobody"))
                .unwrap_err()
                .to_string()
                .contains("/etc/passwd")
        );
    }
}

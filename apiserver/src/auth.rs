//! Authentication: x509 client certificates signed by `--client-ca-file` (CN is the user, O the
//! groups) and bearer tokens from `--token-auth-file`. Everything else is anonymous, which only
//! the health endpoints accept.

use std::collections::HashMap;
use std::path::Path;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading token file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("token file {path}, line {line}: {reason}")]
    Line { path: String, line: usize, reason: &'static str },
}

/// The static tokens of `--token-auth-file`.
#[derive(Debug, Default, Clone)]
pub struct Tokens(HashMap<String, User>);

impl Tokens {
    /// Reads upstream's CSV format: `token,user,uid[,"group1,group2"]`.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AuthError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|(line, reason)| AuthError::Line { path: path.display().to_string(), line, reason })
    }

    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err((i + 1, "expected token,user,uid[,groups]"));
            }
            if fields[0].is_empty() || fields[1].is_empty() {
                return Err((i + 1, "token and user must not be empty"));
            }
            let groups = fields
                .get(3)
                .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default();
            tokens.insert(fields[0].clone(), User { name: fields[1].clone(), groups });
        }
        Ok(Tokens(tokens))
    }

    /// The user of an `Authorization: Bearer <token>` header.
    pub fn authenticate(&self, authorization: &str) -> Option<User> {
        let token = authorization.strip_prefix("Bearer ")?.trim();
        self.0.get(token).cloned()
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out
}

/// The user named by a verified client certificate.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(User { name, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_give_users_and_groups() {
        let tokens = Tokens::parse("# comment\nabc,alice,1,\"dev,ops\"\nxyz,bob,2\n").expect("parses");
        assert_eq!(
            tokens.authenticate("Bearer abc"),
            Some(User { name: "alice".into(), groups: vec!["dev".into(), "ops".into()] })
        );
        assert_eq!(tokens.authenticate("Bearer xyz").map(|u| u.groups.len()), Some(0));
        assert_eq!(tokens.authenticate("Bearer nope"), None);
        assert_eq!(tokens.authenticate("Basic abc"), None);
        assert!(Tokens::parse("only,two\n").is_err());
    }
}

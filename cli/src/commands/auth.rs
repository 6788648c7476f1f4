//! `roster auth token`: makes a bearer token and the token-file line that grants it (`roster::auth::tokens`). No
//! server is called: the operator adds the line to the server's `--auth-tokens` file, which it re-reads.

use roster::auth::{
    Principal,
    tokens::{entry_line, new_token},
};
use serde_json::json;

use super::Globals;
use crate::{args::AuthCommand, output};

#[allow(clippy::print_stdout, reason = "printing the token and its line is the point")]
pub(super) fn run(globals: &Globals, command: AuthCommand) -> anyhow::Result<()> {
    let AuthCommand::Token(args) = command;
    // The binding is checked as the server will read it, so a line it would refuse is never printed.
    let principal = Principal::bind(args.role, args.binding.as_deref(), "--binding")?;
    let token = new_token();
    let line = entry_line(args.role, args.binding.as_deref(), &token);
    let value = json!({ "token": token, "line": line, "principal": principal.to_string() });
    output::print(globals.format, &value, || {
        format!(
            "token (shown once; the server keeps only its hash; give it to its holder in a file for --token-file):\n\
             {token}\n\
             line to add to the server's --auth-tokens file ({principal}):\n\
             {line}"
        )
    });
    Ok(())
}

//! Native core of a drop-in replacement for Prosody's `mod_invites_register`
//! (XEP-0401 / XEP-0445 invite-based registration, XEP-0379 roster preauth).
//! The entry point `luaopen_invites_register` builds the exports table; everything
//! Lua-facing lives in [`lua_api`] and, for the preauth hot path, [`lua_raw`]; the rest
//! is plain Rust.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod error;
pub mod host;
pub mod invite;
pub mod lua_api;
pub mod lua_raw;
pub mod ns;
pub mod policy;
pub mod stanza;
pub mod throttle;
pub mod token;

/// `require "invites_register"` / `package.loadlib(path, "luaopen_invites_register")`.
#[mlua::lua_module]
fn invites_register(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua_api::exports(lua)
}

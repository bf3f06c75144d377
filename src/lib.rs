//! Native core of a drop-in replacement for Prosody's `mod_invites_register`
//! (XEP-0401 / XEP-0445 invite-based registration, XEP-0379 roster preauth): the per-host
//! invite index, the registration decision, claims and consumed tokens, the throttle.
//! The entry point `luaopen_invites_register` builds the exports table; everything
//! Lua-facing lives in [`lua_api`]; the rest is plain Rust.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod batch;
pub mod data;
pub mod error;
pub mod freshness;
pub mod host;
pub mod index;
pub mod invite;
pub mod lua_api;
pub mod options;
pub mod policy;
pub mod throttle;
pub mod token;

/// `require "invites_register"` / `package.loadlib(path, "luaopen_invites_register")`.
#[mlua::lua_module]
fn invites_register(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua_api::exports(lua)
}
